"""AES-GCM secrets with key ids: round trip, rotation, binding to their place, the default key."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import stat
from pathlib import Path

import pytest

from persistence.crypto import (
    DecryptionError,
    Keyring,
    KeyringError,
    key_id_of,
    load_keyring,
    parse_key,
)


def entry(kid: str) -> str:
    return f"{kid}:" + base64.b64encode(os.urandom(32)).decode()


def test_round_trip_and_format() -> None:
    ring = Keyring([parse_key(entry("k1"))])
    stored = ring.encrypt("gho_secret", "oauth_connections.access_token:1")
    assert stored.startswith("v1:k1:")
    assert "gho_secret" not in stored
    assert ring.decrypt(stored, "oauth_connections.access_token:1") == "gho_secret"
    # random nonce: the same value encrypts differently each time
    assert stored != ring.encrypt("gho_secret", "oauth_connections.access_token:1")


def test_bound_to_its_context() -> None:
    ring = Keyring([parse_key(entry("k1"))])
    stored = ring.encrypt("value", "environment_variables.value_encrypted:a")
    with pytest.raises(DecryptionError):
        ring.decrypt(stored, "environment_variables.value_encrypted:b")


def test_tampered_value_is_refused() -> None:
    ring = Keyring([parse_key(entry("k1"))])
    stored = ring.encrypt("value", "c")
    body = stored.split(":", 2)[2]
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(DecryptionError):
        ring.decrypt("v1:k1:" + flipped, "c")


def test_rotation_old_keys_decrypt_newest_encrypts() -> None:
    old, new = entry("old"), entry("new")
    before = Keyring([parse_key(old)]).encrypt("value", "c")
    ring = Keyring([parse_key(new), parse_key(old)])
    assert ring.decrypt(before, "c") == "value"
    assert not ring.is_current(before)
    after = ring.encrypt("value", "c")
    assert key_id_of(after) == "new" and ring.is_current(after)
    with pytest.raises(DecryptionError):
        Keyring([parse_key(new)]).decrypt(before, "c")


@pytest.mark.parametrize(
    "bad",
    ["nokid", "bad kid:" + base64.b64encode(os.urandom(32)).decode(),
     "k:" + base64.b64encode(os.urandom(20)).decode(), "k:!!!"],
)
def test_malformed_keys_are_refused(bad: str) -> None:
    with pytest.raises(KeyringError):
        parse_key(bad)


def test_default_key_is_generated_once_in_the_data_dir(tmp_path: Path) -> None:
    first = load_keyring((), tmp_path)
    stored = first.encrypt("value", "c")
    key_file = tmp_path / "encryption_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = load_keyring((), tmp_path)
    assert second.primary_id == first.primary_id
    assert second.decrypt(stored, "c") == "value"


def test_configured_keys_keep_the_data_dir_key_for_decryption(tmp_path: Path) -> None:
    stored = load_keyring((), tmp_path).encrypt("value", "c")
    ring = load_keyring((entry("prod"),), tmp_path)
    assert ring.primary_id == "prod"
    assert ring.decrypt(stored, "c") == "value"
    assert not ring.is_current(stored)


def test_configured_keys_create_no_key_file(tmp_path: Path) -> None:
    load_keyring((entry("prod"),), tmp_path)
    assert not (tmp_path / "encryption_key").exists()


def test_processes_starting_together_share_one_generated_key(tmp_path: Path) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        rings = list(pool.map(lambda _: load_keyring((), tmp_path), range(16)))
    assert len({ring.primary_id for ring in rings}) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["encryption_key"]
