"""The shop's settlement agency identification guarantee information database (claims 10, 19).

Push shops fill it from approval's pushes (and catch up after gaps); cache shops fill it by
periodic pulls from settlement agencies. Both route anonymous user IDs locally from it. The
cache keeps one guarantee per agency, the newest by registry serial, and one position: the
registry serial it is complete up to.
"""

from __future__ import annotations

import datetime

from suretynet.type.v1 import types_pb2

from nodes.common import routing
from nodes.common.convert import enum_label, enum_value, timestamp
from nodes.common.errors import DomainError, ErrorKind, Violations
from nodes.common.identity import ENTITY_ID_PATTERN, host_ip
from storage.common import statements
from storage.common.models import utc_now
from storage.retail.models import GuaranteeCacheStateRow, GuaranteeRow
from storage.retail.repository import RetailRepository

# Registry serials count changes at approval from 1; a million changes a second for thirty
# years stays below this. A higher serial is garbage, and would pin the cache forever (every
# later guarantee would look older), so it is refused.
MAX_REGISTRY_SERIAL = 10**15
MAX_DISPLAY_NAME_LENGTH = 200
# The stored route: every replica's address, joined (the address column's width).
MAX_ROUTE_LENGTH = 128


def validate_push(
    guarantee: types_pb2.SettlementAgencyIdentificationGuarantee,
    registry_serial: int,
    previous_registry_serial: int,
) -> None:
    """Refuses a pushed guarantee (claim 10) that approval could never have written."""
    violations = Violations()
    if not ENTITY_ID_PATTERN.match(guarantee.settlement_agency_id):
        violations.add("guarantee.settlement_agency_id", "must be an entity ID")
    if len(guarantee.display_name) > MAX_DISPLAY_NAME_LENGTH or not (
        guarantee.display_name.isprintable()
    ):
        violations.add(
            "guarantee.display_name", f"must be 0-{MAX_DISPLAY_NAME_LENGTH} printable characters"
        )
    if not routing.PATTERN.match(guarantee.routing_prefix):
        violations.add("guarantee.routing_prefix", routing.DESCRIPTION)
    host, _, port = guarantee.address.rpartition(":")
    try:
        host_ip(guarantee.address)
        valid_port = port.isdigit() and 0 < int(port) < 65536
    except ValueError:
        valid_port = False
    if not host or not valid_port:
        violations.add("guarantee.address", "must be IP:port")
    for index, replica in enumerate(guarantee.replica_addresses):
        try:
            host_ip(replica)
            valid = replica.rpartition(":")[2].isdigit()
        except ValueError:
            valid = False
        if not valid:
            violations.add(f"guarantee.replica_addresses[{index}]", "must be IP:port")
    if len(route_of(guarantee)) > MAX_ROUTE_LENGTH:
        violations.add("guarantee.replica_addresses", f"must join to {MAX_ROUTE_LENGTH} characters")
    if guarantee.status == types_pb2.ENTITY_STATUS_UNSPECIFIED:
        violations.add("guarantee.status", "is required")
    if not 0 < guarantee.registry_serial <= MAX_REGISTRY_SERIAL:
        violations.add("guarantee.registry_serial", f"must be 1 to {MAX_REGISTRY_SERIAL}")
    if registry_serial != guarantee.registry_serial:
        violations.add("registry_serial", "must equal guarantee.registry_serial")
    if not 0 <= previous_registry_serial < max(1, registry_serial):
        violations.add("previous_registry_serial", "must be 0 or more, and below registry_serial")
    violations.raise_if_any()


def route_of(guarantee: types_pb2.SettlementAgencyIdentificationGuarantee) -> str:
    """Where the shop calls the agency: every replica's address (joined, for one channel
    over them all), or its one address."""
    return ",".join(guarantee.replica_addresses) or guarantee.address


def apply(
    repo: RetailRepository, guarantee: types_pb2.SettlementAgencyIdentificationGuarantee
) -> bool:
    """Stores a guarantee unless the cache already holds this agency at a serial as new."""
    table = repo.guarantees
    current = statements.find(table, settlement_agency_id=guarantee.settlement_agency_id)
    if current is not None and current.registry_serial >= guarantee.registry_serial:
        return False
    values = {
        "display_name": guarantee.display_name,
        "routing_prefix": guarantee.routing_prefix,
        "address": route_of(guarantee),
        "status": enum_label(types_pb2.EntityStatus, "ENTITY_STATUS_", guarantee.status).upper()
        or "SUSPENDED",
        "registry_serial": guarantee.registry_serial,
        "issued_at": guarantee.issued_at.ToDatetime() if guarantee.HasField("issued_at") else None,
        "received_at": utc_now(),
    }
    table.insert(settlement_agency_id=guarantee.settlement_agency_id, **values).on_conflict(
        conflict_target=[table.settlement_agency_id], update=values
    ).execute()
    return True


