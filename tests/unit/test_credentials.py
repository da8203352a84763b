"""Member credentials: hashes, constant answers for unknown members, bearer tokens."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest

from nodes.common import credentials
from nodes.common.errors import DomainError
from storage.common.database import Store, bind, open_database
from storage.common.models import LoginFailureRow


def test_only_the_right_password_matches_and_unknown_members_never_do():
    salt = credentials.new_salt()
    stored = credentials.hash_password("correct horse", salt)
    assert credentials.password_matches("correct horse", salt, stored)
    assert not credentials.password_matches("wrong horse", salt, stored)
    assert not credentials.password_matches("correct horse", None, None)
    assert stored != credentials.hash_password("correct horse", credentials.new_salt())


def test_session_tokens_are_stored_only_as_their_digest():
    token, digest = credentials.new_session_token("snst_")
    assert token.startswith("snst_") and token not in digest
    assert credentials.bearer_token_digest(f"Bearer {token}", login_rpc="X/Login") == digest
    assert credentials.bearer_token_digest(f"bearer  {token} ", login_rpc="X/Login") == digest


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "SESSION_MISSING"),
        ("", "SESSION_MISSING"),
        ("Basic abc", "SESSION_INVALID"),
        ("Bearer ", "SESSION_INVALID"),
    ],
)
def test_malformed_authorization_is_refused_with_its_reason(header: str | None, reason: str):
    with pytest.raises(DomainError) as refused:
        credentials.bearer_token_digest(header, login_rpc="MemberService/Login")
    assert refused.value.reason == reason


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime(2030, 1, 1)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)


def throttle_on(path: Path, clock: Clock, **limits: float) -> credentials.LoginThrottle:
    """A throttle over a real SQLite file; two of them on one file are two replicas."""
    store = Store(open_database(f"sqlite:///{path}"))
    table = bind(store.database, LoginFailureRow)
    store.create_tables([table])
    settings = {
        "max_failures": 5,
        "window_s": 900,
        "member_max_failures": 20,
        "member_max_delay_s": 60,
        **limits,
    }
    return credentials.LoginThrottle(store, table, clock=clock, **settings)


def reason(call) -> str:
    try:
        asyncio.run(call)
    except DomainError as error:
        return error.reason
    return "OK"


async def guess(throttle: credentials.LoginThrottle, member: str, source: str) -> None:
    await throttle.check(member, source)
    await throttle.failed(member, source)


def test_failures_from_one_address_throttle_that_address_only(tmp_path: Path):
    """Five failures for alice from one address refuse that address, for alice only; alice
    from another address, and bob from the same one, still log in; the window heals it."""
    clock = Clock()
    throttle = throttle_on(tmp_path / "node.db", clock)
    for _ in range(5):
        asyncio.run(guess(throttle, "alice", "198.51.100.7"))
    with pytest.raises(DomainError) as refused:
        asyncio.run(throttle.check("alice", "198.51.100.7"))
    assert refused.value.reason == "LOGIN_THROTTLED"
    assert refused.value.kind.value == "RESOURCE_EXHAUSTED"
    assert refused.value.metadata["retry_after_s"] == "900"
    assert reason(throttle.check("alice", "203.0.113.5")) == "OK", "no lock-out of the member"
    assert reason(throttle.check("bob", "198.51.100.7")) == "OK"
    clock.advance(901)
    assert reason(throttle.check("alice", "198.51.100.7")) == "OK"


def test_the_state_survives_a_restart_and_is_shared_by_replicas(tmp_path: Path):
    clock = Clock()
    first = throttle_on(tmp_path / "node.db", clock)
    for _ in range(5):
        asyncio.run(guess(first, "alice", "198.51.100.7"))
    replica = throttle_on(tmp_path / "node.db", clock)  # a restart, or a second replica
    assert reason(replica.check("alice", "198.51.100.7")) == "LOGIN_THROTTLED"


def test_guessing_from_many_addresses_is_slowed_never_locked(tmp_path: Path):
    """Beyond the per-member ceiling, new addresses wait a doubling backoff (capped) after
    the last failure; an address the member logged in from before is not slowed at all."""
    clock = Clock()
    throttle = throttle_on(tmp_path / "node.db", clock, member_max_failures=4)
    asyncio.run(throttle.succeeded("alice", "192.0.2.10"))  # alice's own address
    for number in range(4):
        asyncio.run(guess(throttle, "alice", f"198.51.100.{number}"))
    # The ceiling is reached: a fresh address must wait 1 s after the last failure.
    assert reason(throttle.check("alice", "198.51.100.50")) == "LOGIN_THROTTLED"
    assert reason(throttle.check("alice", "192.0.2.10")) == "OK", "the member's own address"
    clock.advance(1)
    asyncio.run(guess(throttle, "alice", "198.51.100.50"))
    clock.advance(1)  # the backoff doubled to 2 s
    with pytest.raises(DomainError) as refused:
        asyncio.run(throttle.check("alice", "198.51.100.51"))
    assert refused.value.metadata["retry_after_s"] == "1"
    clock.advance(1)
    assert reason(throttle.check("alice", "198.51.100.51")) == "OK", "slowed, not locked"
    for number in range(20):
        clock.advance(60)
        asyncio.run(guess(throttle, "alice", f"198.51.100.{100 + number}"))
        assert reason(throttle.check("alice", "192.0.2.10")) == "OK"
    clock.advance(60)
    assert reason(throttle.check("alice", "198.51.100.53")) == "OK", "the delay is capped"


def test_throttled_login_counts_only_wrong_credentials(tmp_path: Path):
    throttle = throttle_on(tmp_path / "node.db", Clock(), max_failures=1)

    async def wrong() -> None:
        raise credentials.credentials_invalid()

    async def suspended() -> None:
        raise DomainError(credentials.ErrorKind.FAILED_PRECONDITION, "ENTITY_SUSPENDED", "x")

    def login(attempt) -> str:
        return reason(credentials.throttled_login(throttle, "carol", attempt, source="192.0.2.1"))

    assert login(suspended) == "ENTITY_SUSPENDED"
    assert reason(throttle.check("carol", "192.0.2.1")) == "OK", "a suspension is no guess"
    assert login(wrong) == "MEMBER_CREDENTIALS_INVALID"
    assert login(wrong) == "LOGIN_THROTTLED"
