"""Member credentials, shared by every role that logs people in (agencies, marketplaces).

Passwords are kept only as salted scrypt hashes and compared in constant time; a login
for an unknown member hashes anyway, so neither the answer nor its timing says which
member IDs exist. Session tokens are random, shown once, and stored only as SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from nodes.common.errors import DomainError, ErrorKind

# scrypt cost: about 50 ms per hash on one core, so guessing is slow and login is not.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
MIN_PASSWORD_LENGTH = 8


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )


def password_matches(password: str, salt: bytes | None, stored_hash: bytes | None) -> bool:
    """True only for the right password; pass None for both when the member is unknown."""
    digest = hash_password(password, salt if salt is not None else bytes(SALT_BYTES))
    return stored_hash is not None and hmac.compare_digest(digest, stored_hash)


def credentials_invalid() -> DomainError:
    """The one answer for an unknown member and a wrong password alike."""
    return DomainError(
        ErrorKind.UNAUTHENTICATED, "MEMBER_CREDENTIALS_INVALID", "member ID or password is wrong"
    )


def new_session_token(prefix: str) -> tuple[str, str]:
    """A fresh session token (shown once) and the SHA-256 under which it is stored."""
    token = prefix + secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def bearer_token_digest(authorization: str | None, *, login_rpc: str) -> str:
    """The stored digest of the token in ``authorization: Bearer <token>`` metadata.

    Refuses a missing header with SESSION_MISSING (naming ``login_rpc``) and anything but a
    Bearer token with SESSION_INVALID.
    """
    if not authorization:
        raise DomainError(
            ErrorKind.UNAUTHENTICATED,
            "SESSION_MISSING",
            f"send 'authorization: Bearer <session token>' from {login_rpc}",
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise DomainError(
            ErrorKind.UNAUTHENTICATED, "SESSION_INVALID", "authorization must be 'Bearer <token>'"
        )
    return token_digest(token)