def apply_all(
    repo: RetailRepository,
    guarantees: list[types_pb2.SettlementAgencyIdentificationGuarantee],
    *,
    complete_to_serial: int,
    full_replacement: bool = False,
    refresh_interval_s: int = 0,
    max_staleness_s: int = 0,
) -> int:
    """Applies a batch of deltas and moves the cache position; returns how many changed."""
    if full_replacement:
        repo.guarantees.delete().execute()
    changed = sum(1 for guarantee in guarantees if apply(repo, guarantee))
    state = repo.state()
    if full_replacement:
        state.registry_serial = complete_to_serial
    else:
        state.registry_serial = max(state.registry_serial, complete_to_serial)
    state.refreshed_at = utc_now()
    if refresh_interval_s:
        state.refresh_interval_s = refresh_interval_s
    if max_staleness_s:
        state.max_staleness_s = max_staleness_s
    state.save()
    return changed


def receive_push(
    repo: RetailRepository,
    guarantee: types_pb2.SettlementAgencyIdentificationGuarantee,
    registry_serial: int,
    previous_registry_serial: int,
) -> tuple[bool, bool, int]:
    """Applies one pushed guarantee (claim 10); returns (applied, gap, cache serial).

    The cache position moves only when the shop held what approval believed it held;
    otherwise it missed pushes (a gap) and must catch up.
    """
    applied = apply(repo, guarantee)
    state = repo.state()
    gap = state.registry_serial < previous_registry_serial
    if not gap:
        state.registry_serial = max(state.registry_serial, registry_serial)
        state.refreshed_at = utc_now()
        state.save()
    return applied, gap, state.registry_serial


GUARANTEE_BY_PREFIX: statements.Statement[GuaranteeRow] = routing.lookup(lambda t: t.routing_prefix)


def route(
    repo: RetailRepository, anonymous_user_id: str, max_staleness_s: int | None
) -> GuaranteeRow:
    """The cached agency whose routing prefix starts the ID (claims 10, 19: compile the address).

    ``max_staleness_s`` (cache variant): a cache not refreshed for that long is not trusted.
    """
    state = repo.state()
    if max_staleness_s is not None:
        too_old = state.refreshed_at is None or utc_now() - state.refreshed_at > (
            datetime.timedelta(seconds=max_staleness_s)
        )
        if too_old:
            raise DomainError(
                ErrorKind.UNAVAILABLE,
                "SETTLEMENT_AGENCY_NOT_FOUND",
                "the guarantee cache is older than its staleness bound; refresh it",
            )
    best = GUARANTEE_BY_PREFIX.first(
        repo.guarantees, **routing.candidate_prefixes(anonymous_user_id)
    )
    if best is None:
        raise DomainError(
            ErrorKind.NOT_FOUND,
            "SETTLEMENT_AGENCY_NOT_FOUND",
            "no cached settlement agency identification guarantee serves this routing prefix",
        )
    return best


def to_proto(row: GuaranteeRow) -> types_pb2.SettlementAgencyIdentificationGuarantee:
    return types_pb2.SettlementAgencyIdentificationGuarantee(
        settlement_agency_id=row.settlement_agency_id,
        display_name=row.display_name,
        routing_prefix=row.routing_prefix,
        address=row.address.split(",")[0],
        replica_addresses=row.address.split(",") if "," in row.address else [],
        status=enum_value(types_pb2.EntityStatus, "ENTITY_STATUS_", row.status),
        registry_serial=row.registry_serial,
        issued_at=timestamp(row.issued_at),
    )


def active_sources(repo: RetailRepository) -> list[GuaranteeRow]:
    """Active agencies to pull from (claim 19), in a stable order."""
    table = repo.guarantees
    return list(table.select().where(table.status == "ACTIVE").order_by(table.settlement_agency_id))


def position(repo: RetailRepository) -> GuaranteeCacheStateRow:
    return repo.state()
