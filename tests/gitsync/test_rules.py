"""The pure rules, by tables: paths a tree may bring, repository URLs, webhook signatures,
the pull plan, the text merge."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from gitsync import paths, urls
from gitsync.config import GitConfig
from gitsync.merge import (
    ADDED_BOTH,
    BINARY_BOTH,
    CHANGED_HERE_DELETED_THERE,
    DELETED_HERE_CHANGED_THERE,
    BaseEntry,
    OursEntry,
    RemoteEntry,
    blob_sha,
    plan_pull,
)
from gitsync.repo import check_branch, quote_path
from gitsync.runner import Git, redact
from gitsync.textmerge import merge_text
from gitsync.webhooks import WebhookRejected, verify
from tests.fakes.git_http import git


@pytest.mark.parametrize(("path", "refused"), [
    ("src/main.py", False), ("a b/c d.txt", False), ("ünïcødé/ファイル.md", False),
    ("", True), ("/etc/passwd", True), ("../x", True), ("a/../b", True), ("a/./b", True),
    ("a//b", True), (".git/config", True), ("sub/.GIT/hooks/x", True), (".git./x", True),
    ("git~1/config", True), ("a\\b", True), ("bell\x07", True), ("rtl\u202etxt", True),
    ("zw\u200dj/.git", True), ("x" * 256, True), ("/".join(["d"] * 65), True),
    (" lead", True), ("trail ", True), ("bad\udcff", True),
])
def test_tree_paths(path: str, refused: bool) -> None:
    assert (paths.refusal(path) is not None) == refused, paths.refusal(path)


def test_case_twins_and_folders() -> None:
    accepted, skipped = paths.accept(["README.md", "readme.md", "Docs/a.md", "docs"],
                                     taken=["SRC/x.py"])
    assert accepted == {"Docs/a.md", "README.md"}
    assert {s.path for s in skipped} == {"readme.md", "docs"}
    # The project's own path wins over a twin from the repository; the same path is not one.
    accepted, skipped = paths.accept(["src/x.py", "SRC/x.py"], taken=["SRC/x.py"])
    assert accepted == {"SRC/x.py"} and [s.path for s in skipped] == ["src/x.py"]


CONFIG = GitConfig(allowed_hosts=("github.com", "git.example.test"))


@pytest.mark.parametrize(("raw", "expected"), [
    ("https://github.com/acme/demo", ("https://github.com/acme/demo", "acme/demo", "github")),
    ("https://github.com/acme/demo.git/", ("https://github.com/acme/demo.git", "acme/demo",
                                           "github")),
    ("https://git.example.test:8443/group/sub/repo.git",
     ("https://git.example.test:8443/group/sub/repo.git", "group/sub/repo", None)),
])
def test_accepted_urls(raw: str, expected: tuple[str, str, str | None]) -> None:
    parsed = urls.parse(raw, CONFIG)
    assert (parsed.url, parsed.full_name, parsed.provider) == expected


@pytest.mark.parametrize("raw", [
    "http://github.com/acme/demo", "file:///srv/repo.git", "/srv/repo.git", "ssh://github.com/a/b",
    "git@github.com:acme/demo.git", "ext::sh -c touch% /tmp/x", "-uhttps://github.com/a/b",
    "https://token@github.com/acme/demo", "https://u:p@github.com/acme/demo",
    "https://169.254.169.254/latest/meta", "https://localhost/a/b", "https://github.com/acme",
    "https://github.com/acme/../other", "https://github.com/acme/demo?x=1",
    "https://github.com/acme/de mo", "https://github.com:99999/a/b",
])
def test_refused_urls(raw: str) -> None:
    with pytest.raises(urls.BadUrl):
        urls.parse(raw, CONFIG)


def test_branch_names_and_quoting() -> None:
    for good in ("main", "feature/x-1", "release_2.0"):
        assert check_branch(good) == good
    for bad in ("-o", "a..b", "a b", "a~1", "x^", "a:b", "x.lock", "a//b", "@{u}x", "/a", "a/"):
        with pytest.raises(ValueError):
            check_branch(bad)
    assert quote_path('we"ird\\name\n') == '"we\\"ird\\\\name\\n"'
    assert redact("fatal: https://user:tok@host/x") == "fatal: https://***@host/x"


def test_blob_sha_is_gits(tmp_path: Path) -> None:
    for data in (b"", b"hello\n", bytes(range(256))):
        (tmp_path / "f").write_bytes(data)
        assert blob_sha(data) == git("hash-object", str(tmp_path / "f")).strip()


SECRET = "s3cret"


def _hmac(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def test_webhook_verification() -> None:
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    delivery = verify("github", {"x-hub-signature-256": _hmac(body), "X-GitHub-Event": "push",
                                 "X-GitHub-Delivery": "d1"}, body, SECRET)
    assert (delivery.is_push, delivery.branches, delivery.delivery_id) == (True, ("main",), "d1")
    refusals = [
        ("github", {"X-Hub-Signature-256": _hmac(body + b" "), "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": "d"}, 401),
        ("github", {"X-Hub-Signature-256": _hmac(body).upper(), "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": "d"}, 401),
        ("github", {"X-Hub-Signature": _hmac(body), "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": "d"}, 401),
        ("gitlab", {"X-Gitlab-Token": SECRET + "x", "X-Gitlab-Event": "Push Hook",
                    "X-Gitlab-Event-UUID": "d"}, 401),
        ("bitbucket", {"X-Hub-Signature": "sha1=abc", "X-Event-Key": "repo:push",
                       "X-Request-UUID": "d"}, 401),
        ("gitlab", {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Push Hook"}, 400),
        ("gitea", {}, 404),
    ]
    for provider, headers, status in refusals:
        with pytest.raises(WebhookRejected) as caught:
            verify(provider, headers, body, SECRET)
        assert caught.value.status == status, (provider, headers)


def _base(path: str, data: bytes, **kw: object) -> BaseEntry:
    return BaseEntry(path, blob_sha(data), "100644", bool(kw.get("in_project", True)),
                     kw.get("key"))  # type: ignore[arg-type]


def _remote(path: str, data: bytes, importable: bool = True) -> RemoteEntry:
    return RemoteEntry(path, blob_sha(data), "100644", len(data), importable)


def _ours(path: str, text: str | None, key: str | None = None) -> OursEntry:
    return OursEntry(path, path, text, key)


def test_pull_plan() -> None:
    base = {p: _base(p, b"v1\n") for p in ("same", "theirs", "both", "gone", "del-mod", "bin")}
    base["bin"] = _base("bin", b"\x00", key="sha256/aa/x")
    base["skipped"] = _base("skipped", b"link", in_project=False)
    theirs = {
        "same": _remote("same", b"v1\n"), "theirs": _remote("theirs", b"v2\n"),
        "both": _remote("both", b"v2\n"), "del-mod": _remote("del-mod", b"v2\n"),
        "new": _remote("new", b"n\n"), "added-both": _remote("added-both", b"a\n"),
        "mod-del": _remote("mod-del", b"x\n"), "bin": _remote("bin", b"\x01"),
        "skipped": _remote("skipped", b"link2", importable=False),
        "same-change": _remote("same-change", b"s\n"),
    }
    base["mod-del"] = _base("mod-del", b"x\n")
    base["same-change"] = _base("same-change", b"o\n")
    del theirs["mod-del"]
    theirs["mod-del2"] = _remote("mod-del2", b"z\n")
    ours = {
        "same": _ours("same", "v1\n"), "theirs": _ours("theirs", "v1\n"),
        "both": _ours("both", "ours\n"), "gone": _ours("gone", "v1\n"),
        "added-both": _ours("added-both", "b\n"), "mod-del": _ours("mod-del", "changed\n"),
        "bin": _ours("bin", None, "sha256/bb/y"), "same-change": _ours("same-change", "s\n"),
    }
    plan = plan_pull(base, theirs, ours)
    assert [t.path for t, o in plan.take] == ["mod-del2", "new", "theirs"]
    assert [o.path for o in plan.delete] == ["gone"]
    assert [t.path for t, _, _ in plan.merge] == ["both"]
    assert plan.conflicts == {
        "added-both": ADDED_BOTH, "bin": BINARY_BOTH,
        "del-mod": DELETED_HERE_CHANGED_THERE, "mod-del": CHANGED_HERE_DELETED_THERE,
    }
    assert "same" not in plan.remote_changed and "skipped" in plan.remote_changed


async def test_text_merge(tmp_path: Path) -> None:
    runner = Git(GitConfig())
    try:
        base = "".join(f"{i}\n" for i in range(10))
        ours = base.replace("1\n", "one\n")
        theirs = base.replace("8\n", "eight\n")
        assert await merge_text(runner, base, ours, theirs) == \
            base.replace("1\n", "one\n").replace("8\n", "eight\n")
        assert await merge_text(runner, base, ours, base.replace("1\n", "uno\n")) is None
        assert await merge_text(runner, base, ours, ours) == ours
        assert await merge_text(runner, "a", "a", "b") == "b"
        # No trailing newline, non-ASCII; adjacent changes conflict, as in git.
        assert await merge_text(runner, "x\n1\n2\ny", "x!\n1\n2\ny",
                                "x\n1\n2\ny ü") == "x!\n1\n2\ny ü"
        assert await merge_text(runner, "x\ny", "x!\ny", "x\ny ü") is None
    finally:
        runner.close()
