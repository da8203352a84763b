"""Secrets at rest: what a node stores that would let a reader act as someone, sealed.

A node keeps two kinds of secret in its database that it must be able to read back:
- its own license key (it presents it on every call to approval);
- stored answers of mutating RPCs, some of which carry a secret: approval's answer to
  ``RegisterEntity`` and ``RotateLicenseKey`` is the new license key, and a replay must
  deliver it again to a caller whose first answer was lost.

A hash would not do for either (the secret must come back), so both are sealed with
AES-256-GCM under a node key kept outside the database, in a file readable by the node
alone (``secrets_key_file``; by default beside a SQLite database). Every stored answer is
sealed, not only the ones known to carry a secret today, so no future RPC can forget it.
Each ciphertext is bound to its row (scope, method, request_id) as associated data, so a
sealed answer copied into another row does not open. A database dump without the key file
(a backup, a replica, a stolen disk image) yields no license key. Approval itself keeps
only a SHA-256 of each key it issued.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
# Sealed blobs start with this, so that rows written before sealing (plaintext) still read.
SEALED_PREFIX = b"snsb1:"
SEALED_TEXT_PREFIX = "s1:"


class SecretsKeyError(ValueError):
    """The node's secrets key file is missing, malformed or readable by others."""


class SecretBox:
    """Seals and opens a node's stored secrets under its one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SecretsKeyError(f"a secrets key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return SEALED_PREFIX + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, blob: bytes, context: str) -> bytes:
        """The plaintext of a sealed blob; a blob stored before sealing is returned as is."""
        if not blob.startswith(SEALED_PREFIX):
            return blob
        body = blob[len(SEALED_PREFIX) :]
        return self._aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], context.encode())

    def seal_text(self, plaintext: str, context: str) -> str:
        """A sealed short string, as text for a character column (URL-safe base64)."""
        blob = self.seal(plaintext.encode(), context)[len(SEALED_PREFIX) :]
        return SEALED_TEXT_PREFIX + base64.urlsafe_b64encode(blob).decode().rstrip("=")

    def open_text(self, value: str, context: str) -> str:
        if not value.startswith(SEALED_TEXT_PREFIX):
            return value
        encoded = value[len(SEALED_TEXT_PREFIX) :]
        blob = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        return self.open(SEALED_PREFIX + blob, context).decode()


def load_or_create_key(path: Path) -> SecretBox:
    """The node key in ``path``, created (owner-only, 0600) on first start.

    Refuses a key file that others may read: whoever reads it reads every sealed secret.
    """
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process of this node created it first; read theirs
        else:
            with os.fdopen(descriptor, "wb") as file:
                file.write(secrets.token_bytes(KEY_BYTES))
                file.flush()
                os.fsync(file.fileno())
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretsKeyError(
            f"{path}: the secrets key must be readable by the node alone (chmod 600), "
            f"not {oct(mode)}"
        )
    return SecretBox(path.read_bytes())


def ephemeral_box() -> SecretBox:
    """A key that lives as long as the process: for in-memory databases (unit tests)."""
    return SecretBox(secrets.token_bytes(KEY_BYTES))
