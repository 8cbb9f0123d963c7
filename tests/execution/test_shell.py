"""The shell-integration parser and the replay filter: text in, display text and commands out."""

from __future__ import annotations

import base64

import pytest

from execution.shell import ShellParser, plain, strip_queries


def osc(body: str) -> str:
    return f"\x1b]{body}\x07"


def command(text: str) -> str:
    return osc("633;E;" + base64.b64encode(text.encode()).decode()) + osc("133;C")


def prompt(code: int, cwd: str) -> str:
    return osc(f"133;D;{code}") + osc(f"633;P;Cwd={cwd}") + osc("133;A") + "$ " + osc("133;B")


def test_a_command_is_recorded_with_output_exit_code_cwd_and_duration() -> None:
    parser = ShellParser()
    shown, done = parser.feed(prompt(0, "/workspace"), 1.0)
    assert shown == "$ " and done == []
    shown, done = parser.feed("ls\r\n" + command("ls -l") + "\x1b[1mfile\x1b[0m\r\n", 2.0)
    assert shown == "ls\r\n\x1b[1mfile\x1b[0m\r\n"
    shown, done = parser.feed(prompt(2, "/workspace"), 2.25)
    assert len(done) == 1
    record = done[0]
    assert (record.command, record.output, record.exit_code, record.cwd, record.duration_ms) == (
        "ls -l", "file\n", 2, "/workspace", 250
    )


@pytest.mark.parametrize("cut", range(1, 40))
def test_markers_split_across_reads_are_reassembled(cut: int) -> None:
    stream = prompt(0, "/w") + command("echo hi") + "hi\r\n" + prompt(0, "/w")
    parser = ShellParser()
    shown_a, done_a = parser.feed(stream[:cut], 0.0)
    shown_b, done_b = parser.feed(stream[cut:], 0.0)
    assert shown_a + shown_b == "$ hi\r\n$ "
    assert [r.command for r in done_a + done_b] == ["echo hi"]


def test_a_prompt_without_a_command_records_nothing_and_other_osc_pass_through() -> None:
    parser = ShellParser()
    title = osc("0;my title")
    shown, done = parser.feed(prompt(0, "/") + title + prompt(0, "/"), 0.0)
    assert done == [] and shown == "$ " + title + "$ "


def test_command_output_is_capped() -> None:
    parser = ShellParser(output_cap=10)
    parser.feed(command("yes"), 0.0)
    parser.feed("y\r\n" * 100, 0.0)
    _, done = parser.feed(osc("133;D;130"), 1.0)
    assert len(done[0].output) <= 10 and done[0].exit_code == 130


def test_an_unterminated_osc_is_eventually_shown() -> None:
    parser = ShellParser()
    shown, _ = parser.feed("\x1b]" + "x" * 10000, 0.0)
    assert shown.startswith("\x1b]x")


def test_replay_drops_terminal_queries_only() -> None:
    text = "a\x1b[6nb\x1b[cc\x1b[>0cd\x1b[5ne\x1b]11;?\x07f\x1b[18tg\x1b[31mred\x1b[0m"
    assert strip_queries(text) == "abcdefg\x1b[31mred\x1b[0m"


def test_plain_output_has_no_escape_sequences() -> None:
    assert plain("\x1b[?2004l\r\x1b[01;34mdir\x1b[0m\r\nx\r\n") == "dir\nx\n"
