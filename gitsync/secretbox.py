"""AES-GCM for the git secrets until the app's keyring (``persistence.crypto.Keyring``,
branch oauth-secrets) is on main: then the runtime takes that keyring and this file goes.

Same stored form and keys as that keyring, so what is written here stays readable by it:
``v1:<key id>:<base64url(12-byte nonce || ciphertext || tag)>``, the value bound to its
place (``context``) as associated data; keys from ``ENCRYPTION_KEYS`` (``kid:base64key``,
the first encrypts) or, unset, the key kept in ``DATA_DIR/encryption_key`` (created 0600).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "encryption_key"


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))


class SecretBox:
    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._keys = {kid: AESGCM(key) for kid, key in keys}
        self._primary = keys[0][0]

    @classmethod
    def load(cls, entries: Sequence[str], data_dir: Path) -> SecretBox:
        keys: list[tuple[str, bytes]] = []
        for entry in [*entries, *_key_file(data_dir, create=not any(e.strip() for e in entries))]:
            kid, sep, encoded = entry.strip().partition(":")
            if not sep:
                raise ValueError("ENCRYPTION_KEYS entries are kid:base64key")
            key = _b64decode(encoded.strip())
            if len(key) not in (16, 24, 32):
                raise ValueError(f"encryption key {kid!r} must be 16, 24 or 32 bytes")
            if kid not in {k for k, _ in keys}:
                keys.append((kid, key))
        return cls(keys)

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self._primary].encrypt(nonce, plaintext.encode(), context.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"v1:{self._primary}:{body}"

    def decrypt(self, stored: str, context: str) -> str:
        version, kid, body = stored.split(":", 2)
        if version != "v1" or kid not in self._keys:
            raise ValueError("unknown secret format or key id")
        raw = _b64decode(body)
        return self._keys[kid].decrypt(raw[:12], raw[12:], context.encode()).decode()


def _key_file(data_dir: Path, create: bool) -> list[str]:
    path = data_dir / KEY_FILE
    if path.exists():
        return [path.read_text().strip()]
    if not create:
        return []
    data_dir.mkdir(parents=True, exist_ok=True)
    key = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    entry = f"local-{secrets.token_hex(4)}:{key}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(entry + "\n")
    return [entry]
