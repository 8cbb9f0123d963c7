"""Shell integration: the bash rc that emits prompt markers, the parser that reads them back
out of the PTY stream, and the filter that keeps terminal queries out of replays.

Markers (FinalTerm/VS Code style): ``OSC 133;A`` prompt start, ``133;B`` prompt end,
``633;E;<base64 command>`` the command line, ``133;C`` output start, ``133;D;<exit>`` command
finished, ``633;P;Cwd=<dir>`` the working directory. No ``await`` here: text in, events and
display text out.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

BASHRC = r"""
# iCreateTechs terminal: prompt markers for command recording (OSC 133 / 633).
HISTCONTROL=
HISTIGNORE=
HISTFILE=/tmp/.bash_history
HISTTIMEFORMAT=
__ict_command() {
  local line
  line=$(builtin history 1)
  line="${line#"${line%%[![:space:]]*}"}"
  line="${line#*[0-9]}"
  line="${line#"${line%%[![:space:]]*}"}"
  printf '\033]633;E;%s\007\033]133;C\007' "$(printf '%s' "$line" | base64 -w0)"
}
__ict_prompt() {
  local code=$?
  printf '\033]133;D;%s\007\033]633;P;Cwd=%s\007' "$code" "$PWD"
}
PROMPT_COMMAND=__ict_prompt
PS0='$(__ict_command)'
PS1='\[\033]133;A\007\]\w\$ \[\033]133;B\007\]'
"""

OSC_START = "\x1b]"
MAX_PENDING = 8192
# Terminal queries: a replayed DSR/DA/window report would be answered by the client again.
QUERY = re.compile(
    r"\x1b\[[>=?]?[0-9;]*[cn]"  # DA, DA2, DA3, DSR (incl. cursor position request 6n)
    r"|\x1b\[\??[0-9;]*\$p"  # DECRQM
    r"|\x1b\[[0-9;]*t"  # window manipulation reports
    r"|\x1bZ"  # DECID
    r"|\x1b\][0-9]+;\?(?:\x07|\x1b\\)"  # OSC colour queries (10;? 11;?)
    r"|\x1bP\$q[^\x1b\x07]*(?:\x07|\x1b\\)"  # DECRQSS
)
CSI = re.compile(r"\x1b\[[0-9;?>=]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>]")


def strip_queries(text: str) -> str:
    return QUERY.sub("", text)


def plain(text: str) -> str:
    """Command output for the record: no colour or cursor sequences, no CRs."""
    return CSI.sub("", text).replace("\r\n", "\n").replace("\r", "")


@dataclass
class CommandRecord:
    command: str
    output: str
    exit_code: int | None
    duration_ms: int
    cwd: str | None


@dataclass
class ShellParser:
    """Feed PTY text; get back the text to display (our markers removed) and the commands
    that finished. Split sequences across reads are held until complete."""

    output_cap: int = 64 * 1024
    pending: str = ""
    cwd: str | None = None
    command: str | None = None
    running_since: float | None = None
    output: list[str] = field(default_factory=list)
    output_len: int = 0

    def feed(self, text: str, now: float) -> tuple[str, list[CommandRecord]]:
        data = self.pending + text
        self.pending = ""
        shown: list[str] = []
        finished: list[CommandRecord] = []
        pos = 0
        while True:
            start = data.find(OSC_START, pos)
            if start < 0:
                tail = data[pos:]
                if tail.endswith("\x1b"):  # maybe the start of an OSC cut by the read
                    self.pending = "\x1b"
                    tail = tail[:-1]
                self._show(tail, shown)
                break
            self._show(data[pos:start], shown)
            end, term_len = _terminator(data, start + 2)
            if end < 0:
                rest = data[start:]
                if len(rest) > MAX_PENDING:  # not an OSC we will ever finish: show it
                    self._show(rest, shown)
                else:
                    self.pending = rest
                break
            body = data[start + 2 : end]
            if not self._marker(body, now, finished):
                self._show(data[start : end + term_len], shown)
            pos = end + term_len
        return "".join(shown), finished

    def _show(self, text: str, shown: list[str]) -> None:
        if not text:
            return
        shown.append(text)
        if self.running_since is not None and self.output_len < self.output_cap:
            piece = text[: self.output_cap - self.output_len]
            self.output.append(piece)
            self.output_len += len(piece)

    def _marker(self, body: str, now: float, finished: list[CommandRecord]) -> bool:
        if body.startswith("133;"):
            kind = body[4:5]
            if kind == "C" and self.command is not None:
                self.running_since = now
                self.output, self.output_len = [], 0
            elif kind == "D":
                if self.running_since is not None and self.command is not None:
                    code_text = body[6:] if body[5:6] == ";" else ""
                    finished.append(CommandRecord(
                        command=self.command,
                        output=plain("".join(self.output)),
                        exit_code=int(code_text) if code_text.lstrip("-").isdigit() else None,
                        duration_ms=int((now - self.running_since) * 1000),
                        cwd=self.cwd,
                    ))
                self.command = None
                self.running_since = None
                self.output, self.output_len = [], 0
            return kind in {"A", "B", "C", "D"}
        if body.startswith("633;"):
            if body.startswith("633;E;"):
                try:
                    self.command = base64.b64decode(body[6:]).decode("utf-8", "replace")
                except (binascii.Error, ValueError):
                    self.command = body[6:]
            elif body.startswith("633;P;Cwd="):
                self.cwd = body[len("633;P;Cwd="):]
            return True
        return False


def _terminator(data: str, start: int) -> tuple[int, int]:
    """Index and length of the OSC terminator (BEL or ESC \\) from ``start``, or (-1, 0)."""
    bel = data.find("\x07", start)
    st = data.find("\x1b\\", start)
    if bel < 0 and st < 0:
        return -1, 0
    if st < 0 or (0 <= bel < st):
        return bel, 1
    return st, 2
