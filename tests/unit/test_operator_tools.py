"""The operator tools' logic on hand-made records: state mapping, invariants, trace output."""

from __future__ import annotations

from pathlib import Path

import pytest
from suretynet.type.v1 import types_pb2

from nodes.common import flow_export as fx
from nodes.operator.console import key_metrics
from nodes.operator.network import Network, NodeEntry, NodeExport
from nodes.operator.reconcile import (
    DEFAULT_LIFETIMES_S,
    Report,
    _check_member_credit,
    _check_order,
    _Index,
    lifetimes,
    parse_lifetime,
)
from nodes.operator.trace import journey, render
from nodes.retail.export import ORDER_STATES as SHOP_STATES
from nodes.settlement.export import ORDER_STATES as AGENCY_STATES

ORDER = types_pb2.FLOW_RECORD_KIND_ORDER


def _record(
    entity_id: str, role: int, state: str, *, kind: int = ORDER, amount: int = 1200, **extra: str
) -> types_pb2.FlowRecord:
    return types_pb2.FlowRecord(
        entity_id=entity_id,
        role=role,
        kind=kind,
        key="ON-1",
        order_number="ON-1",
        state=state,
        stored_state=state,
        amount=types_pb2.Money(amount_minor=amount, currency_code="JPY"),
        member_id=extra.pop("member_id", ""),
        attributes=extra,
    )


def _check(*records: types_pb2.FlowRecord) -> Report:
    export = NodeExport(NodeEntry("retail", "shop-1", "127.0.0.1:1"), list(records))
    index = _Index([export])
    report = Report()
    for shop in index.shop_orders.values():
        _check_order(report, index, shop)
    return report


def _four(shop: str, agency: str | None, verification: str, approval: str) -> Report:
    records = [
        _record("shop-1", types_pb2.ROLE_RETAIL, shop, settlement_agency_id="agency-1"),
        _record(
            "verification",
            types_pb2.ROLE_VERIFICATION,
            verification,
            kind=types_pb2.FLOW_RECORD_KIND_TRANSACTION_REPORT,
        ),
        _record(
            "institution",
            types_pb2.ROLE_APPROVAL,
            approval,
            kind=types_pb2.FLOW_RECORD_KIND_TRANSACTION_RECORD,
        ),
    ]
    if agency is not None:
        records.append(_record("agency-1", types_pb2.ROLE_SETTLEMENT, agency))
    return _check(*records)


def test_stored_states_map_and_new_ones_pass_through_unchanged() -> None:
    """Today's states and issue 9's voids map; a state no mapping knows is kept as stored."""
    assert fx.normalized("PENDING", SHOP_STATES) == fx.PENDING
    assert fx.normalized("VOIDED", SHOP_STATES) == fx.VOIDED
    assert fx.normalized("DECLINED", SHOP_STATES) == fx.FAILED
    assert fx.normalized("VOIDING", SHOP_STATES) in fx.INTERMEDIATE_STATES
    assert fx.normalized("CREDITED_BACK", AGENCY_STATES) == fx.CANCELLED
    assert fx.normalized("VOIDED", AGENCY_STATES) == fx.VOIDED
    assert fx.normalized("ON_HOLD", AGENCY_STATES) == "ON_HOLD"


@pytest.mark.parametrize(
    ("states", "clean"),
    [
        (("COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED"), True),
        (("CANCELLED", "CANCELLED", "CANCELLED", "CANCELLED"), True),
        # A compensated order: the void told every node.
        (("VOIDED", "VOIDED", "VOIDED", "VOIDED"), True),
        (("FAILED", None, "FAILED", "FAILED"), True),
        # The shop gave the order up, but the agency still bills it.
        (("VOIDED", "COMPLETED", "VOIDED", "VOIDED"), False),
        (("COMPLETED", "COMPLETED", "CANCELLED", "COMPLETED"), False),
        (("COMPLETED", None, "COMPLETED", "COMPLETED"), False),
        # A state added later is compared as it is stored, not rejected.
        (("ON_HOLD", "ON_HOLD", "ON_HOLD", "ON_HOLD"), True),
        (("ON_HOLD", "COMPLETED", "ON_HOLD", "ON_HOLD"), False),
        # In flight: states may differ until the flow ends.
        (("PENDING", "COMPLETED", "COMPLETED", "COMPLETED"), True),
        (("VOIDING", "COMPLETED", "COMPLETED", "VOIDED"), True),
    ],
)
def test_four_records_must_agree_on_state(
    states: tuple[str, str | None, str, str], clean: bool
) -> None:
    report = _four(*states)
    assert (report.mismatches == []) is clean, report.mismatches
    assert all(mismatch.invariant == "RECORDS_DISAGREE" for mismatch in report.mismatches)


