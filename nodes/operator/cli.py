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
