"""The prompt: system prompt, recent history within the context budget, editor context.

No I/O: the chat hub fetches history and the live document text and passes them in.
"""

from __future__ import annotations

from dataclasses import dataclass

from ai.providers.base import ChatMessage, Role
from ai.tokens import MESSAGE_OVERHEAD, estimate_tokens

DEFAULT_SYSTEM_PROMPT = (
    "You are the coding assistant of iCreateTechs, a collaborative browser IDE. "
    "Answer questions about the user's code precisely and briefly. Use Markdown code blocks "
    "for code. When the user shares code from the editor, refer to it by file and line."
)
# Our estimate can be below the model's real count; keep a margin of the budget free.
SAFETY = 0.85


@dataclass(frozen=True)
class Prompt:
    """The messages to send and their token estimate (``estimate_messages`` of their
    contents), counted while the prompt was assembled so nobody tokenizes it again."""

    messages: list[ChatMessage]
    tokens: int


@dataclass(frozen=True)
class EditorContext:
    path: str
    language: str | None
    text: str
    start_line: int | None = None  # 1-based line of the excerpt's first line
    whole_file: bool = False
    # Set for a web page (path is then its URL): how the block introduces it.
    title: str | None = None
    web_page: bool = False


def web_page_context(url: str, title: str | None, markdown: str) -> EditorContext:
    return EditorContext(url, "markdown", markdown, whole_file=True, title=title, web_page=True)


def excerpt(
    path: str, language: str | None, text: str, selection: tuple[int, int] | None
) -> EditorContext:
    """The selected range of ``text`` (character offsets, clamped), or the whole file."""
    if selection is None:
        return EditorContext(path, language, text, 1, whole_file=True)
    start, end = sorted((max(0, selection[0]), max(0, selection[1])))
    start, end = min(start, len(text)), min(end, len(text))
    return EditorContext(path, language, text[start:end], text.count("\n", 0, start) + 1)


def _clip(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + "\n… (truncated)"


def render_context(context: EditorContext, max_chars: int) -> str:
    if context.web_page:
        named = f"{context.title} ({context.path})" if context.title else context.path
        return f"Here is the web page {named}, as markdown:\n{_clip(context.text, max_chars)}"
    where = context.path
    if not context.whole_file and context.start_line is not None:
        last = context.start_line + context.text.count("\n")
        where += f", lines {context.start_line}-{last}"
    fence = "```" + (context.language or "")
    what = "the open file" if context.whole_file else "the selected code"
    return f"Here is {what} ({where}):\n{fence}\n{_clip(context.text, max_chars)}\n```"


def build_prompt(
    history: list[tuple[str, str]],
    question: str,
    *,
    context: EditorContext | None,
    budget_tokens: int,
    max_context_chars: int,
    system_prompt: str | None = None,
    project: str | None = None,
) -> Prompt:
    """System + as much recent history as fits + the question (with its editor context).

    ``history`` is oldest first and excludes the question. The question and the system
    prompt are always sent; ``project`` (file tree, last run, tool budget) follows the
    system prompt as a second system message, clipped to a quarter of the budget; the
    editor context gets at most half of what remains; history fills the rest, newest
    first, whole messages only.
    """
    budget = int(budget_tokens * SAFETY)
    system = ChatMessage("system", system_prompt or DEFAULT_SYSTEM_PROMPT)
    system_cost = estimate_tokens(system.content) + MESSAGE_OVERHEAD
    leading = [system]
    if project:
        clipped = _clip(project, max(200, budget // 4 * 3))
        while estimate_tokens(clipped) > budget // 4 and len(clipped) > 200:
            clipped = _clip(project, len(clipped) * 2 // 3)
        leading.append(ChatMessage("system", clipped))
        system_cost += estimate_tokens(clipped) + MESSAGE_OVERHEAD
    remaining = budget - system_cost
    question_text = _clip(question, max(256, remaining * 2))
    question_cost = estimate_tokens(question_text) + MESSAGE_OVERHEAD
    remaining -= question_cost
    if context is not None and remaining > 64:
        chars = min(max_context_chars, max(0, remaining // 2) * 3)
        block = render_context(context, chars)
        while estimate_tokens(block) > remaining // 2 and chars > 200:
            chars = chars * 2 // 3
            block = render_context(context, chars)
        # Pieces never span whitespace: the joined text counts as block + question (a
        # blank question, which the hub refuses, would be counted one token high).
        question_text = f"{block}\n\n{question_text}"
        block_cost = estimate_tokens(block)
        remaining -= block_cost
        question_cost += block_cost
    kept: list[tuple[ChatMessage, int]] = []
    for role, content in reversed(history):
        cost = estimate_tokens(content) + MESSAGE_OVERHEAD
        if cost > remaining:
            break
        role_name: Role = "assistant" if role == "assistant" else "user"
        kept.append((ChatMessage(role_name, content), cost))
        remaining -= cost
    kept.reverse()
    # Chat templates expect the turns after the system prompt to start with the user.
    while kept and kept[0][0].role != "user":
        kept.pop(0)
    return Prompt(
        [*leading, *(message for message, _ in kept), ChatMessage("user", question_text)],
        system_cost + sum(cost for _, cost in kept) + question_cost,
    )
