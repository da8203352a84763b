"""Contract members (claim 1: corporations or individuals), their sessions and pseudonyms."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from typing import Any

from suretynet.marketplace.v1 import marketplace_pb2 as pb

from nodes.common import credentials
from nodes.common.convert import timestamp
from nodes.common.credentials import MIN_PASSWORD_LENGTH
from nodes.common.errors import DomainError, ErrorKind, Violations
from nodes.common.identity import ENTITY_ID_PATTERN
from storage.common import statements
from storage.marketplace.models import ContractMemberRow
from storage.marketplace.repository import MarketplaceRepository

KINDS = ("CORPORATION", "INDIVIDUAL")
PSEUDONYM_KEY_SETTING = "pseudonym_key"
E164_PATTERN = re.compile(r"^\+[1-9][0-9]{6,14}$")
SESSION_TOKEN_PREFIX = "snms_"


def enroll(
    repo: MarketplaceRepository, member: Mapping[str, Any], password: str, now: datetime.datetime
) -> ContractMemberRow:
    """Enrolls a contract member; refuses an ID already enrolled (MEMBER_ALREADY_ENROLLED)."""
    violations = Violations()
    member_id = str(member.get("member_id", ""))
    if not ENTITY_ID_PATTERN.match(member_id):
        violations.add("member.member_id", "must be 1-63 lowercase letters, digits or dashes")
    if member.get("kind") not in KINDS:
        violations.add("member.kind", "must be CORPORATION or INDIVIDUAL")
    if not member.get("display_name"):
        violations.add("member.display_name", "is required")
    if not member.get("postal_address"):
        violations.add("member.postal_address", "is required")
    telephone = member.get("contact_telephone", "")
    if telephone and not E164_PATTERN.match(telephone):
        violations.add("member.contact_telephone", "must be in E.164 form (+81312345678)")
    if member.get("kind") == "CORPORATION" and not member.get("corporate_registration_number"):
        violations.add("member.corporate_registration_number", "is required for a corporation")
    if member.get("kind") == "INDIVIDUAL" and member.get("corporate_registration_number"):
        violations.add("member.corporate_registration_number", "is for corporations only")
    if len(password) < MIN_PASSWORD_LENGTH:
        violations.add("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    violations.raise_if_any()
    if statements.find(repo.members, member_id=member_id) is not None:
        raise DomainError(
            ErrorKind.ALREADY_EXISTS,
            "MEMBER_ALREADY_ENROLLED",
            f"contract member {member_id!r} is already enrolled",
        )
    salt = credentials.new_salt()
    row: ContractMemberRow = repo.members.create(
        member_id=member_id,
        kind=member["kind"],
        display_name=member["display_name"],
        contact_email=member.get("contact_email", ""),
        postal_address=member["postal_address"],
        contact_telephone=telephone,
        corporate_registration_number=member.get("corporate_registration_number", ""),
        password_salt=salt,
        password_hash=credentials.hash_password(password, salt),
        enrolled_at=now,
    )
    return row


def login(
    repo: MarketplaceRepository,
    member_id: str,
    password: str,
    now: datetime.datetime,
    session_ttl: datetime.timedelta,
) -> tuple[str, ContractMemberRow, datetime.datetime]:
    """Checks the credentials and opens a session; returns the token (only time it exists)."""
    row = statements.find(repo.members, member_id=member_id)
    # Hashed for an unknown member too: the timing tells nothing either.
    matches = credentials.password_matches(
        password,
        bytes(row.password_salt) if row is not None else None,
        bytes(row.password_hash) if row is not None else None,
    )
    if row is None or not matches:
        raise credentials.credentials_invalid()
    if row.status != "ACTIVE":
        raise DomainError(
            ErrorKind.PERMISSION_DENIED, "ENTITY_SUSPENDED", "this contract member is suspended"
        )
    token, digest = credentials.new_session_token(SESSION_TOKEN_PREFIX)
    expires_at = now + session_ttl
    repo.sessions.create(
        token_sha256=digest,
        member_id=member_id,
        issued_at=now,
        expires_at=expires_at,
    )
    return token, row, expires_at


def authenticate(
    repo: MarketplaceRepository, authorization: str | None, now: datetime.datetime
) -> ContractMemberRow:
    """The member behind ``authorization: Bearer <token>``; refuses with a SESSION_* reason."""
    digest = credentials.bearer_token_digest(authorization, login_rpc="PurchaserService/Login")
    session = statements.find(repo.sessions, token_sha256=digest)
    if session is None:
        raise DomainError(ErrorKind.UNAUTHENTICATED, "SESSION_INVALID", "unknown session token")
    if session.expires_at <= now:
        raise DomainError(ErrorKind.UNAUTHENTICATED, "SESSION_EXPIRED", "log in again")
    member: ContractMemberRow | None = statements.find(repo.members, member_id=session.member_id)
    if member is None or member.status != "ACTIVE":
        raise DomainError(
            ErrorKind.PERMISSION_DENIED, "ENTITY_SUSPENDED", "this contract member is suspended"
        )
    return member


def get_member(repo: MarketplaceRepository, member_id: str) -> ContractMemberRow:
    row: ContractMemberRow | None = statements.find(repo.members, member_id=member_id)
    if row is None:
        raise DomainError(
            ErrorKind.NOT_FOUND, "MEMBER_NOT_FOUND", f"no contract member {member_id!r}"
        )
    return row


def pseudonym(repo: MarketplaceRepository, member_id: str, partner_id: str) -> str:
    """The purchaser's name towards one partner: stable, unlinkable across partners.

    HMAC-SHA256 under a key that never leaves this marketplace, over the member and the
    partner: a partner cannot recover the member, and two partners cannot match their
    pseudonyms of the same purchaser.
    """
    key = repo.setting(PSEUDONYM_KEY_SETTING)
    if key is None:
        key = secrets.token_hex(32)
        repo.put_setting(PSEUDONYM_KEY_SETTING, key)
    digest = hmac.new(
        bytes.fromhex(key), f"{member_id}\0{partner_id}".encode(), hashlib.sha256
    ).hexdigest()
    return "pp-" + digest[:32]


def member_to_proto(row: ContractMemberRow) -> pb.ContractMember:
    return pb.ContractMember(
        member_id=row.member_id,
        kind=pb.ContractMemberKind.Value("CONTRACT_MEMBER_KIND_" + row.kind),
        display_name=row.display_name,
        contact_email=row.contact_email,
        postal_address=row.postal_address,
        contact_telephone=row.contact_telephone,
        corporate_registration_number=row.corporate_registration_number,
        status=pb.ContractMemberStatus.Value("CONTRACT_MEMBER_STATUS_" + row.status),
        enrolled_at=timestamp(row.enrolled_at),
    )
