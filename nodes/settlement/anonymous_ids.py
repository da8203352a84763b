"""Anonymous user IDs (flow step 3): one pseudonym per member, shop and validity period.

The value is the agency's routing prefix followed by 16 digits of an HMAC-SHA256 under a
secret key only this agency holds, over (member, shop, period). So:
- it never reveals the member: without the key, the digits are indistinguishable from
  random, and no hash of the member ID can be recomputed by anyone else;
- IDs for different shops cannot be linked: the shop is inside the MAC;
- it carries the routing prefix, so shops and approval can route it like a card BIN;
- it expires: the period is inside the MAC, and the ID is refused after ``expires_at``;
- only this agency can resolve it: the mapping back to the member lives in its database.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets

from nodes.common.errors import DomainError, ErrorKind
from storage.common import statements
from storage.common.models import utc_now
from storage.settlement.models import AnonymousIdRow
from storage.settlement.repository import SettlementRepository

MAC_KEY_NAME = "anonymous-id-mac"
DIGITS = 16
# Collisions of 16 digits among one agency's IDs are rare; a few tweaks always resolve one.
MAX_COLLISION_TWEAKS = 4
EPOCH = datetime.datetime(2000, 1, 1)


def mac_key(repo: SettlementRepository) -> bytes:
    """The agency's MAC key, made once on first use and kept in the agency's database,
    sealed under the node's key when the node has one (always, outside unit tests)."""
    box = repo.secrets.secret_box
    context = f"agency_secret\n{MAC_KEY_NAME}"
    fresh = secrets.token_bytes(32).hex()
    stored_value = fresh if box is None else box.seal_text(fresh, context)
    repo.secrets.insert(name=MAC_KEY_NAME, key_hex=stored_value).on_conflict_ignore().execute()
    stored = str(repo.secrets.get_by_id(MAC_KEY_NAME).key_hex)
    return bytes.fromhex(stored if box is None else box.open_text(stored, context))


def _digits(key: bytes, member_id: str, retail_entity_id: str, period: int, tweak: int) -> str:
    message = "\x1f".join([member_id, retail_entity_id, str(period), str(tweak)]).encode()
    number = int.from_bytes(hmac.new(key, message, hashlib.sha256).digest()[:8], "big")
    return f"{number % 10**DIGITS:0{DIGITS}d}"


def issue(
    repo: SettlementRepository,
    *,
    member_id: str,
    retail_entity_id: str,
    routing_prefix: str,
    validity_s: int,
    now: datetime.datetime | None = None,
) -> AnonymousIdRow:
    """The member's ID for the shop in the current period (the same one if asked again).

    An ID is valid for at least ``validity_s`` and at most twice that: it expires at the
    end of the period after the one it was issued in.
    """
    now = now or utc_now()
    period = int((now - EPOCH).total_seconds()) // validity_s
    expires_at = EPOCH + datetime.timedelta(seconds=(period + 2) * validity_s)
    key = mac_key(repo)
    for tweak in range(MAX_COLLISION_TWEAKS):
        value = routing_prefix + _digits(key, member_id, retail_entity_id, period, tweak)
        existing = statements.find(repo.anonymous_ids, value=value)
        if existing is None:
            row: AnonymousIdRow = repo.anonymous_ids.create(
                value=value,
                member_id=member_id,
                retail_entity_id=retail_entity_id,
                issued_at=now,
                expires_at=expires_at,
            )
            return row
        if existing.member_id == member_id and existing.retail_entity_id == retail_entity_id:
            return existing
    raise AssertionError("anonymous user ID space exhausted: widen DIGITS")


def resolve(
    repo: SettlementRepository,
    value: str,
    retail_entity_id: str,
    now: datetime.datetime | None = None,
) -> AnonymousIdRow:
    """The ID's record, if it was issued here for this shop and has not expired.

    Refusals: ANONYMOUS_ID_INVALID (never issued here), ANONYMOUS_ID_WRONG_SHOP (issued for
    another shop), ANONYMOUS_ID_EXPIRED.
    """
    row = statements.find(repo.anonymous_ids, value=value)
    if row is None:
        raise DomainError(
            ErrorKind.NOT_FOUND,
            "ANONYMOUS_ID_INVALID",
            "this settlement agency never issued the anonymous user ID",
        )
    if row.retail_entity_id != retail_entity_id:
        raise DomainError(
            ErrorKind.PERMISSION_DENIED,
            "ANONYMOUS_ID_WRONG_SHOP",
            "the anonymous user ID was issued for another shop",
        )
    if (now or utc_now()) >= row.expires_at:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "ANONYMOUS_ID_EXPIRED",
            "the anonymous user ID has expired; the member must get a new one",
        )
    return row


def mark_delivered(repo: SettlementRepository, value: str) -> None:
    repo.anonymous_ids.update(delivered_at=utc_now()).where(
        repo.anonymous_ids.value == value
    ).execute()
