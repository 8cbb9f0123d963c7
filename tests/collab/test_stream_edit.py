"""The assistant's streamed edit against two humans typing, in random interleavings.

Star topology as in production: each human's document and the edit's replica talk to a
server document over FIFO links (a socket each way), deliveries interleaved at random with
the edit's pieces and the humans' keystrokes (single characters anywhere, and words typed
at one place). Characters identify their author: the original text is ``<`` (left of the
range), ``~`` (the range) and ``>`` (right of it), the model writes digits, each human
characters of their own (``Human``).
"""

from __future__ import annotations

import random
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from collab.stream_edit import StreamEdit

PREFIX, RANGE, SUFFIX = "<<<<<\n", "~~~~~~~~", "\n>>>>>"
PIECES = ["01", "2", "345", "6", "78", "9012", "3", "45678", "9"]


@dataclass
class Human:
    """Every keystroke is a character of its own (multi-byte, so offsets are tested too):
    single keystrokes count up from ``single``, the letters of words from ``word``."""

    name: str
    single: int
    word: int
    doc: Doc[Any]
    text: Text
    typed: int = 0
    words: list[str] = field(default_factory=list)

    def next_char(self, word: bool = False) -> str:
        self.typed += 1
        return chr((self.word if word else self.single) + self.typed)

    def wrote(self, char: str) -> bool:
        return any(base < ord(char) <= base + self.typed for base in (self.single, self.word))


def new_doc(client_id: int, state: bytes | None = None) -> tuple[Doc[Any], Text]:
    doc: Doc[Any] = Doc(client_id=client_id)
    text = doc.get("content", type=Text)
    if state is not None:
        doc.apply_update(state)
    return doc, text


class World:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.server, self.server_text = new_doc(1)
        with self.server.transaction():
            self.server_text += PREFIX + RANGE + SUFFIX
        state = self.server.get_update()
        self.humans = [Human("A", 0x0400, 0x4E00, *new_doc(2, state)),
                       Human("B", 0x3040, 0xAC00, *new_doc(3, state))]
        # Links: to the server from each human, and from the server to each human.
        self.up: dict[str, deque[bytes]] = {h.name: deque() for h in self.humans}
        self.down: dict[str, deque[bytes]] = {h.name: deque() for h in self.humans}
        self.edit = StreamEdit(state, len(PREFIX), len(PREFIX) + len(RANGE), edit_id="e1",
                               client_id=99)
        self.pieces = iter(PIECES)
        self.written: list[str] = []
        self._to_server(self.edit.begin(), sender=None)

    def _to_server(self, update: bytes, sender: str | None) -> None:
        self.server.apply_update(update)
        for human in self.humans:
            if human.name != sender:
                self.down[human.name].append(update)

    def _local(self, human: Human, index: int, chars: str) -> None:
        before = human.doc.get_state()
        with human.doc.transaction():
            human.text.insert(index, chars)
        self.up[human.name].append(human.doc.get_update(before))

    def type_char(self, who: int, where: float) -> None:
        human = self.humans[who]
        current = str(human.text)
        index = len(current[: int(where * len(current))].encode())
        self._local(human, index, human.next_char())  # (pycrdt: a byte offset)

    def type_word(self, who: int, where: float) -> None:
        """Three keystrokes at one place, each after the previous (a word being typed)."""
        human = self.humans[who]
        current = str(human.text)
        index = len(current[: int(where * len(current))].encode())
        word = ""
        for _ in range(3):
            char = human.next_char(word=True)
            self._local(human, index + len(word.encode()), char)
            word += char
        human.words.append(word)

    def ai_writes(self) -> None:
        piece = next(self.pieces, None)
        if piece is None:
            return
        self.edit.catch_up(self.server.get_update(self.edit.state_vector()))
        self._to_server(self.edit.write(piece), sender=None)
        self.written.append(piece)

    def deliver(self, link: int) -> None:
        human = self.humans[link % 2]
        queue = self.up[human.name] if link < 2 else self.down[human.name]
        if not queue:
            return
        update = queue.popleft()
        if link < 2:
            self._to_server(update, sender=human.name)
        else:
            human.doc.apply_update(update)

    def settle(self) -> None:
        for _ in range(10_000):
            if not any(self.up.values()) and not any(self.down.values()):
                break
            self.deliver(self.rng.randrange(4))
        self.edit.catch_up(self.server.get_update(self.edit.state_vector()))

    def texts(self) -> list[str]:
        return [str(self.server_text), *(str(h.text) for h in self.humans), self.edit.read()]


