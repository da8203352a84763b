"""The CLI entries of the operator tools: thin wrappers over reconcile, trace and console."""

from __future__ import annotations

import argparse
from typing import Any

from nodes.operator import network as network_file


def _reconcile(args: argparse.Namespace) -> int:
    from nodes.operator import reconcile

    overrides = dict(reconcile.parse_lifetime(text) for text in args.lifetime)
    return reconcile.run(
        network_file.load(args.network), as_json=args.json, lifetime_overrides=overrides
    )


def _trace(args: argparse.Namespace) -> int:
    from nodes.operator import trace

    return trace.run(network_file.load(args.network), args.order_number, as_json=args.json)


def _console(args: argparse.Namespace) -> int:
    from nodes.operator import console

    return console.run(network_file.load(args.network), args.listen)


def _flows(args: argparse.Namespace) -> int:
    from suretynet.type.v1 import types_pb2

    from nodes.operator import flows

    states = tuple(flows.OPEN_STATES) if args.open else tuple(s.upper() for s in args.state)
    kind = (
        types_pb2.FlowRecordKind.Value("FLOW_RECORD_KIND_" + args.kind.upper()) if args.kind else 0
    )
    listing = flows.Listing(args.entity, states, kind)
    return flows.run(network_file.load(args.network), listing, as_json=args.json)


def add_parsers(commands: Any) -> None:
    """Adds ``reconcile``, ``trace`` and ``console`` to the ``suretynet`` command."""
    reconcile = commands.add_parser(
        "reconcile", help="check the network-wide invariants over every node's records"
    )
    reconcile.add_argument("--network", required=True, help="network.json of the network")
    reconcile.add_argument("--json", action="store_true", help="print JSON, not a table")
    reconcile.add_argument(
        "--lifetime",
        action="append",
        default=[],
        metavar="KIND.STATE=SECONDS",
        help="lifetime of an intermediate state, e.g. order.PENDING=600 (repeatable)",
    )
    reconcile.set_defaults(handler=_reconcile)

    trace = commands.add_parser("trace", help="one order's message sequence across the nodes")
    trace.add_argument("order_number", help="order number, or marketplace transaction ID")
    trace.add_argument("--network", required=True, help="network.json of the network")
    trace.add_argument("--json", action="store_true", help="print JSON, not lines")
    trace.set_defaults(handler=_trace)

    console = commands.add_parser("console", help="serve the operator's web console")
    console.add_argument("--network", required=True, help="network.json of the network")
    console.add_argument(
        "--listen",
        default="127.0.0.1:8089",
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:8089; port 0 picks a free one)",
    )
    console.set_defaults(handler=_console)

    listed = commands.add_parser(
        "flows", help="one node's flows by state and age (stuck orders, undelivered voids)"
    )
    listed.add_argument("--network", required=True, help="network.json of the network")
    listed.add_argument("--entity", required=True, help="the node to ask, e.g. shop-1")
    listed.add_argument(
        "--state",
        action="append",
        default=[],
        help="only this state (normalized, e.g. PENDING, or as stored); repeatable",
    )
    listed.add_argument(
        "--open", action="store_true", help="only intermediate states: PENDING, VOIDING, CANCELLING"
    )
    listed.add_argument(
        "--kind",
        choices=[
            "order",
            "cancellation",
            "transaction_report",
            "transaction_record",
            "mediated_transaction",
            "invoice",
            "payout",
            "member_credit",
        ],
        help="only records of this kind",
    )
    listed.add_argument("--json", action="store_true", help="print JSON, with age_s per flow")
    listed.set_defaults(handler=_flows)
