"""Secret masking of streamed output: tables of chunks in, text out."""

from __future__ import annotations

import random

import pytest

from execution.masking import MASK, MIN_SECRET_CHARS, SecretMasker


def stream(masker: SecretMasker, chunks: list[str]) -> str:
    return "".join(masker.feed(chunk) for chunk in chunks) + masker.flush()


@pytest.mark.parametrize(
    ("secrets", "chunks", "expected"),
    [
        # whole secret in one chunk
        (["hunter22"], ["pw=hunter22\n"], f"pw={MASK}\n"),
        # split across two chunks, anywhere
        (["hunter22"], ["pw=hun", "ter22\n"], f"pw={MASK}\n"),
        (["hunter22"], ["pw=h", "u", "nter2", "2!"], f"pw={MASK}!"),
        # a prefix that turns out not to be the secret is released unchanged
        (["hunter22"], ["hunt", "ing season"], "hunting season"),
        # the stream ends on a prefix: released at flush
        (["hunter22"], ["x hunte"], "x hunte"),
        # two occurrences, two secrets
        (["alpha-1", "beta-22"], ["alpha-1 and beta-", "22 and alpha-1"],
         f"{MASK} and {MASK} and {MASK}"),
        # a secret that starts another, longer one: the longer wins even when split
        (["abcd", "abcdefgh"], ["[abcd", "efgh]"], f"[{MASK}]"),
        (["abcd", "abcdefgh"], ["[abcd", "xy]"], f"[{MASK}xy]"),
        # each line of a multi-line secret, also with the terminal's \r\n
        (["line-one\nline-two"], ["line-one\r\n", "line-two\r\n"], f"{MASK}\r\n{MASK}\r\n"),
        # too short to mask
        (["abc"], ["abc abc"], "abc abc"),
        # no secrets: passes through
        ([], ["anything"], "anything"),
        # regex metacharacters are literal
        (["a.b*c+d"], ["a.b*c+d aXbbcd"], f"{MASK} aXbbcd"),
    ],
)
def test_streamed_masking(secrets: list[str], chunks: list[str], expected: str) -> None:
    assert stream(SecretMasker(secrets), chunks) == expected


def test_only_a_possible_prefix_is_held_back() -> None:
    masker = SecretMasker(["s3cr3t-value"])
    assert masker.feed("hello world\n") == "hello world\n"
    assert not masker.pending
    assert masker.feed("x s3cr") == "x "
    assert masker.pending
    assert masker.flush() == "s3cr"


@pytest.mark.parametrize("seed", range(20))
def test_any_split_masks_every_occurrence(seed: int) -> None:
    rng = random.Random(seed)
    secret = "tok_" + "".join(rng.choice("abcdef0123") for _ in range(20))
    text = f"start {secret} middle {secret}{secret} end t{secret[:5]}"
    cuts = sorted(rng.sample(range(1, len(text)), 8))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    out = stream(SecretMasker([secret]), chunks)
    assert secret not in out
    assert out == SecretMasker([secret]).mask(text)
    assert out.count(MASK) == 3


def test_minimum_length_is_documented_value() -> None:
    assert MIN_SECRET_CHARS == 4
    assert SecretMasker(["abcd"]).mask("abcd") == MASK
