"""Execution statuses: Judge0's list (ids 1..14), whichever backend ran the code."""

from __future__ import annotations

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
