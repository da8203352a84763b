"""Member credentials: hashes, constant answers for unknown members, bearer tokens."""

from __future__ import annotations

import pytest

from nodes.common import credentials
from nodes.common.errors import DomainError


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


def test_logins_are_throttled_per_member_after_too_many_failures_and_recover():
    """Five failures within the window lock the member ID out, not others; time heals it."""
    now = [1000.0]
    throttle = credentials.LoginThrottle(max_failures=5, window_s=900, clock=lambda: now[0])
    for _ in range(5):
        throttle.check("alice")
        throttle.failed("alice")
    with pytest.raises(DomainError) as refused:
        throttle.check("alice")
    assert refused.value.reason == "LOGIN_THROTTLED"
    assert refused.value.metadata["retry_after_s"] == "900"
    throttle.check("bob")  # another member is unaffected
    now[0] += 901  # the window slides past the failures
    throttle.check("alice")


def test_a_successful_login_clears_the_failures_and_memory_stays_bounded():
    throttle = credentials.LoginThrottle(max_failures=2, window_s=60, max_tracked=3)
    throttle.failed("alice")
    throttle.succeeded("alice")
    throttle.failed("alice")
    throttle.check("alice")  # one failure since the success: still allowed
    for number in range(10):
        throttle.failed(f"guess-{number}")
    assert len(throttle._failures) == 3


def test_throttled_login_counts_only_wrong_credentials():
    import asyncio

    throttle = credentials.LoginThrottle(max_failures=1, window_s=60)

    async def wrong() -> None:
        raise credentials.credentials_invalid()

    async def suspended() -> None:
        raise DomainError(credentials.ErrorKind.FAILED_PRECONDITION, "ENTITY_SUSPENDED", "x")

    with pytest.raises(DomainError):
        asyncio.run(credentials.throttled_login(throttle, "carol", suspended))
    throttle.check("carol")  # a suspension is not a guess
    with pytest.raises(DomainError):
        asyncio.run(credentials.throttled_login(throttle, "carol", wrong))
    with pytest.raises(DomainError) as refused:
        asyncio.run(credentials.throttled_login(throttle, "carol", wrong))
    assert refused.value.reason == "LOGIN_THROTTLED"
