"""Prompt assembly within the budget, editor excerpts, and the local token estimate."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ai.prompt import build_prompt, excerpt
from ai.tokens import estimate_messages, estimate_tokens


def test_estimate_is_in_the_right_range() -> None:
    assert estimate_tokens("") == 0
    assert 6 <= estimate_tokens("Hello world, this is a sentence.") <= 12
    assert 10 <= estimate_tokens("def add(a, b):\n    return a + b") <= 20
    assert estimate_tokens("你好世界") == 4


def test_history_is_trimmed_to_the_budget_newest_first() -> None:
    history = [("user" if i % 2 == 0 else "assistant", f"message {i} " + "word " * 50)
               for i in range(40)]
    prompt = build_prompt(history, "latest?", context=None, budget_tokens=1000,
                          max_context_chars=10_000).messages
    assert prompt[0].role == "system" and prompt[-1].content == "latest?"
    kept = prompt[1:-1]
    assert 0 < len(kept) < 40
    assert kept[-1].content.startswith("message 39 ")
    assert kept[0].role == "user"
    assert sum(estimate_tokens(m.content) for m in prompt) <= 1000


def test_selection_excerpt_and_whole_file_context() -> None:
    text = "line1\nline2\nline3\nline4\n"
    part = excerpt("a.py", "python", text, (text.index("line3"), len(text) + 50))
    assert part.text == "line3\nline4\n" and part.start_line == 3
    prompt = build_prompt([], "why?", context=part, budget_tokens=2000,
                          max_context_chars=1000).messages
    assert "a.py, lines 3-5" in prompt[-1].content and "```python" in prompt[-1].content
    big = excerpt("big.py", None, "x = 1\n" * 20_000, None)
    prompt = build_prompt([], "why?", context=big, budget_tokens=2000,
                          max_context_chars=50_000).messages
    assert "(truncated)" in prompt[-1].content
    assert estimate_tokens(prompt[-1].content) < 1000


TEXT = st.text(st.sampled_from("ab Z9 0\n\t.{}你é"), max_size=300)


@given(
    history=st.lists(st.tuples(st.sampled_from(["user", "assistant"]), TEXT), max_size=12),
    question=TEXT,
    file_text=st.none() | TEXT,
    budget=st.integers(100, 3000),
)
def test_prompt_tokens_are_the_estimate_of_the_messages_sent(
    history: list[tuple[str, str]], question: str, file_text: str | None, budget: int
) -> None:
    # Counted while building, so the hub does not tokenize the prompt a second time. (The
    # hub refuses blank questions: this one always has a piece.)
    context = None if file_text is None else excerpt("f.py", "python", file_text, None)
    prompt = build_prompt(history, question + "?", context=context, budget_tokens=budget,
                          max_context_chars=500)
    assert prompt.tokens == estimate_messages(m.content for m in prompt.messages)
