"""Anonymous user IDs a settlement agency delivers to this shop (claim 1, directory variant)."""

from __future__ import annotations

import datetime

from suretynet.type.v1 import types_pb2

from nodes.common.errors import DomainError, ErrorKind, Violations
from storage.common.models import utc_now
from storage.retail.models import ReceivedAnonymousIdRow
from storage.retail.repository import RetailRepository


def check_delivery(
    anonymous_user_id: types_pb2.AnonymousUserId,
    *,
    shop_id: str,
    agency_id: str,
    caller_agency_id: str,
    caller_routing_prefix: str,
) -> None:
    """Accepts an ID only for this shop, from the agency whose routing prefix it carries."""
    violations = Violations()
    violations.require("anonymous_user_id.value", anonymous_user_id.value)
    if not anonymous_user_id.HasField("expires_at"):
        violations.add("anonymous_user_id.expires_at", "is required")
    violations.raise_if_any()
    if anonymous_user_id.retail_entity_id != shop_id:
        raise DomainError(
            ErrorKind.PERMISSION_DENIED,
            "ANONYMOUS_ID_WRONG_SHOP",
            f"the anonymous user ID was issued for {anonymous_user_id.retail_entity_id!r}",
        )
    if (
        agency_id != caller_agency_id
        or not caller_routing_prefix
        or not anonymous_user_id.value.startswith(caller_routing_prefix)
        or anonymous_user_id.routing_prefix != caller_routing_prefix
    ):
        raise DomainError(
            ErrorKind.PERMISSION_DENIED,
            "NOT_OWNER",
            "an agency may deliver only IDs that carry its own routing prefix",
        )


def store_delivered(
    repo: RetailRepository, anonymous_user_id: types_pb2.AnonymousUserId, agency_id: str
) -> ReceivedAnonymousIdRow:
    """Keeps the delivered ID; delivering the same ID again changes nothing."""
    table = repo.received_ids
    table.insert(
        value=anonymous_user_id.value,
        settlement_agency_id=agency_id,
        routing_prefix=anonymous_user_id.routing_prefix,
        issued_at=anonymous_user_id.issued_at.ToDatetime(),
        expires_at=anonymous_user_id.expires_at.ToDatetime(),
        received_at=utc_now(),
    ).on_conflict_ignore().execute()
    row: ReceivedAnonymousIdRow = table.get_by_id(anonymous_user_id.value)
    return row


def forget_expired(repo: RetailRepository, grace: datetime.timedelta) -> int:
    """Drops delivered IDs expired for longer than ``grace``; returns how many."""
    table = repo.received_ids
    return int(table.delete().where(table.expires_at < utc_now() - grace).execute())
