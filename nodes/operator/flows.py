"""`suretynet flows`: one node's flows by state and age, for its operator.

A shop's operator whose member calls about a stuck order, or an agency's operator looking
for what its resumer is still delivering, lists the node's flow records (its
``ExportFlowRecords`` admin RPC), newest change last, filtered by state, with how long each
has been in it. ``--open`` keeps only the intermediate states (PENDING, VOIDING,
CANCELLING), the ones a resumer or janitor still has to end.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from dataclasses import dataclass

from google.protobuf import json_format
from suretynet.type.v1 import types_pb2

from nodes.operator import network as network_file

OPEN_STATES = ("PENDING", "VOIDING", "CANCELLING")


@dataclass(frozen=True)
class Listing:
    """What to list: one node's records, maybe of one state or kind, maybe only open ones."""

    entity_id: str
    states: tuple[str, ...] = ()
    kind: int = 0


def age_s(record: types_pb2.FlowRecord, now: datetime.datetime) -> float:
    """Seconds since the record last changed."""
    changed = record.updated_at.ToDatetime(tzinfo=datetime.UTC)
    return max(0.0, (now - changed).total_seconds())


async def list_flows(network: network_file.Network, listing: Listing) -> list[types_pb2.FlowRecord]:
    """The node's records in the listed states, oldest change first; raises on a bad node."""
    node = next((n for n in network.nodes if n.entity_id == listing.entity_id), None)
    if node is None:
        raise network_file.NetworkFileError(
            f"network.json lists no node {listing.entity_id!r}; "
            f"known: {', '.join(n.entity_id for n in network.nodes)}"
        )
    export = await network_file.export_node(network, node, kind=listing.kind)
    if export.error:
        raise network_file.NetworkFileError(f"{listing.entity_id}: {export.error}")
    chosen = [
        record
        for record in export.records
        if not listing.states
        or record.state in listing.states
        or record.stored_state in listing.states
    ]
    return sorted(chosen, key=lambda record: record.updated_at.ToNanoseconds())


def run(network: network_file.Network, listing: Listing, *, as_json: bool) -> int:
    records = asyncio.run(list_flows(network, listing))
    now = datetime.datetime.now(datetime.UTC)
    if as_json:
        print(
            json.dumps(
                {
                    "entity_id": listing.entity_id,
                    "flows": [
                        {
                            **json_format.MessageToDict(record, preserving_proto_field_name=True),
                            "age_s": round(age_s(record, now), 1),
                        }
                        for record in records
                    ],
                },
                indent=2,
            )
        )
        return 0
    if not records:
        print(f"{listing.entity_id}: no flows in {', '.join(listing.states) or 'any state'}")
        return 0
    print(f"{'key':<36} {'kind':<20} {'state':<11} {'stored state':<16} {'age':>9}")
    for record in records:
        kind = types_pb2.FlowRecordKind.Name(record.kind).removeprefix("FLOW_RECORD_KIND_")
        print(
            f"{record.key:<36} {kind.lower():<20} {record.state:<11} "
            f"{record.stored_state:<16} {age_s(record, now):>8.0f}s"
        )
    sys.stdout.flush()
    return 0
