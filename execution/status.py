"""Execution statuses: Judge0's list (ids 1..14), whichever backend ran the code, plus one
of ours that Judge0 lacks (judge0/judge0#298): 15, Memory Limit Exceeded. Judge0 reports a
run killed by its memory limit as a runtime error (NZEC "Exited with error status 137",
SIGSEGV...), which tells the user nothing; clients that know only 1..14 can read 15 as a
runtime error (every id above 6 is one)."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

IN_QUEUE = 1
PROCESSING = 2
ACCEPTED = 3
WRONG_ANSWER = 4
TIME_LIMIT_EXCEEDED = 5
COMPILATION_ERROR = 6
RUNTIME_ERROR_SIGSEGV = 7
RUNTIME_ERROR_SIGXFSZ = 8
RUNTIME_ERROR_SIGFPE = 9
RUNTIME_ERROR_SIGABRT = 10
RUNTIME_ERROR_NZEC = 11
RUNTIME_ERROR_OTHER = 12
INTERNAL_ERROR = 13
EXEC_FORMAT_ERROR = 14
MEMORY_LIMIT_EXCEEDED = 15


@dataclass(frozen=True)
class Status:
    id: int
    code: str  # stored in code_executions.status
    description: str  # Judge0's wording

    @property
    def finished(self) -> bool:
        return self.id >= ACCEPTED


STATUSES = {
    status.id: status
    for status in (
        Status(IN_QUEUE, "in_queue", "In Queue"),
        Status(PROCESSING, "processing", "Processing"),
        Status(ACCEPTED, "accepted", "Accepted"),
        Status(WRONG_ANSWER, "wrong_answer", "Wrong Answer"),
        Status(TIME_LIMIT_EXCEEDED, "time_limit_exceeded", "Time Limit Exceeded"),
        Status(COMPILATION_ERROR, "compilation_error", "Compilation Error"),
        Status(RUNTIME_ERROR_SIGSEGV, "runtime_error_sigsegv", "Runtime Error (SIGSEGV)"),
        Status(RUNTIME_ERROR_SIGXFSZ, "runtime_error_sigxfsz", "Runtime Error (SIGXFSZ)"),
        Status(RUNTIME_ERROR_SIGFPE, "runtime_error_sigfpe", "Runtime Error (SIGFPE)"),
        Status(RUNTIME_ERROR_SIGABRT, "runtime_error_sigabrt", "Runtime Error (SIGABRT)"),
        Status(RUNTIME_ERROR_NZEC, "runtime_error_nzec", "Runtime Error (NZEC)"),
        Status(RUNTIME_ERROR_OTHER, "runtime_error_other", "Runtime Error (Other)"),
        Status(INTERNAL_ERROR, "internal_error", "Internal Error"),
        Status(EXEC_FORMAT_ERROR, "exec_format_error", "Exec Format Error"),
        Status(MEMORY_LIMIT_EXCEEDED, "memory_limit_exceeded", "Memory Limit Exceeded"),
    )
}
BY_CODE = {status.code: status for status in STATUSES.values()}

SIGNAL_STATUS = {
    signal.SIGSEGV: RUNTIME_ERROR_SIGSEGV,
    signal.SIGBUS: RUNTIME_ERROR_SIGSEGV,
    signal.SIGXFSZ: RUNTIME_ERROR_SIGXFSZ,
    signal.SIGFPE: RUNTIME_ERROR_SIGFPE,
    signal.SIGABRT: RUNTIME_ERROR_SIGABRT,
    signal.SIGXCPU: TIME_LIMIT_EXCEEDED,
}


def status(status_id: int) -> Status:
    return STATUSES.get(status_id, STATUSES[INTERNAL_ERROR])


def by_code(code: str) -> Status:
    return BY_CODE.get(code, STATUSES[INTERNAL_ERROR])


# What each runtime prints when an allocation fails (RLIMIT_DATA makes mmap/brk fail with
# ENOMEM): Python, Node/V8, C++, Java, Go, Rust, bash, and strerror(ENOMEM) for the rest.
OUT_OF_MEMORY = re.compile(
    r"^MemoryError\b"
    r"|JavaScript heap out of memory|Fatal process out of memory|Allocation failed - "
    r"|Array buffer allocation failed"
    r"|std::bad_alloc"
    r"|java\.lang\.OutOfMemoryError|Could not reserve enough space for|insufficient memory "
    r"for the Java Runtime"
    r"|fatal error: runtime: out of memory|runtime: cannot allocate memory"
    r"|memory allocation of \d+ bytes failed"
    r"|x(?:m|re)alloc: .*cannot allocate"
    r"|Cannot allocate memory",
    re.MULTILINE,
)
# Only the ends of stderr are looked at: a runtime's last words are at the end, or at the
# start of the stack dump that follows them (V8).
OOM_TAIL_BYTES = 4096


def allocation_failed(stderr: str) -> bool:
    """A runtime's out-of-memory message is in (either end of) a failed run's stderr."""
    ends = stderr if len(stderr) <= 2 * OOM_TAIL_BYTES else (
        stderr[:OOM_TAIL_BYTES] + "\n" + stderr[-OOM_TAIL_BYTES:]
    )
    return OUT_OF_MEMORY.search(ends) is not None


DISK_FULL = re.compile(r"No space left on device|Disk quota exceeded|\bENOSPC\b|\bEDQUOT\b")


def disk_was_full(stderr_tail: str) -> bool:
    """A write failed for lack of space (the project's disk quota)."""
    return DISK_FULL.search(stderr_tail) is not None
