"""A node announces its own information to approval (seed 001 claims 6-7, 15-16, 24-25).

On every start after the first (the first sends it in the registration request), and on
SIGHUP (``suretynet node change-info``), a retail, settlement or marketplace node:
1. reads its own registry entry (``EnrollmentService/GetRegisteredInformation``);
2. compares it with its installation information, the same fields its registration
   carries: display name and advertised address; a shop's discovery variant, payment
   methods, currencies and private details; an agency's routing prefix;
3. if any differ, sends the information change request itself
   (``ChangeRetailEntityInformation``, ``ChangeSettlementAgencyInformation``,
   ``ChangeMarketplaceInformation``) with its license key and only the differing fields.

The outcome is logged (an ERROR that says what to do when approval refuses) and recorded
in the node's ``information_announcement`` table, and in ``information.json`` beside its
ready file when it has one (what ``suretynet node change-info`` waits for).

A changed address is sent from the node's new address, so approval's address correlation
accepts it only if the IP is unchanged (a new port). A move to a new IP goes through the
institution first (docs/OPERATIONS.md, "Moving a node"); the node then finds the registry
already matching.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc

from nodes.common import logs
from nodes.common.errors import DomainError
from storage.common.models import InformationAnnouncement, utc_now

if TYPE_CHECKING:
    from nodes.common.node import NodeRuntime

log = logging.getLogger(__name__)

MATCHED, CHANGED, REFUSED, FAILED = "MATCHED", "CHANGED", "REFUSED", "FAILED"
STATUS_FILE = "information.json"


@dataclass
class Announcement:
    """What one comparison found and did."""

    outcome: str
    fields: list[str] = field(default_factory=list)
    registry_serial: int = 0
    detail: str = ""


def differences(
    role: str, desired: approval_pb2.RegisterEntityRequest, entity: approval_pb2.RegisteredEntity
) -> list[str]:
    """The installation fields (as registration names them) that differ from the registry."""
    found = [
        name
        for name in ("display_name", "address")
        if getattr(desired, name) != getattr(entity, name)
    ]
    if list(desired.replica_addresses) != list(entity.replica_addresses):
        found.append("replica_addresses")
    if role == "settlement" and desired.routing_prefix != entity.routing_prefix:
        found.append("routing_prefix")
    if role == "retail":
        registered = entity.payment_information
        if desired.discovery_variant != entity.discovery_variant:
            found.append("discovery_variant")
        if sorted(desired.accepted_payment_methods) != sorted(registered.accepted_payment_methods):
            found.append("accepted_payment_methods")
        if sorted(desired.accepted_currency_codes) != sorted(registered.accepted_currency_codes):
            found.append("accepted_currency_codes")
        if desired.private_details != registered.private_details:
            found.append("private_details")
    return found


def change_request(
    role: str,
    entity_id: str,
    desired: approval_pb2.RegisterEntityRequest,
    fields: list[str],
    registry_serial: int,
) -> Any:
    """The role's change request carrying only ``fields``.

    Its request ID derives from the registry serial it corrects and the change itself: a
    retry after a lost answer repeats it, and a later change (the serial has moved) is new.
    """
    if role == "retail":
        change: Any = approval_pb2.RetailEntityInformationChange()
        if "discovery_variant" in fields:
            change.discovery_variant = desired.discovery_variant
        if "accepted_payment_methods" in fields:
            change.accepted_payment_methods.payment_methods.extend(desired.accepted_payment_methods)
        if "accepted_currency_codes" in fields:
            change.accepted_currency_codes.currency_codes.extend(desired.accepted_currency_codes)
        if "private_details" in fields:
            change.private_details.CopyFrom(desired.private_details)
        request: Any = approval_pb2.ChangeRetailEntityInformationRequest(entity_id=entity_id)
    elif role == "settlement":
        change = approval_pb2.SettlementAgencyInformationChange()
        if "routing_prefix" in fields:
            change.routing_prefix = desired.routing_prefix
        request = approval_pb2.ChangeSettlementAgencyInformationRequest(entity_id=entity_id)
    else:
        change = approval_pb2.MarketplaceInformationChange()
        request = approval_pb2.ChangeMarketplaceInformationRequest(entity_id=entity_id)
    if "display_name" in fields:
        change.display_name = desired.display_name
    if "address" in fields:
        change.address = desired.address
    if "replica_addresses" in fields:
        change.replica_addresses.addresses.extend(desired.replica_addresses)
    request.change.CopyFrom(change)
    digest = hashlib.sha256(
        f"{entity_id}/{registry_serial}/".encode() + change.SerializeToString(deterministic=True)
    ).hexdigest()
    request.request_id = f"info-{digest[:32]}"
    return request


CHANGE_METHODS = {
    "retail": "ChangeRetailEntityInformation",
    "settlement": "ChangeSettlementAgencyInformation",
    "marketplace": "ChangeMarketplaceInformation",
}

ADVICE = {
    "ADDRESS_MISMATCH": (
        "the node's address changed to another IP: a move is recorded by the institution "
        "first (suretynet approval change-info --entity {entity} --address NEW), see "
        "docs/OPERATIONS.md 'Moving a node'"
    ),
}


async def announce(
    runtime: NodeRuntime, desired: approval_pb2.RegisterEntityRequest
) -> Announcement:
    """Compares ``desired`` (the node's registration request) with approval's entry and,
    if they differ, sends the change; logs, records and returns what happened."""
    config = runtime.config
    stub = runtime.channels.stub(config.approval_address, approval_pb2_grpc.EnrollmentServiceStub)
    fields: list[str] = []
    try:
        response = await runtime.channels.call(
            stub.GetRegisteredInformation,
            approval_pb2.GetRegisteredInformationRequest(entity_id=config.entity_id),
            peer="approval",
            idempotent=True,
            to_approval=True,
        )
        entity = response.entity
        fields = differences(config.role, desired, entity)
        if not fields:
            result = Announcement(MATCHED, [], entity.registry_serial)
        else:
            request = change_request(
                config.role, config.entity_id, desired, fields, entity.registry_serial
            )
            changed = await runtime.channels.call(
                getattr(stub, CHANGE_METHODS[config.role]),
                request,
                peer="approval",
                idempotent=True,
                to_approval=True,
            )
            result = Announcement(CHANGED, fields, changed.entity.registry_serial)
    except DomainError as error:
        advice = ADVICE.get(error.reason, "").format(entity=config.entity_id)
        outcome = FAILED if error.reason in ("PEER_UNAVAILABLE", "") else REFUSED
        detail = f"{error.reason}: {error.message}" + (f"; {advice}" if advice else "")
        result = Announcement(outcome, fields, 0, detail[:500])
    _log(config.entity_id, result)
    await _record(runtime, result)
    return result


def _log(entity_id: str, result: Announcement) -> None:
    if result.outcome == MATCHED:
        logs.event(
            log,
            "installation information matches the registry",
            registry_serial=result.registry_serial,
        )
    elif result.outcome == CHANGED:
        logs.event(
            log,
            "installation information changed: registry updated",
            changed_fields=result.fields,
            registry_serial=result.registry_serial,
        )
    else:
        logs.event(
            log,
            "installation information differs from the registry and could not be sent; "
            "purchases naming the old information fail until it is: fix the cause and run "
            f"'suretynet node change-info {entity_id}' or restart the node",
            logging.ERROR,
            outcome=result.outcome,
            differing_fields=result.fields,
            error=result.detail,
        )


async def _record(runtime: NodeRuntime, result: Announcement) -> None:
    from storage.common.database import bind

    table = bind(runtime.store.database, InformationAnnouncement)

    def save() -> int:
        row = table.create(
            entity_id=runtime.config.entity_id,
            outcome=result.outcome,
            fields=",".join(result.fields)[:200],
            registry_serial=result.registry_serial,
            detail=result.detail,
            announced_at=utc_now(),
        )
        return int(row.id)

    sequence = await runtime.store.run(save)
    ready = runtime.config.ready_file
    if ready is not None:
        path = ready.parent / STATUS_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(
            json.dumps(
                {
                    "sequence": sequence,
                    "outcome": result.outcome,
                    "fields": result.fields,
                    "registry_serial": result.registry_serial,
                    "detail": result.detail,
                    "pid": os.getpid(),
                }
            )
        )
        os.replace(tmp, path)
