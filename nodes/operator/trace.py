"""``suretynet trace ORDER``: one order's journey across the network, from the nodes' records.

Every node is asked for its records of the order (ExportFlowRecords with order_number);
their events, each recorded by the node that received the message or took the step, are
merged into one time-ordered message sequence. Refusals are shown under the step that was
refused, retried messages with their attempt count, and each node's final state last. The
web console (nodes/operator/console.py) draws the same journey.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from suretynet.type.v1 import types_pb2

from nodes.operator.network import Network, NodeExport, export_all


@dataclass(frozen=True)
class Step:
    """One message or local step of the journey."""

    at: datetime.datetime | None
    sender: str
    receiver: str
    method: str
    step: str
    node: str
    refusal_reason: str = ""
    detail: str = ""
    attempts: int = 0

    @property
    def label(self) -> str:
        """``Service/Method`` for a message, the step's words otherwise."""
        if self.method:
            return self.method.rsplit(".", 1)[-1]
        return self.step


@dataclass(frozen=True)
class FinalState:
    """What one node holds of the order at the end."""

    node: str
    role: str
    kind: str
    key: str
    state: str
    stored_state: str
    amount: str


@dataclass
class Journey:
    """An order's steps in time order, each node's final state, and unreadable nodes."""

    order_number: str
    steps: list[Step] = field(default_factory=list)
    finals: list[FinalState] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "order_number": self.order_number,
            "steps": [
                {
                    "at": step.at.isoformat() if step.at else None,
                    "from": step.sender,
                    "to": step.receiver,
                    "label": step.label,
                    "method": step.method,
                    "step": step.step,
                    "node": step.node,
                    "refusal_reason": step.refusal_reason,
                    "detail": step.detail,
                    "attempts": step.attempts,
                }
                for step in self.steps
            ],
            "finals": [final.__dict__ for final in self.finals],
            "errors": self.errors,
        }


def _label(enum: object, prefix: str, value: int) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()  # type: ignore[attr-defined]


def journey(order_number: str, exports: Iterable[NodeExport]) -> Journey:
    """Merges the nodes' records of one order into its journey; the same event once."""
    result = Journey(order_number)
    seen: set[tuple[object, ...]] = set()
    for export in exports:
        if export.error:
            result.errors.append(f"{export.node.entity_id}: {export.error}")
        for record in export.records:
            result.finals.append(
                FinalState(
                    node=record.entity_id,
                    role=_label(types_pb2.Role, "ROLE_", record.role),
                    kind=_label(types_pb2.FlowRecordKind, "FLOW_RECORD_KIND_", record.kind),
                    key=record.key,
                    state=record.state,
                    stored_state=record.stored_state,
                    amount=f"{record.amount.amount_minor} {record.amount.currency_code}"
                    if record.amount.currency_code
                    else "",
                )
            )
            for event in record.events:
                at = (
                    event.occurred_at.ToDatetime(tzinfo=datetime.UTC)
                    if event.HasField("occurred_at")
                    else None
                )
                identity = (at, event.from_entity_id, event.to_entity_id, event.method, event.step)
                if identity in seen:
                    continue
                seen.add(identity)
                result.steps.append(
                    Step(
                        at=at,
                        sender=event.from_entity_id,
                        receiver=event.to_entity_id,
                        method=event.method,
                        step=event.step,
                        node=record.entity_id,
                        refusal_reason=event.refusal_reason,
                        detail=event.detail,
                        attempts=event.attempts,
                    )
                )
    result.steps.sort(key=lambda step: (step.at is None, step.at or datetime.datetime.min))
    return result


async def trace(network: Network, order_number: str) -> Journey:
    """Asks every node at once for its records of ``order_number``.

    A marketplace transaction ID leads to its mediated transaction ID, which is what the
    partner knows it by; the partner is then asked for that too (one more round at most).
    """
    exports = await export_all(network, order_number=order_number)
    related = {
        record.order_number
        for export in exports
        for record in export.records
        if record.order_number and record.order_number != order_number
    }
    for number in sorted(related):
        exports += await export_all(network, order_number=number)
    return journey(order_number, _merged(exports))


def _merged(exports: list[NodeExport]) -> list[NodeExport]:
    """One export per node, each record once (a record may answer two order numbers)."""
    merged: dict[str, NodeExport] = {}
    seen: set[tuple[str, int, str]] = set()
    for export in exports:
        target = merged.setdefault(export.node.entity_id, NodeExport(export.node))
        if export.error and not target.error:
            target.error = export.error
        for record in export.records:
            identity = (record.entity_id, record.kind, record.key)
            if identity not in seen:
                seen.add(identity)
                target.records.append(record)
    return list(merged.values())


def render(journey_: Journey) -> str:
    """The journey as numbered lines with times and offsets, then the final states."""
    lines = [f"Order {journey_.order_number} across the network"]
    start = next((step.at for step in journey_.steps if step.at), None)
    for number, step in enumerate(journey_.steps, start=1):
        when = step.at.strftime("%H:%M:%S.%f")[:-3] if step.at else "--:--:--.---"
        offset = f"+{(step.at - start).total_seconds() * 1000:.0f} ms" if step.at and start else ""
        if step.receiver:
            what = f"{step.sender} -> {step.receiver}: {step.label}"
        else:
            what = f"{step.sender or step.node}: {step.label}"
        retried = f"  [retried: {step.attempts} attempts]" if step.attempts > 1 else ""
        lines.append(f"{number:>3}. {when} {offset:>10}  {what}{retried}")
        if step.refusal_reason:
            lines.append(f"       refused: {step.refusal_reason} {step.detail}".rstrip())
        elif step.detail:
            lines.append(f"       {step.detail}")
    lines.append("")
    lines.append("Final state at each node:")
    for final in sorted(journey_.finals, key=lambda item: (item.node, item.kind)):
        lines.append(
            f"  {final.node:<14} {final.kind:<20} {final.state:<11} "
            f"({final.stored_state}) {final.amount}"
        )
    for error in journey_.errors:
        lines.append(f"  unreadable: {error}")
    return "\n".join(lines)


def run(network: Network, order_number: str, *, as_json: bool = False) -> int:
    """The CLI: 0 when some node holds the order, 1 when none does (or a node is unreadable)."""
    result = asyncio.run(trace(network, order_number))
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
    elif not result.finals:
        print(f"no node holds records of {order_number}")
    else:
        print(render(result))
    return 0 if result.finals and not result.errors else 1
