"""``suretynet reconcile``: checks the network-wide invariants over every node's records.

It reads every node's flow records through its ExportFlowRecords admin RPC (and each
marketplace's own book check, MarketplaceAdminService/Reconcile) and reports each breach of:

- RECORDS_DISAGREE: an order's amount, currency or state differs between the shop, the
  agency, verification and approval, or a node lacks a record it must hold;
- ORPHAN_ORDER: an agency order, report or transaction record that no shop knows;
- BILLED_TWICE: one order number held by two agencies, or one shop request made into two
  orders;
- MEMBER_CREDIT: a member's credit in use differs from the sum of their open orders;
- CREDIT_BACK_EXCEEDS_CHARGE: a cancellation stopping or crediting back more than the order;
- MARKETPLACE_BOOKS: a marketplace's invoices less payouts differ from its mediation charges;
- MEDIATION_DISAGREES: requester and supplier differ on a mediated transaction;
- STALE_STATE: an intermediate state older than its lifetime;
- NODE_UNREADABLE: a node that could not be read (nothing it holds was checked).

Orders in flight (any of their records in an intermediate state) are checked for amounts
and lifetimes only, since their states legitimately differ until the flow ends.
docs/RELIABILITY.md explains each finding and what an operator does about it.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from suretynet.type.v1 import types_pb2

from nodes.common import flow_export as fx
from nodes.operator.network import Network, NodeExport, export_all, marketplace_books

ORDER = types_pb2.FLOW_RECORD_KIND_ORDER
CANCELLATION = types_pb2.FLOW_RECORD_KIND_CANCELLATION
REPORT = types_pb2.FLOW_RECORD_KIND_TRANSACTION_REPORT
TRANSACTION_RECORD = types_pb2.FLOW_RECORD_KIND_TRANSACTION_RECORD
MEDIATED = types_pb2.FLOW_RECORD_KIND_MEDIATED_TRANSACTION
MEMBER_CREDIT = types_pb2.FLOW_RECORD_KIND_MEMBER_CREDIT

# How long a record may stay in an intermediate state, in seconds, keyed
# "<record kind>.<normalized state>" (kind as in FlowRecordKind, lower case, no prefix).
# A shop's own order lifetime (its node.toml) replaces order.PENDING for its orders;
# network.json's "lifetimes_s" object overrides both, and --lifetime KEY=SECONDS overrides
# everything (docs/RELIABILITY.md).
DEFAULT_LIFETIMES_S: dict[str, float] = {
    "order.PENDING": 600.0,
    "order.VOIDING": 600.0,
    "cancellation.CANCELLING": 600.0,
    "mediated_transaction.PENDING": 7 * 86400.0,
}
CLOSED_STATES = frozenset({fx.CANCELLED, fx.VOIDED, fx.FAILED})
# A shop's order may outlive its lifetime until its janitor's next rounds void it.
JANITOR_ROUNDS = 2
SHOP_DEFAULT_RESUME_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Mismatch:
    """One breach of an invariant: which, where, about what."""

    invariant: str
    node: str
    order: str = ""
    member: str = ""
    detail: str = ""


@dataclass
class Report:
    """What reconciliation checked and every mismatch it found."""

    orders_checked: int = 0
    members_checked: int = 0
    mediations_checked: int = 0
    nodes_read: list[str] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)

    def add(self, invariant: str, node: str, **values: str) -> None:
        self.mismatches.append(Mismatch(invariant, node, **values))

    def as_json(self) -> dict[str, Any]:
        return {
            "orders_checked": self.orders_checked,
            "members_checked": self.members_checked,
            "mediations_checked": self.mediations_checked,
            "nodes_read": self.nodes_read,
            "mismatches": [asdict(mismatch) for mismatch in self.mismatches],
        }


def kind_label(kind: int) -> str:
    name = types_pb2.FlowRecordKind.Name(kind)  # type: ignore[arg-type]
    return str(name).removeprefix("FLOW_RECORD_KIND_").lower()


@dataclass(frozen=True)
class Lifetimes:
    """The lifetime of each intermediate state, network-wide and per node."""

    network: dict[str, float]
    nodes: dict[str, dict[str, float]]
    # Set explicitly (network.json or --lifetime): these win over what nodes configure.
    explicit: frozenset[str]

    def of(self, entity_id: str, key: str) -> float | None:
        if key not in self.explicit and key in self.nodes.get(entity_id, {}):
            return self.nodes[entity_id][key]
        return self.network.get(key)


def lifetimes(network: Network, overrides: Mapping[str, float] | None = None) -> Lifetimes:
    """Defaults, each shop's own order lifetime, network.json's "lifetimes_s", ``overrides``."""
    configured = network.settings.get("lifetimes_s") or {}
    if not isinstance(configured, dict):
        raise ValueError('network.json: "lifetimes_s" must be an object of KEY: seconds')
    merged = {**DEFAULT_LIFETIMES_S}
    for key, value in configured.items():
        merged[str(key)] = float(value)
    merged.update(overrides or {})
    per_node = {
        node.entity_id: _shop_lifetimes(Path(node.config))
        for node in network.nodes
        if node.role == "retail" and node.config
    }
    return Lifetimes(merged, per_node, frozenset({*configured, *(overrides or {})}))


def _shop_lifetimes(config: Path) -> dict[str, float]:
    """order.PENDING from the shop's order_lifetime_s, plus its janitor's next rounds."""
    try:
        options = tomllib.loads(config.read_text()).get("options", {})
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    if "order_lifetime_s" not in options:
        return {}
    lifetime_s = float(options["order_lifetime_s"])
    interval_s = float(options.get("purchase_resume_interval_s", SHOP_DEFAULT_RESUME_INTERVAL_S))
    return {"order.PENDING": lifetime_s + JANITOR_ROUNDS * interval_s}


def _money(record: types_pb2.FlowRecord) -> str:
    return f"{record.amount.amount_minor} {record.amount.currency_code}"


def _moment(record: types_pb2.FlowRecord) -> datetime.datetime | None:
    """Since when the record is in its state: a flow PENDING since it began (as the shop's
    janitor counts), any other intermediate state since its last change."""
    use_updated = record.state != fx.PENDING and record.HasField("updated_at")
    stamp = record.updated_at if use_updated else record.created_at
    if not stamp.seconds and not stamp.nanos:
        return None
    return stamp.ToDatetime(tzinfo=datetime.UTC)


def _annotation(record: types_pb2.FlowRecord) -> bool:
    """A refused verification or a void: facts about an order that hold no money."""
    return "true" in (record.attributes.get("mismatch"), record.attributes.get("void"))


class _Index:
    """Every node's records, arranged for the checks."""

    def __init__(self, exports: Iterable[NodeExport]) -> None:
        self.shop_orders: dict[str, types_pb2.FlowRecord] = {}
        self.by_kind: dict[int, list[types_pb2.FlowRecord]] = defaultdict(list)
        self.by_order: dict[tuple[int, str], list[types_pb2.FlowRecord]] = defaultdict(list)
        for export in exports:
            for record in export.records:
                self.by_kind[record.kind].append(record)
                if record.order_number:
                    self.by_order[(record.kind, record.order_number)].append(record)
                if record.role == types_pb2.ROLE_RETAIL and record.kind == ORDER:
                    self.shop_orders[record.order_number] = record

    def of(self, kind: int, order_number: str, role: int) -> list[types_pb2.FlowRecord]:
        return [
            record
            for record in self.by_order.get((kind, order_number), [])
            if record.role == role and not _annotation(record)
        ]