STEPS = st.lists(
    st.tuples(st.sampled_from(["ai", "char", "word", "deliver"]), st.integers(0, 3),
              st.floats(0, 1)),
    max_size=60,
)


def check_humans(world: World, final: str) -> None:
    for human in world.humans:
        mine = sum(1 for char in final if human.wrote(char))
        assert mine == human.typed, f"{human.name} lost keystrokes: {final!r}"
        # A word stays in one piece: humans may type inside it later, never the model.
        for word in human.words:
            word_and_model = "".join(c for c in final if c in word or c.isdigit())
            assert word in word_and_model, f"{human.name}'s {word!r} garbled: {final!r}"


def run(steps: list[tuple[str, int, float]], seed: int) -> World:
    world = World(seed)
    for kind, who, where in steps:
        if kind == "ai":
            world.ai_writes()
        elif kind == "char":
            world.type_char(who % 2, where)
        elif kind == "word":
            world.type_word(who % 2, where)
        else:
            world.deliver(who)
    return world


@settings(max_examples=300, deadline=None)
@given(STEPS, st.integers(0, 2**16))
def test_edit_and_two_typists_converge_and_lose_nothing(
    steps: list[tuple[str, int, float]], seed: int
) -> None:
    world = run(steps, seed)
    world.settle()
    texts = world.texts()
    assert len(set(texts)) == 1, texts
    final = texts[0]
    check_humans(world, final)
    # The range is replaced: none of its characters left, everything around it intact.
    assert RANGE[0] not in final
    assert final.count("<") == PREFIX.count("<") and final.count(">") == SUFFIX.count(">")
    # The model's text, in order, between the text left and right of the range.
    assert "".join(re.findall(r"\d", final)) == "".join(world.written)
    digits = [i for i, c in enumerate(final) if c.isdigit()]
    if digits:
        assert final.rindex("<") < digits[0] and digits[-1] < final.index(">")


@settings(max_examples=150, deadline=None)
@given(STEPS, st.integers(0, 2**16))
def test_rollback_restores_the_range_and_keeps_every_human_keystroke(
    steps: list[tuple[str, int, float]], seed: int
) -> None:
    world = run(steps, seed)
    world.settle()
    world._to_server(world.edit.rollback(), sender=None)
    world.settle()
    texts = world.texts()
    assert len(set(texts)) == 1, texts
    final = texts[0]
    check_humans(world, final)
    assert not any(c.isdigit() for c in final)
    assert final.count("~") == len(RANGE)
    assert final.rindex("<") < final.index("~") and final.rindex("~") < final.index(">")


def test_cursor_follows_the_written_text_as_a_yjs_relative_position() -> None:
    world = World(0)
    assert world.edit.cursor() is None  # nothing written yet
    world.ai_writes()
    world.ai_writes()
    # After the last character written: clock 0 is the edit's marker, "01" 1-2, "2" 3.
    assert world.edit.cursor() == {"item": {"client": 99, "clock": 3}, "assoc": -1}
    assert world.edit.cursor_index() == len(PREFIX) + 3
    # Offsets count UTF-16 units (as the browser does), whatever UTF-8 takes.
    doc, text = new_doc(5)
    text += "x😀é|y"
    edit = StreamEdit(doc.get_update(), 4, 5, edit_id="e2", client_id=7)  # the "|"
    edit.begin()
    edit.write("hé😀")
    edit.write("✓")
    assert edit.read() == "x😀éhé😀✓y" and edit.cursor_index() == 4 + 5
    assert edit.original == "|"
