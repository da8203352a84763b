"""The member side of ``suretynet bench``: whole purchases, from a process of its own.

    python -m nodes.network.bench_load --ca CA

It buys as a member's app does (nodes/member/client.py: PlaceOrder on a shop's member
port, server-authenticated TLS, the anonymous user ID only), running the load phases of
nodes/network/bench_driver.py. Each command names its target besides the phase:
``"shop"`` (the shop's member address), ``"anonymous_user_id"`` and ``"item"``. Every
purchase has a request ID of its own, so none is answered from an idempotency record.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path
from typing import Any

from nodes.member.client import ShopClient
from nodes.network.bench_driver import LOOPS, Call, CommandError, run_on, serve_commands

CALL_TIMEOUT_S = 30.0


async def run(ca: Path) -> None:
    ca_pem = ca.read_bytes()
    shops: dict[str, ShopClient] = {}
    # Request IDs unique across runs too: a bench on a kept network never replays one.
    run_token = secrets.token_hex(4)

    def make_call(command: dict[str, Any]) -> Call:
        shop, anonymous_id = command.get("shop"), command.get("anonymous_user_id")
        item = command.get("item", "tea")
        if not isinstance(shop, str) or not shop:
            raise CommandError("shop: the shop's member address is required")
        if not isinstance(anonymous_id, str) or not anonymous_id:
            raise CommandError("anonymous_user_id: is required")
        if not isinstance(item, str):
            raise CommandError("item: a catalog item ID is required")
        client = shops.get(shop)
        if client is None:
            client = shops[shop] = ShopClient(shop, ca_pem, timeout_s=CALL_TIMEOUT_S)
        tag = str(command.get("tag", "p"))

        async def call(number: int) -> None:
            await client.place_order(
                anonymous_id, [(item, 1)], request_id=f"bench-{run_token}-{tag}-{number}"
            )

        return call

    try:
        await serve_commands(make_call)
    finally:
        for client in shops.values():
            await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ca", type=Path, required=True, help="the network CA (ca.pem)")
    parser.add_argument("--loop", choices=LOOPS, default="uvloop", help="the event loop")
    args = parser.parse_args(argv)
    run_on(args.loop, run(args.ca))
    return 0


if __name__ == "__main__":
    sys.exit(main())