def _check_order(report: Report, index: _Index, shop: types_pb2.FlowRecord) -> None:
    number = shop.order_number
    agencies = index.of(ORDER, number, types_pb2.ROLE_SETTLEMENT)
    reports = index.of(REPORT, number, types_pb2.ROLE_VERIFICATION)
    records = index.of(TRANSACTION_RECORD, number, types_pb2.ROLE_APPROVAL)
    named = shop.attributes.get("settlement_agency_id", "")
    agency = next((a for a in agencies if a.entity_id == named), agencies[0] if agencies else None)
    others = [
        ("agency", agency),
        ("verification", reports[0] if reports else None),
        ("approval", records[0] if records else None),
    ]
    for _, record in others:
        if record is not None and (
            record.amount.amount_minor != shop.amount.amount_minor
            or record.amount.currency_code != shop.amount.currency_code
        ):
            report.add(
                "RECORDS_DISAGREE",
                record.entity_id,
                order=number,
                detail=f"amount {_money(record)} here, {_money(shop)} at {shop.entity_id}",
            )
    cancellations = [
        record
        for role in (types_pb2.ROLE_RETAIL, types_pb2.ROLE_SETTLEMENT)
        for record in index.of(CANCELLATION, number, role)
    ]
    in_flight = [shop, *(r for _, r in others if r), *cancellations]
    if any(record.state in fx.INTERMEDIATE_STATES for record in in_flight):
        return
    for place, record in others:
        _check_state(report, shop, place, record)


