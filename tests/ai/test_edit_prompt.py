"""The edit prompt and the fence filter (pure functions, tables)."""

from __future__ import annotations

import pytest

from ai.edit_prompt import END, START, FenceFilter, build


@pytest.mark.parametrize(("pieces", "expected"), [
    (["```py", "thon\nx = 1\n", "y = 2\n`", "``"], "x = 1\ny = 2\n"),
    (["x = 1\n", "y = `a`\n"], "x = 1\ny = `a`\n"),
    (list("```\nabc\n```\n"), "abc\n"),
    (list("def f():\n    return 1\n"), "def f():\n    return 1\n"),
    (["a\n```js\nb\n```\nc"], "a\n```js\nb\n```\nc"),  # fences inside the text stay
    (["`x`\n", "``"], "`x`\n``"),
    (["```"], ""),
    ([], ""),
])
def test_fences_around_the_answer_are_dropped_while_it_streams(
    pieces: list[str], expected: str
) -> None:
    fences = FenceFilter()
    assert "".join(fences.feed(p) for p in pieces) + fences.end() == expected


def test_the_prompt_marks_the_range_and_says_what_to_do() -> None:
    messages = build("a.py", "python", "one\ntwo\nthree\n", 4, 8, "shout", "tree")
    assert [m.role for m in messages] == ["system", "system", "user"]
    assert f"one\n{START}two\n{END}three\n" in messages[-1].content
    assert messages[-1].content.endswith("Rewrite the selection: shout")
    insert = build("a.py", None, "ab", 1, 1, "add", None)
    assert len(insert) == 2 and insert[-1].content.endswith("Write the text to insert at the "
                                                           "selection: add")
