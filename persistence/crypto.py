"""Secrets at rest: AES-GCM in the application, with key ids so keys can rotate.

A stored secret is ``v1:<key id>:<base64url(nonce || ciphertext || tag)>``: the key id sits
beside the ciphertext, so a value encrypted under an old key still decrypts after a new
key was put first in ``ENCRYPTION_KEYS``, and the re-encryption job
(``persistence.reencrypt``) finds what is not under the newest key yet. Each value is
bound to where it is stored (``context``, e.g. ``oauth_connections.access_token:<row
id>``) as associated data: a ciphertext copied into another row or column does not
decrypt. The database never sees plaintext.

Keys: ``ENCRYPTION_KEYS=kid:base64key,...`` (16, 24 or 32 bytes each; the first
encrypts, all decrypt). Unset, a 256-bit key is generated once and kept in
``DATA_DIR/encryption_key`` (mode 0600), like the development JWT secret, so ``make run``
needs no configuration. When ``ENCRYPTION_KEYS`` is set later, that file's key (if any)
still decrypts, and the re-encryption job moves everything under the configured key.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
NONCE_BYTES = 12
KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
KEY_FILE = "encryption_key"


class KeyringError(ValueError):
    """``ENCRYPTION_KEYS`` (or the key file) is malformed."""


class DecryptionError(Exception):
    """A stored value cannot be decrypted: unknown key id, wrong context or tampered."""


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError) as exc:
        raise KeyringError("an encryption key is not valid base64") from exc


def parse_key(entry: str) -> tuple[str, bytes]:
    """``kid:base64key`` -> (kid, key bytes)."""
    kid, sep, encoded = entry.strip().partition(":")
    if not sep or not KEY_ID.match(kid):
        raise KeyringError(
            "ENCRYPTION_KEYS entries are kid:base64key (kid: letters, digits, . _ -)"
        )
    key = _b64decode(encoded.strip())
    if len(key) not in (16, 24, 32):
        raise KeyringError(f"encryption key {kid!r} must be 16, 24 or 32 bytes, not {len(key)}")
    return kid, key


def new_key_entry(prefix: str = "local") -> str:
    """A fresh ``kid:base64key`` entry (256-bit key, random kid suffix)."""
    key = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    return f"{prefix}-{secrets.token_hex(4)}:{key}"


class Keyring:
    """Named AES-GCM keys; the first one encrypts, every one decrypts."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyringError("a keyring needs at least one key")
        self._keys: dict[str, AESGCM] = {}
        for kid, key in keys:
            if kid in self._keys:
                raise KeyringError(f"encryption key id {kid!r} appears twice")
            self._keys[kid] = AESGCM(key)
        self.primary_id = keys[0][0]
        self._primary = self._keys[self.primary_id]
        self._current_prefix = f"{VERSION}:{self.primary_id}:"

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._primary.encrypt(nonce, plaintext.encode(), context.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return self._current_prefix + body

    def decrypt(self, stored: str, context: str) -> str:
        version, kid, body = _split(stored)
        if version != VERSION:
            raise DecryptionError(f"unknown secret format {version!r}")
        aead = self._keys.get(kid)
        if aead is None:
            raise DecryptionError(f"no encryption key {kid!r} is configured")
        try:
            raw = _b64decode(body)
        except KeyringError as exc:
            raise DecryptionError("stored secret is not valid base64") from exc
        if len(raw) <= NONCE_BYTES:
            raise DecryptionError("stored secret is too short")
        try:
            plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except InvalidTag as exc:
            raise DecryptionError("stored secret does not decrypt (tampered or moved)") from exc
        return plain.decode()

    def is_current(self, stored: str) -> bool:
        """True when ``stored`` is encrypted under the newest key."""
        return stored.startswith(self._current_prefix)

    @property
    def current_prefix(self) -> str:
        """What every value under the newest key starts with (for SQL ``like``)."""
        return self._current_prefix


def _split(stored: str) -> tuple[str, str, str]:
    parts = stored.split(":", 2)
    if len(parts) != 3:
        raise DecryptionError("stored secret is not in the v1:kid:data format")
    return parts[0], parts[1], parts[2]


def key_id_of(stored: str) -> str:
    return _split(stored)[1]


def _key_file_entry(data_dir: Path, create: bool) -> str | None:
    path = data_dir / KEY_FILE
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    # Written 0600 to a private name, then linked into place: two processes starting at
    # once both end up with the one key that won, never with a half-written file.
    tmp = data_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(new_key_entry() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def load_keyring(entries: Sequence[str], data_dir: Path) -> Keyring:
    """The keyring of ``ENCRYPTION_KEYS`` (``entries``), or of the key kept in ``data_dir``.

    With entries configured, the data-dir key is added last (decrypt only) when it exists,
    so values written before ``ENCRYPTION_KEYS`` was set stay readable until re-encrypted.
    """
    keys = [parse_key(entry) for entry in entries if entry.strip()]
    local = _key_file_entry(data_dir, create=not keys)
    if local is not None:
        kid, key = parse_key(local)
        if kid not in {k for k, _ in keys}:
            keys.append((kid, key))
    return Keyring(keys)