def _check_state(
    report: Report, shop: types_pb2.FlowRecord, place: str, record: types_pb2.FlowRecord | None
) -> None:
    number, expected = shop.order_number, shop.state
    if expected in (fx.FAILED, fx.VOIDED):
        # Nothing may stay billed or recorded as a sale for an order the shop gave up.
        if record is not None and record.state not in CLOSED_STATES:
            report.add(
                "RECORDS_DISAGREE",
                record.entity_id,
                order=number,
                detail=f"{record.state} here, but {expected} at {shop.entity_id}",
            )
        return
    if record is None:
        report.add(
            "RECORDS_DISAGREE",
            place,
            order=number,
            detail=f"no record at the {place}; {expected} at {shop.entity_id}",
        )
    elif record.state != expected:
        report.add(
            "RECORDS_DISAGREE",
            record.entity_id,
            order=number,
            detail=f"{record.state} ({record.stored_state}) here, {expected} at {shop.entity_id}",
        )


def _check_orphans_and_duplicates(report: Report, index: _Index) -> None:
    for kind, role in (
        (ORDER, types_pb2.ROLE_SETTLEMENT),
        (REPORT, types_pb2.ROLE_VERIFICATION),
        (TRANSACTION_RECORD, types_pb2.ROLE_APPROVAL),
    ):
        for record in index.by_kind.get(kind, []):
            if (
                record.role == role
                and not _annotation(record)
                and record.order_number not in index.shop_orders
            ):
                report.add(
                    "ORPHAN_ORDER",
                    record.entity_id,
                    order=record.order_number,
                    member=record.member_id,
                    detail=f"{kind_label(kind)} {record.state} ({record.stored_state}), "
                    f"{_money(record)}, unknown to every shop",
                )
    holders: dict[str, list[str]] = defaultdict(list)
    for record in index.by_kind.get(ORDER, []):
        if record.role == types_pb2.ROLE_SETTLEMENT and not _annotation(record):
            holders[record.order_number].append(record.entity_id)
    for number, agencies in holders.items():
        if len(agencies) > 1:
            report.add(
                "BILLED_TWICE",
                ",".join(sorted(agencies)),
                order=number,
                detail=f"one order number held by {len(agencies)} agencies",
            )
    requests: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for shop in index.shop_orders.values():
        request_id = shop.attributes.get("request_id", "")
        if request_id:
            requests[(shop.entity_id, shop.anonymous_user_id, request_id)].append(shop.order_number)
    for (shop_id, _, request_id), numbers in requests.items():
        if len(numbers) > 1:
            report.add(
                "BILLED_TWICE",
                shop_id,
                order=",".join(sorted(numbers)),
                detail=f"request {request_id} made {len(numbers)} orders",
            )