def test_an_amount_that_differs_is_found_even_in_flight() -> None:
    report = _check(
        _record("shop-1", types_pb2.ROLE_RETAIL, "PENDING"),
        _record("agency-1", types_pb2.ROLE_SETTLEMENT, "PENDING", amount=1300),
    )
    assert [(m.invariant, m.node) for m in report.mismatches] == [("RECORDS_DISAGREE", "agency-1")]


def test_member_credit_counts_open_orders_only() -> None:
    credit = types_pb2.FlowRecord(
        entity_id="agency-1",
        role=types_pb2.ROLE_SETTLEMENT,
        kind=types_pb2.FLOW_RECORD_KIND_MEMBER_CREDIT,
        key="alice",
        member_id="alice",
        amount=types_pb2.Money(amount_minor=1200, currency_code="JPY"),
    )
    orders = [
        _record("agency-1", types_pb2.ROLE_SETTLEMENT, "COMPLETED", member_id="alice"),
        _record("agency-1", types_pb2.ROLE_SETTLEMENT, "VOIDED", member_id="alice"),
        _record("agency-1", types_pb2.ROLE_SETTLEMENT, "CANCELLED", member_id="alice"),
    ]
    export = NodeExport(NodeEntry("settlement", "agency-1", "127.0.0.1:1"), [credit, *orders])
    report = Report()
    _check_member_credit(report, _Index([export]))
    assert report.mismatches == [] and report.members_checked == 1
    credit.amount.amount_minor = 2400
    report = Report()
    _check_member_credit(report, _Index([export]))
    assert [(m.invariant, m.member) for m in report.mismatches] == [("MEMBER_CREDIT", "alice")]


def test_trace_marks_refusals_and_retries() -> None:
    record = _record("institution", types_pb2.ROLE_APPROVAL, "FAILED")
    record.events.append(
        fx.event(
            "transaction verification refused",
            None,
            method="suretynet.approval.v1.TransactionService/VerifyTransaction",
            sender="shop-1",
            receiver="institution",
            refusal_reason="TRANSACTION_MISMATCH",
        )
    )
    record.events.append(
        fx.event(
            "sent",
            None,
            method="suretynet.marketplace.v1.MediationService/ReportShipment",
            sender="market-2",
            receiver="market-1",
            attempts=3,
        )
    )
    text = render(journey("ON-1", [NodeExport(NodeEntry("approval", "institution", ""), [record])]))
    assert "shop-1 -> institution: TransactionService/VerifyTransaction" in text
    assert "refused: TRANSACTION_MISMATCH" in text
    assert "[retried: 3 attempts]" in text
    assert "institution" in text.split("Final state at each node:")[1]


def test_lifetime_flags_and_metrics_text_are_parsed() -> None:
    assert parse_lifetime("order.PENDING=600") == ("order.PENDING", 600.0)
    for bad in ("order.PENDING", "PENDING=5", "order.PENDING=-1", "order.PENDING=soon"):
        with pytest.raises(ValueError, match=r"KIND\.STATE=SECONDS"):
            parse_lifetime(bad)
    text = (
        "# HELP suretynet_rpc_served_total RPCs\n"
        'suretynet_rpc_served_total{method="a",code="OK"} 3\n'
        'suretynet_rpc_served_total{method="b",code="OK"} 4\n'
        'suretynet_rpc_latency_seconds_bucket{le="0.1"} 7\n'
        "python_gc_objects_collected_total 99\n"
    )
    assert key_metrics(text) == {"suretynet_rpc_served_total": 7.0}


def test_a_shops_own_order_lifetime_bounds_its_pending_orders(tmp_path: Path) -> None:
    """order_lifetime_s in the shop's node.toml, plus two janitor rounds, unless the
    operator set order.PENDING explicitly."""
    config = tmp_path / "node.toml"
    config.write_text("[options]\norder_lifetime_s = 2\npurchase_resume_interval_s = 1\n")
    network = Network(
        path=tmp_path / "network.json",
        nodes=(
            NodeEntry("retail", "shop-9", "127.0.0.1:1", config=str(config)),
            NodeEntry("retail", "shop-1", "127.0.0.1:2"),
        ),
        ca=b"",
        admin_cert=b"",
        admin_key=b"",
    )
    limits = lifetimes(network)
    assert limits.of("shop-9", "order.PENDING") == 4.0
    assert limits.of("shop-1", "order.PENDING") == DEFAULT_LIFETIMES_S["order.PENDING"]
    assert lifetimes(network, {"order.PENDING": 30.0}).of("shop-9", "order.PENDING") == 30.0
