"""Member credentials, shared by every role that logs people in (agencies, marketplaces).

Passwords are kept only as salted scrypt hashes and compared in constant time; a login
for an unknown member hashes anyway, so neither the answer nor its timing says which
member IDs exist. Session tokens are random, shown once, and stored only as SHA-256.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nodes.common.calls import call_info
from nodes.common.errors import DomainError, ErrorKind
from storage.common import statements
from storage.common.database import Store
from storage.common.models import LoginFailureRow, utc_now

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
    """Throttles password guessing without letting anyone lock a member out.

    Two limits, both kept in the node's database (``login_failure``), so that a restart
    or a second replica sees the same state:
    - **per member ID and source address**: after ``max_failures`` failures within
      ``window_s`` that address gets LOGIN_THROTTLED for that member until the window
      ends. Someone guessing from one host is stopped, and only that host is.
    - **per member ID, across addresses** (a guesser with many hosts): beyond
      ``member_max_failures`` failures within the window, each further attempt from an
      address the member never logged in from must wait a backoff (1 s, doubling, at most
      ``member_max_delay_s``) after the member's last failure: guessing is slowed to one
      attempt per backoff, never stopped for the member. An address the member logged in
      from before is exempt, so the member keeps logging in from home.

    A refusal is RESOURCE_EXHAUSTED / LOGIN_THROTTLED with ``retry_after_s`` in its
    metadata. A successful login clears its own address's failures. Concurrent attempts
    from one address may overshoot a limit by the attempts in flight (bounded by the
    node's ``max_concurrent_rpcs``); scrypt keeps each of them slow.
    """

    def __init__(
        self,
        store: Store,
        table: type[LoginFailureRow],
        *,
        max_failures: int,
        window_s: float,
        member_max_failures: int,
        member_max_delay_s: float,
        clock: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self._store = store
        self._table = table
        self._max_failures = max_failures
        self._window = datetime.timedelta(seconds=window_s)
        self._member_max_failures = member_max_failures
        self._member_max_delay_s = member_max_delay_s
        self._clock = clock

    @classmethod
    def for_node(cls, store: Store, table: type[LoginFailureRow], limits: object) -> LoginThrottle:
        def limit(name: str) -> float:
            return float(getattr(limits, name))

        return cls(
            store,
            table,
            max_failures=int(limit("login_max_failures")),
            window_s=limit("login_failure_window_s"),
            member_max_failures=int(limit("login_member_max_failures")),
            member_max_delay_s=limit("login_member_max_delay_s"),
        )

    @staticmethod
    def _key(member_id: str, source: str) -> str:
        return f"{member_id} {source}"

    def _check(self, member_id: str, source: str) -> None:
        table, now = self._table, self._clock()
        horizon = now - self._window
        rows = list(
            table.select().where(
                (table.member_id == member_id)
                & ((table.last_failure_at > horizon) | (table.source == source))
            )
        )
        own = next((row for row in rows if row.source == source), None)
        if (
            own is not None
            and own.first_failure_at is not None
            and own.first_failure_at > horizon
            and own.failures >= self._max_failures
        ):
            wait_s = (own.first_failure_at + self._window - now).total_seconds()
            raise _throttled("too many failed logins for this member from this address", wait_s)
        if own is not None and own.last_success_at is not None:
            return
        recent = [
            row
            for row in rows
            if row.first_failure_at is not None and row.first_failure_at > horizon
        ]
        total = sum(row.failures for row in recent)
        excess = total - self._member_max_failures
        if excess < 0:
            return
        delay_s = min(self._member_max_delay_s, 2.0 ** min(excess, 32))
        last = max(row.last_failure_at or now for row in recent)
        wait_s = (last + datetime.timedelta(seconds=delay_s) - now).total_seconds()
        if wait_s > 0:
            raise _throttled("many failed logins for this member; slowed down", wait_s)

    def _failed(self, member_id: str, source: str) -> None:
        table, now = self._table, self._clock()
        key = self._key(member_id, source)
        row = statements.find(table, key=key)
        if row is None:
            table.create(
                key=key,
                member_id=member_id[:128],
                source=source[:64],
                failures=1,
                first_failure_at=now,
                last_failure_at=now,
            )
        else:
            if row.first_failure_at is None or row.first_failure_at <= now - self._window:
                row.failures, row.first_failure_at = 0, now
            row.failures += 1
            row.last_failure_at = now
            row.save()
        # Rows of addresses that neither failed lately nor ever succeeded are forgotten, so
        # the table stays bounded by the guessing of one window.
        table.delete().where(
            (table.last_failure_at <= now - self._window) & table.last_success_at.is_null()
        ).execute()

    def _succeeded(self, member_id: str, source: str) -> None:
        table, now = self._table, self._clock()
        table.insert(
            key=self._key(member_id, source),
            member_id=member_id[:128],
            source=source[:64],
            failures=0,
            last_success_at=now,
        ).on_conflict(
            conflict_target=[table.key],
            update={table.failures: 0, table.first_failure_at: None, table.last_success_at: now},
        ).execute()

    async def check(self, member_id: str, source: str) -> None:
        """Raises LOGIN_THROTTLED while this member may not try again from ``source``."""
        await self._store.run(lambda: self._check(member_id, source))

    async def failed(self, member_id: str, source: str) -> None:
        await self._store.run(lambda: self._failed(member_id, source))

    async def succeeded(self, member_id: str, source: str) -> None:
        await self._store.run(lambda: self._succeeded(member_id, source))


def _throttled(message: str, wait_s: float) -> DomainError:
    retry_after_s = max(1, math.ceil(wait_s))
    return DomainError(
        ErrorKind.RESOURCE_EXHAUSTED,
        "LOGIN_THROTTLED",
        f"{message}; try again in {retry_after_s} s",
        metadata={"retry_after_s": str(retry_after_s)},
    )


async def throttled_login(
    throttle: LoginThrottle,
    member_id: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    source: str | None = None,
) -> T:
    """Runs a login ``attempt`` under ``throttle``: refused while throttled, and every
    MEMBER_CREDENTIALS_INVALID counted against the member ID and the caller's address
    (``source``, by default the address of the RPC being served)."""
    if source is None:
        source = str(call_info().peer_ip or "unknown")
    await throttle.check(member_id, source)
    try:
        result = await attempt()
    except DomainError as error:
        if error.reason == "MEMBER_CREDENTIALS_INVALID":
            await throttle.failed(member_id, source)
        raise
    await throttle.succeeded(member_id, source)
    return result
