"""Guarantees approval gives during a purchase (claims 1, 10, 19, 28-30).

- the settlement agency identification guarantee: which agency serves a routing prefix and
  at which address (searched for under claim 1, pushed under claim 10, pulled under 19);
- the retail entity identification guarantee: the shop as registered, which settlement
  compares with the shop identification it received (flow step 6).

Plain functions over ApprovalRepository; each runs inside one transaction.
"""

from __future__ import annotations

import json

from suretynet.approval.v1 import approval_pb2
from suretynet.type.v1 import types_pb2

from nodes.common import routing
from nodes.common.convert import enum_value, timestamp
from nodes.common.errors import DomainError, ErrorKind, invalid
from nodes.common.identity import EntityIdentity
from storage.approval.models import EntityRow
from storage.approval.repository import REGISTRY_COUNTER, ApprovalRepository
from storage.common import statements
from storage.common.models import utc_now


def check_own(caller: EntityIdentity | None, role: str, entity_id: str) -> None:
    """Refuses a ``role`` caller asking about another entity than itself (NOT_OWNER).

    Callers of other roles (settlement on behalf of a member, admin) may ask about anyone.
    """
    if caller is not None and caller.role == role and caller.entity_id != entity_id:
        raise DomainError(
            ErrorKind.PERMISSION_DENIED,
            "NOT_OWNER",
            f"{caller.uri} may ask only about itself, not {entity_id!r}",
        )


def _status(row: EntityRow) -> types_pb2.EntityStatus.ValueType:
    status: types_pb2.EntityStatus.ValueType = enum_value(
        types_pb2.EntityStatus, "ENTITY_STATUS_", row.status
    )
    return status


def settlement_agency_guarantee(
    row: EntityRow,
) -> types_pb2.SettlementAgencyIdentificationGuarantee:
    """The settlement agency identification guarantee for one registered agency."""
    return types_pb2.SettlementAgencyIdentificationGuarantee(
        settlement_agency_id=row.entity_id,
        display_name=row.display_name,
        routing_prefix=row.routing_prefix or "",
        address=row.address,
        replica_addresses=[part for part in row.replica_addresses.split(",") if part],
        status=_status(row),
        registry_serial=row.registry_serial,
        issued_at=timestamp(utc_now()),
    )


AGENCY_BY_PREFIX: statements.Statement[EntityRow] = routing.lookup(
    # Only settlement agencies have a prefix (enrollment refuses one for any other role),
    # and the condition stays on the prefix alone: with ``role`` beside it SQLite would
    # pick the role's index and read every agency.
    lambda t: t.routing_prefix
)


def search_settlement_agency(repo: ApprovalRepository, anonymous_user_id: str) -> EntityRow:
    """The agency whose routing prefix starts ``anonymous_user_id`` (claim 1, step 4a).

    The agency is returned whatever its status: the guarantee carries the status, and the
    shop refuses to route to a suspended agency with ENTITY_SUSPENDED.
    """
    if not routing.ANONYMOUS_ID_PATTERN.match(anonymous_user_id):
        raise invalid("anonymous_user_id", routing.ANONYMOUS_ID_DESCRIPTION)
    # Registration keeps prefixes from nesting, so at most one matches.
    row = AGENCY_BY_PREFIX.first(repo.entities, **routing.candidate_prefixes(anonymous_user_id))
    if row is not None and row.role == "settlement":
        return row
    raise DomainError(
        ErrorKind.NOT_FOUND,
        "SETTLEMENT_AGENCY_NOT_FOUND",
        "no settlement agency serves the routing prefix of this anonymous user ID",
    )


def changed_after(
    repo: ApprovalRepository, after_serial: int, limit: int
) -> tuple[list[EntityRow], int]:
    """Agencies whose guarantee changed after ``after_serial``, in serial order, and the
    current registry serial (the receiver is complete up to it once it applied them all).
    """
    entities = repo.entities
    rows = list(
        entities.select()
        .where((entities.role == "settlement") & (entities.registry_serial > after_serial))
        .order_by(entities.registry_serial)
        .limit(limit)
    )
    counter = statements.find(repo.counters, name=REGISTRY_COUNTER)
    return rows, int(counter.value) if counter is not None else 0


def identification_mismatches(
    row: EntityRow, identification: types_pb2.RetailEntityIdentification
) -> list[str]:
    """The fields of a shop's identification that differ from its registry entry."""
    registered = {
        "retail_entity_id": row.entity_id,
        "display_name": row.display_name,
        "address": row.address,
    }
    return [name for name, value in registered.items() if getattr(identification, name) != value]


def retail_entity_guarantee(
    row: EntityRow, identification: types_pb2.RetailEntityIdentification
) -> approval_pb2.RetailEntityIdentificationGuarantee:
    """The retail entity identification guarantee (step 6): the shop as registered, and
    whether the identification settlement received equals it."""
    mismatched = identification_mismatches(row, identification)
    return approval_pb2.RetailEntityIdentificationGuarantee(
        retail_entity_id=row.entity_id,
        display_name=row.display_name,
        address=row.address,
        status=_status(row),
        accepted_payment_methods=[
            enum_value(types_pb2.PaymentMethod, "PAYMENT_METHOD_", method)
            for method in json.loads(row.payment_methods_json)
        ],
        registry_serial=row.registry_serial,
        identification_matches=not mismatched,
        mismatched_fields=mismatched,
        issued_at=timestamp(utc_now()),
        discovery_variant=enum_value(
            types_pb2.DiscoveryVariant, "DISCOVERY_VARIANT_", row.discovery_variant
        ),
    )
