"""Merging stored pieces in rounds of bounded fan-in gives the same document as one merge."""

from __future__ import annotations

import random
from typing import Any

from pycrdt import Doc, Text, merge_updates

from collab.merge import MERGE_FAN_IN, apply_all, merge_tree, new_doc


def _edit_trace(seed: int, edits: int) -> list[bytes]:
    """Keystroke updates from two concurrent editors, as a log would hold them."""
    rng = random.Random(seed)
    docs: list[Doc[Any]] = [Doc(), Doc()]
    updates: list[bytes] = []
    for doc in docs:
        doc.observe(lambda event: updates.append(event.update))
    for i in range(edits):
        doc = docs[i % 2]
        text = doc.get("content", type=Text)
        n = len(text)
        if n > 5 and rng.random() < 0.15:
            at = rng.randrange(n)
            del text[at : at + 1]
        else:
            text.insert(rng.randrange(n + 1), rng.choice("abc\n"))
        if rng.random() < 0.3:  # the editors sync now and then
            docs[1 - i % 2].apply_update(doc.get_update(docs[1 - i % 2].get_state()))
    return updates


def test_tree_merge_equals_a_flat_merge_across_several_rounds() -> None:
    updates = _edit_trace(7, 3 * MERGE_FAN_IN + 17)
    assert len(updates) > 2 * MERGE_FAN_IN  # at least three rounds of merging
    flat, flat_text = new_doc()
    flat.apply_update(merge_updates(*updates))
    tree, tree_text = new_doc()
    tree.apply_update(merge_tree(list(updates)))
    assert str(tree_text) == str(flat_text) and len(str(flat_text)) > 0


def test_pieces_in_any_order_give_the_same_text() -> None:
    updates = _edit_trace(11, 900)
    ordered, ordered_text = new_doc()
    apply_all(ordered, updates)
    shuffled = list(updates)
    random.Random(3).shuffle(shuffled)
    mixed, mixed_text = new_doc()
    apply_all(mixed, [b"", *shuffled])
    assert str(mixed_text) == str(ordered_text)


def test_merge_document_checks_against_the_live_text_or_the_pieces() -> None:
    from collab.merge import merge_document

    updates = _edit_trace(7, 300)
    doc, text = new_doc()
    apply_all(doc, updates)
    live, expected = doc.get_update(), str(text)
    # The live text agrees: accepted without a second merge.
    assert merge_document(None, updates, live, expected).text == expected
    # This process lacks what another wrote (its text differs): the pieces decide.
    partial, partial_text = new_doc()
    apply_all(partial, updates[:100])
    merged = merge_document(None, updates, partial.get_update(), str(partial_text))
    assert merged.text == expected
