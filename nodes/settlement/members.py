"""Members of a settlement agency: enrolment, credentials, sessions and credit (flow step 1).

Passwords are kept only as salted scrypt hashes; session tokens only as SHA-256. The member
ID and name never leave the agency except to its own admin.
"""

from __future__ import annotations

import datetime
import re

import peewee

from nodes.common import credentials
from nodes.common.credentials import MIN_PASSWORD_LENGTH
from nodes.common.errors import DomainError, ErrorKind, Violations
from storage.common import statements
from storage.common.models import utc_now
from storage.settlement.models import MemberRow, SessionRow, SettlementOrderRow
from storage.settlement.repository import SettlementRepository

MEMBER_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
SESSION_TOKEN_PREFIX = "snst_"
# Approved orders in these states still count against the member's credit limit.
OPEN_BILLING_STATES = ("NOT_YET_BILLED", "BILLED")


# 10^12 minor units (ten billion in a two-decimal currency) is far above any member's
# credit, and keeps every sum of open orders far from the int64 limit.
MAX_CREDIT_LIMIT_MINOR = 10**12


def validate_credit_limit(
    violations: Violations, field: str, amount_minor: int, currency: str
) -> None:
    """A credit limit is 0 to MAX_CREDIT_LIMIT_MINOR minor units in an ISO 4217 currency."""
    if not 0 <= amount_minor <= MAX_CREDIT_LIMIT_MINOR:
        violations.add(f"{field}.amount_minor", f"must be 0 to {MAX_CREDIT_LIMIT_MINOR}")
    if not CURRENCY_PATTERN.match(currency):
        violations.add(f"{field}.currency_code", "must be an ISO 4217 code")


def enroll_member(
    repo: SettlementRepository,
    *,
    member_id: str,
    display_name: str,
    password: str,
    credit_limit_minor: int,
    currency_code: str,
) -> MemberRow:
    """Enrols a member with a password and a credit limit; MEMBER_ALREADY_ENROLLED if taken."""
    violations = Violations()
    if not MEMBER_ID_PATTERN.match(member_id):
        violations.add("member_id", "must be 1-64 letters, digits, '.', '_' or '-'")
    violations.require("display_name", display_name.strip())
    if len(password) < MIN_PASSWORD_LENGTH:
        violations.add("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    validate_credit_limit(violations, "credit_limit", credit_limit_minor, currency_code)
    violations.raise_if_any()
    if repo.member(member_id) is not None:
        raise DomainError(
            ErrorKind.ALREADY_EXISTS,
            "MEMBER_ALREADY_ENROLLED",
            f"member {member_id!r} is already enrolled",
        )
    salt = credentials.new_salt()
    row: MemberRow = repo.members.create(
        member_id=member_id,
        display_name=display_name.strip()[:200],
        password_salt_hex=salt.hex(),
        password_hash_hex=credentials.hash_password(password, salt).hex(),
        credit_limit_minor=credit_limit_minor,
        currency_code=currency_code,
    )
    return row


def get_member(repo: SettlementRepository, member_id: str, *, lock: bool = False) -> MemberRow:
    """The member, or MEMBER_NOT_FOUND; ``lock`` before checking credit against it."""
    member = repo.member(member_id, lock=lock)
    if member is None:
        raise DomainError(ErrorKind.NOT_FOUND, "MEMBER_NOT_FOUND", f"no member {member_id!r}")
    return member


def set_credit_limit(
    repo: SettlementRepository, member_id: str, amount_minor: int, currency_code: str
) -> MemberRow:
    """Changes a member's credit limit; orders already approved are kept as they are."""
    violations = Violations()
    validate_credit_limit(violations, "credit_limit", amount_minor, currency_code)
    violations.raise_if_any()
    member = get_member(repo, member_id)
    if currency_code != member.currency_code and credit_used(repo, member_id) > 0:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "FIELD_INVALID",
            "credit_limit.currency_code: cannot change while orders are open",
        )
    member.credit_limit_minor = amount_minor
    member.currency_code = currency_code
    member.updated_at = utc_now()
    member.save()
    return member


def credit_used(repo: SettlementRepository, member_id: str) -> int:
    """The member's credit in use: the running sum of their open orders (billed or not)."""
    member = get_member(repo, member_id)
    return int(member.credit_used_minor)


