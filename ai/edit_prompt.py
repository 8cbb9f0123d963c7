"""What the model is asked for an edit, and how its answer becomes text for the document.

The prompt shows the file with the range marked and the instruction; the answer is the
new text of the range only. Models often wrap code in Markdown fences anyway:
``FenceFilter`` drops an opening fence line and a closing fence at the very end while the
text streams (it holds back at most one line that could be a fence).
"""

from __future__ import annotations

from ai.providers.base import ChatMessage

START, END = "<<<SELECTION>>>", "<<<END SELECTION>>>"
MAX_AROUND_CHARS = 12_000

SYSTEM = (
    "You are the coding assistant of a collaborative IDE, editing a file together with its "
    "authors. Reply with the new text for the part of the file between "
    f"{START} and {END} only: no explanations, no Markdown fences, no markers. Keep the "
    "surrounding code's style and indentation."
)


def build(path: str, language: str | None, text: str, start: int, end: int,
          instruction: str, project: str | None) -> list[ChatMessage]:
    """``start``/``end``: the range in characters of ``text``."""
    before = text[:start][-MAX_AROUND_CHARS:]
    after = text[end:][:MAX_AROUND_CHARS]
    marked = f"{before}{START}{text[start:end]}{END}{after}"
    messages = [ChatMessage("system", SYSTEM)]
    if project:
        messages.append(ChatMessage("system", project))
    what = "Write the text to insert at" if start == end else "Rewrite"
    messages.append(ChatMessage("user", (
        f"File {path}{f' ({language})' if language else ''}:\n{marked}\n\n"
        f"{what} the selection: {instruction}"
    )))
    return messages


class FenceFilter:
    """Streamed model text in, document text out, without Markdown code fences."""

    def __init__(self) -> None:
        self._held = ""  # a line that may be a fence: "`", "``", "```..." (with its newline)
        self._first = True  # nothing emitted yet: an opening fence line is dropped
        self._line_start = True

    def feed(self, text: str) -> str:
        out: list[str] = []
        data = self._held + text
        self._held = ""
        while data:
            if not self._line_start:
                newline = data.find("\n")
                if newline < 0:
                    out.append(data)
                    break
                out.append(data[: newline + 1])
                data = data[newline + 1 :]
                self._line_start = True
                continue
            if len(data) < 3 and "```".startswith(data):
                self._held = data  # could become a fence: wait for more
                break
            if data.startswith("```"):
                newline = data.find("\n")
                if self._first:  # the opening fence line: dropped once complete
                    if newline < 0:
                        self._held = data
                        break
                    data = data[newline + 1 :]
                    self._first = False
                    continue
                if newline < 0 or newline == len(data) - 1:
                    self._held = data  # the closing fence, if nothing follows it
                    break
            self._first = False
            self._line_start = False
        return "".join(out)

    def end(self) -> str:
        """What was held back, unless it is a fence."""
        held, self._held = self._held, ""
        return "" if held.startswith("```") else held
