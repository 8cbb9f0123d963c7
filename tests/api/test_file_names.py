"""File names with bidi or invisible format characters are refused with a clear 400."""

from __future__ import annotations

import unicodedata

from tests.api.client import Api

# U+202E shows "invoice_\u202Efdp.exe" as "invoice_exe.pdf"; the others reorder or hide text.
BIDI_AND_FORMAT = [
    "\u202e", "\u202a", "\u202b", "\u202c", "\u202d",  # embeddings, overrides, pop
    "\u2066", "\u2067", "\u2068", "\u2069",  # isolates
    "\u200e", "\u200f", "\u061c",  # marks
    "\u200b", "\u2060", "\ufeff", "\u00ad",  # zero-width space, word joiner, BOM, soft hyphen
    "\u2028", "\u2029",  # line / paragraph separators
    "\u0085", "\u009b",  # C1 controls
]


async def test_bidi_and_format_characters_are_refused_in_names(api: Api) -> None:
    user = await api.sign_up()
    ws = await api.ok("POST", "/workspaces", {"name": "Names"}, token=user.token)
    project = await api.ok("POST", f"/workspaces/{ws['id']}/projects", {"name": "P"},
                           token=user.token)
    files = f"/projects/{project['id']}/files"
    folder = await api.ok("POST", files, {"path": "src", "type": "folder"}, token=user.token)
    plain = await api.ok("POST", files, {"path": "src/a.txt"}, token=user.token)
    for char in BIDI_AND_FORMAT:
        code = f"U+{ord(char):04X}"
        for body in ({"path": f"src/invoice_{char}fdp.exe"},
                     {"path": f"sr{char}c/x.py"},
                     {"name": f"x{char}.py", "parent_id": folder["id"]}):
            reply = await api.call("POST", files, body, token=user.token)
            assert reply.status == 400, (code, body, reply.body)
            assert reply.error_code == "invalid_name"
            assert code in reply.body["error"]["message"], reply.body
        renamed = await api.call("PATCH", f"/files/{plain['id']}", {"name": f"b{char}.txt"},
                                 token=user.token)
        assert renamed.status == 400 and renamed.error_code == "invalid_name", (code, renamed)
    # Joiners that scripts and emoji need stay allowed (Persian ZWNJ, emoji ZWJ sequences).
    for name in ("\u0646\u0627\u0645\u0647\u200c\u0647\u0627.txt",
                 "\U0001f468\u200d\U0001f469.png", "caf\u00e9.md", "\u05e9\u05dc\u05d5\u05dd.py"):
        created = await api.call("POST", files, {"path": f"src/{name}"}, token=user.token)
        assert created.status == 201, (unicodedata.name(name[0]), created.body)