def _check_member_credit(report: Report, index: _Index) -> None:
    open_sums: dict[tuple[str, str], int] = defaultdict(int)
    for record in index.by_kind.get(ORDER, []):
        if record.role == types_pb2.ROLE_SETTLEMENT and record.state not in CLOSED_STATES:
            open_sums[(record.entity_id, record.member_id)] += record.amount.amount_minor
    for credit in index.by_kind.get(MEMBER_CREDIT, []):
        report.members_checked += 1
        expected = open_sums.get((credit.entity_id, credit.member_id), 0)
        if credit.amount.amount_minor != expected:
            report.add(
                "MEMBER_CREDIT",
                credit.entity_id,
                member=credit.member_id,
                detail=f"credit in use {credit.amount.amount_minor}, open orders sum to {expected}",
            )


def _check_credit_backs(report: Report, index: _Index) -> None:
    for cancellation in index.by_kind.get(CANCELLATION, []):
        if not cancellation.amount.currency_code:
            continue
        charged_kind = REPORT if cancellation.role == types_pb2.ROLE_VERIFICATION else ORDER
        charges = index.of(charged_kind, cancellation.order_number, cancellation.role)
        charge = next((c for c in charges if c.entity_id == cancellation.entity_id), None)
        if charge is None:
            continue
        if (
            cancellation.amount.amount_minor > charge.amount.amount_minor
            or cancellation.amount.currency_code != charge.amount.currency_code
        ):
            report.add(
                "CREDIT_BACK_EXCEEDS_CHARGE",
                cancellation.entity_id,
                order=cancellation.order_number,
                member=cancellation.member_id,
                detail=f"cancels {_money(cancellation)} of a {_money(charge)} order",
            )
    for record in index.by_kind.get(TRANSACTION_RECORD, []):
        cancelled = record.attributes.get("cancelled_amount_minor", "")
        if cancelled and int(cancelled) > record.amount.amount_minor:
            report.add(
                "CREDIT_BACK_EXCEEDS_CHARGE",
                record.entity_id,
                order=record.order_number,
                detail=f"cancels {cancelled} of a {_money(record)} order",
            )


def _check_mediations(report: Report, index: _Index) -> None:
    requesters: dict[tuple[str, str], types_pb2.FlowRecord] = {}
    suppliers: dict[tuple[str, str], types_pb2.FlowRecord] = {}
    for record in index.by_kind.get(MEDIATED, []):
        if record.attributes.get("transaction_kind") != "MEDIATED" or not record.order_number:
            continue
        side = record.attributes.get("side")
        partner = record.counterpart_entity_ids[0] if record.counterpart_entity_ids else ""
        if side == "requester":
            requesters[(record.entity_id, record.order_number)] = record
        elif side == "supplier":
            suppliers[(partner, record.order_number)] = record
    for (requester_id, number), requester in requesters.items():
        report.mediations_checked += 1
        supplier = suppliers.get((requester_id, number))
        if supplier is None:
            if requester.state not in (fx.PENDING, "ESTIMATE_DECLINED"):
                report.add(
                    "MEDIATION_DISAGREES",
                    requester.entity_id,
                    order=number,
                    detail=f"{requester.state} here, but the supplier has no record of it",
                )
            continue
        if requester.amount.amount_minor and (
            requester.amount.amount_minor != supplier.amount.amount_minor
            or requester.amount.currency_code != supplier.amount.currency_code
        ):
            report.add(
                "MEDIATION_DISAGREES",
                requester.entity_id,
                order=number,
                detail=f"{_money(requester)} here, {_money(supplier)} at {supplier.entity_id}",
            )
        if requester.state != supplier.state and fx.PENDING not in (
            requester.state,
            supplier.state,
        ):
            report.add(
                "MEDIATION_DISAGREES",
                requester.entity_id,
                order=number,
                detail=f"{requester.state} here, {supplier.state} at {supplier.entity_id}",
            )
    for (requester_id, number), supplier in suppliers.items():
        if (requester_id, number) not in requesters:
            report.add(
                "MEDIATION_DISAGREES",
                supplier.entity_id,
                order=number,
                detail=f"supplied for {requester_id}, which has no such transaction",
            )


