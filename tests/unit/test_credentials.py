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