def open_orders_sum(repo: SettlementRepository, member_id: str) -> int:
    """The sum of the member's open orders, counted from the orders themselves.

    What ``credit_used`` must always equal; reconciliation compares the two.
    """
    orders = repo.orders
    total = (
        orders.select(peewee.fn.COALESCE(peewee.fn.SUM(orders.amount_minor), 0))
        .where((orders.member_id == member_id) & (orders.billing_state.in_(OPEN_BILLING_STATES)))
        .scalar()
    )
    return int(total)


def set_billing_state(repo: SettlementRepository, order: SettlementOrderRow, state: str) -> None:
    """Moves an order to ``state`` and its amount in or out of the member's credit in use.

    The one way a billing state changes, so the running sum never drifts from the orders;
    the caller saves the order in the same transaction.
    """
    was_open, is_open = order.billing_state in OPEN_BILLING_STATES, state in OPEN_BILLING_STATES
    order.billing_state = state
    if was_open != is_open:
        hold_credit(repo, order.member_id, order.amount_minor if is_open else -order.amount_minor)


HOLD_CREDIT: statements.Statement[MemberRow] = statements.Statement(
    lambda t, p: t.update(credit_used_minor=t.credit_used_minor + p.delta_minor).where(
        t.member_id == p.member_id
    )
)


def hold_credit(repo: SettlementRepository, member_id: str, delta_minor: int) -> None:
    """Adds ``delta_minor`` (negative to release) to the member's credit in use."""
    HOLD_CREDIT.execute(repo.members, member_id=member_id, delta_minor=delta_minor)


def login(
    repo: SettlementRepository, member_id: str, password: str, session_ttl_s: float
) -> tuple[str, SessionRow, MemberRow]:
    """Verifies the member's identity (step 1) and opens a session; returns its token.

    Unknown member and wrong password are refused alike (MEMBER_CREDENTIALS_INVALID), so
    that the answer does not tell which member IDs exist.
    """
    member = repo.member(member_id)
    # Hashed for an unknown member too: the timing tells nothing either.
    matches = credentials.password_matches(
        password,
        bytes.fromhex(member.password_salt_hex) if member else None,
        bytes.fromhex(member.password_hash_hex) if member else None,
    )
    if member is None or not matches:
        raise credentials.credentials_invalid()
    if member.status != "ACTIVE":
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION, "ENTITY_SUSPENDED", "the member is suspended"
        )
    token, digest = credentials.new_session_token(SESSION_TOKEN_PREFIX)
    now = utc_now()
    session: SessionRow = repo.sessions.create(
        token_sha256=digest,
        member_id=member_id,
        created_at=now,
        expires_at=now + datetime.timedelta(seconds=session_ttl_s),
    )
    return token, session, member


def authenticate(
    repo: SettlementRepository, authorization: str | None
) -> tuple[MemberRow, SessionRow]:
    """The member and session behind ``authorization: Bearer <token>`` metadata."""
    digest = credentials.bearer_token_digest(authorization, login_rpc="MemberService/Login")
    session = statements.find(repo.sessions, token_sha256=digest)
    if session is None or session.ended_at is not None:
        raise DomainError(ErrorKind.UNAUTHENTICATED, "SESSION_INVALID", "log in again")
    if utc_now() >= session.expires_at:
        raise DomainError(ErrorKind.UNAUTHENTICATED, "SESSION_EXPIRED", "the session expired")
    member = get_member(repo, session.member_id)
    if member.status != "ACTIVE":
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION, "ENTITY_SUSPENDED", "the member is suspended"
        )
    return member, session


def session_to_end(repo: SettlementRepository, authorization: str | None) -> tuple[str, SessionRow]:
    """The member ID and session a Logout names, ended or not: a repeated Logout must find
    its session again to answer from its first answer (an unknown token stays refused)."""
    digest = credentials.bearer_token_digest(authorization, login_rpc="MemberService/Login")
    session = statements.find(repo.sessions, token_sha256=digest)
    if session is None:
        raise DomainError(ErrorKind.UNAUTHENTICATED, "SESSION_INVALID", "log in again")
    return str(session.member_id), session


def logout(repo: SettlementRepository, session: SessionRow) -> datetime.datetime:
    """Ends a live session; a session already ended (another Logout) is SESSION_INVALID."""
    if session.ended_at is not None:
        raise DomainError(ErrorKind.UNAUTHENTICATED, "SESSION_INVALID", "log in again")
    ended = utc_now()
    repo.sessions.update(ended_at=ended).where(
        repo.sessions.token_sha256 == session.token_sha256
    ).execute()
    return ended