def _check_lifetimes(
    report: Report, index: _Index, limits: Lifetimes, now: datetime.datetime
) -> None:
    for kind, records in index.by_kind.items():
        for record in records:
            if record.state not in fx.INTERMEDIATE_STATES:
                continue
            limit = limits.of(record.entity_id, f"{kind_label(kind)}.{record.state}")
            moment = _moment(record)
            if limit is None or moment is None:
                continue
            age_s = (now - moment).total_seconds()
            if age_s > limit:
                report.add(
                    "STALE_STATE",
                    record.entity_id,
                    order=record.order_number or record.key,
                    member=record.member_id,
                    detail=f"{kind_label(kind)} {record.state} ({record.stored_state}) for "
                    f"{age_s:.0f}s, lifetime {limit:.0f}s",
                )


async def reconcile(
    network: Network,
    *,
    lifetime_overrides: Mapping[str, float] | None = None,
    now: datetime.datetime | None = None,
) -> Report:
    """Reads every node and checks every invariant; read-only on every node."""
    limits = lifetimes(network, lifetime_overrides)
    markets = [node for node in network.nodes if node.role == "marketplace"]
    exports, books = await asyncio.gather(
        export_all(network),
        asyncio.gather(*(marketplace_books(network, node) for node in markets)),
    )
    report = Report()
    for export in exports:
        if export.error:
            report.add("NODE_UNREADABLE", export.node.entity_id, detail=export.error)
        else:
            report.nodes_read.append(export.node.entity_id)
    index = _Index(exports)
    for shop in index.shop_orders.values():
        report.orders_checked += 1
        _check_order(report, index, shop)
    _check_orphans_and_duplicates(report, index)
    _check_member_credit(report, index)
    _check_credit_backs(report, index)
    _check_mediations(report, index)
    for node, answer in zip(markets, books, strict=True):
        if isinstance(answer, str):
            report.add("NODE_UNREADABLE", node.entity_id, detail=f"Reconcile: {answer}")
            continue
        for discrepancy in answer.discrepancies:
            report.add(
                "MARKETPLACE_BOOKS",
                node.entity_id,
                order=discrepancy.mediated_transaction_id or discrepancy.transaction_id,
                detail=f"{discrepancy.description}: expected "
                f"{discrepancy.expected_amount.amount_minor}, recorded "
                f"{discrepancy.recorded_amount.amount_minor} "
                f"{discrepancy.expected_amount.currency_code}",
            )
    _check_lifetimes(report, index, limits, now or datetime.datetime.now(datetime.UTC))
    return report


def render_table(report: Report) -> str:
    """The mismatches as an aligned table, then a one-line summary."""
    lines = []
    if report.mismatches:
        rows = [("INVARIANT", "NODE", "ORDER", "MEMBER", "DETAIL")] + [
            (m.invariant, m.node, m.order, m.member, m.detail) for m in report.mismatches
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        for row in rows:
            cells = [row[column].ljust(widths[column]) for column in range(4)]
            lines.append("  ".join([*cells, row[4]]).rstrip())
        lines.append("")
    lines.append(
        f"{report.orders_checked} orders, {report.members_checked} members, "
        f"{report.mediations_checked} mediations checked on {len(report.nodes_read)} nodes: "
        + (f"{len(report.mismatches)} mismatch(es)" if report.mismatches else "consistent")
    )
    return "\n".join(lines)


def parse_lifetime(text: str) -> tuple[str, float]:
    """``order.PENDING=600`` -> ("order.PENDING", 600.0); ValueError names the problem."""
    key, separator, value = text.partition("=")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not separator or "." not in key or seconds < 0:
        raise ValueError(
            f"--lifetime {text!r}: expected KIND.STATE=SECONDS, e.g. order.PENDING=600"
        )
    return key, seconds


def run(network: Network, *, as_json: bool, lifetime_overrides: Mapping[str, float]) -> int:
    """The CLI: prints the table (or JSON); 0 when consistent, 1 on any mismatch."""
    report = asyncio.run(reconcile(network, lifetime_overrides=lifetime_overrides))
    if as_json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(render_table(report))
    return 1 if report.mismatches else 0
