"""Member credentials, shared by every role that logs people in (agencies, marketplaces).

Passwords are kept only as salted scrypt hashes and compared in constant time; a login
for an unknown member hashes anyway, so neither the answer nor its timing says which
member IDs exist. Session tokens are random, shown once, and stored only as SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nodes.common.errors import DomainError, ErrorKind

T = TypeVar("T")

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


class LoginThrottle:
    """Refuses logins for a member ID after too many failures in a sliding window.

    scrypt makes each guess slow; this makes guessing one member's password impossible at
    any useful rate. It is per node and in memory (a restart forgets it), bounded to
    ``max_tracked`` member IDs, and a successful login clears the member's record.
    """

    def __init__(
        self,
        *,
        max_failures: int,
        window_s: float,
        max_tracked: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_failures = max_failures
        self._window_s = window_s
        self._max_tracked = max_tracked
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, member_id: str) -> deque[float]:
        failures = self._failures.get(member_id, deque())
        horizon = self._clock() - self._window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        return failures

    def check(self, member_id: str) -> None:
        """Raises LOGIN_THROTTLED while the member ID has too many recent failures."""
        failures = self._recent(member_id)
        if len(failures) >= self._max_failures:
            retry_after_s = math.ceil(failures[0] + self._window_s - self._clock())
            raise DomainError(
                ErrorKind.RESOURCE_EXHAUSTED,
                "LOGIN_THROTTLED",
                f"too many failed logins for this member; try again in {retry_after_s} s",
                metadata={"retry_after_s": str(max(1, retry_after_s))},
            )

    def failed(self, member_id: str) -> None:
        failures = self._recent(member_id)
        failures.append(self._clock())
        while len(failures) > self._max_failures:
            failures.popleft()
        self._failures[member_id] = failures
        self._failures.move_to_end(member_id)
        while len(self._failures) > self._max_tracked:
            self._failures.popitem(last=False)

    def succeeded(self, member_id: str) -> None:
        self._failures.pop(member_id, None)

    @classmethod
    def from_limits(cls, limits: object) -> LoginThrottle:
        return cls(
            max_failures=int(getattr(limits, "login_max_failures")),  # noqa: B009
            window_s=float(getattr(limits, "login_failure_window_s")),  # noqa: B009
        )


async def throttled_login(
    throttle: LoginThrottle, member_id: str, attempt: Callable[[], Awaitable[T]]
) -> T:
    """Runs a login ``attempt`` under ``throttle``: refused while throttled, and every
    MEMBER_CREDENTIALS_INVALID counted against the member ID."""
    throttle.check(member_id)
    try:
        result = await attempt()
    except DomainError as error:
        if error.reason == "MEMBER_CREDENTIALS_INVALID":
            throttle.failed(member_id)
        raise
    throttle.succeeded(member_id)
    return result
