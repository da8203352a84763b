"""``suretynet member ...``: the member client library from the command line.

The session token from ``login`` is kept in a session file (owner-only, next to
network.json unless --session says otherwise) so that later commands act as that member.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from nodes.common.output import print_message
from nodes.member.client import AgencyClient, ShopClient

PASSWORD_ENVIRONMENT = "SURETYNET_MEMBER_PASSWORD"
SHOP_HELP = "shop entity ID, e.g. shop-1"
ANONYMOUS_HELP = "your anonymous user ID for this shop (from anonymous-id)"


def _manifest(args: argparse.Namespace) -> dict[str, Any]:
    from nodes.network.descriptor import load_network

    return load_network(args.network)


def _member_address(manifest: dict[str, Any], entity_id: str) -> str:
    for node in manifest["nodes"]:
        if node["entity_id"] == entity_id and node.get("member_address"):
            return str(node["member_address"])
    raise ValueError(f"network.json has no member port for {entity_id!r}")


def _session_file(args: argparse.Namespace) -> Path:
    return Path(args.session) if args.session else Path(args.network).parent / "member-session.json"


def _save_session(path: Path, session: dict[str, str]) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps(session, indent=2))


def _load_session(args: argparse.Namespace) -> dict[str, str]:
    path = _session_file(args)
    if not path.exists():
        raise ValueError(f"no session in {path}: run 'suretynet member login' first")
    session: dict[str, str] = json.loads(path.read_text())
    return session


def _print(message: Message) -> None:
    print_message(message)


def _items(values: list[str]) -> list[tuple[str, int]]:
    items = []
    for value in values:
        item, _, quantity = value.partition("=")
        if not item or (quantity and not quantity.isdigit()):
            raise ValueError(f"--item {value!r}: use CATALOG_ITEM_ID or CATALOG_ITEM_ID=QUANTITY")
        items.append((item, int(quantity or 1)))
    return items


async def _agency(args: argparse.Namespace, manifest: dict[str, Any], ca: bytes) -> int:
    if args.member_command == "login":
        password = args.password or os.environ.get(PASSWORD_ENVIRONMENT, "")
        address = _member_address(manifest, args.agency)
        async with AgencyClient(address, ca) as client:
            response = await client.login(args.member_id, password)
        _save_session(
            _session_file(args),
            {
                "agency": args.agency,
                "member_address": address,
                "session_token": response.session_token,
            },
        )
        _print(response.member)
        print(f"session saved to {_session_file(args)}")
        return 0
    session = _load_session(args)
    async with AgencyClient(
        session["member_address"], ca, session_token=session["session_token"]
    ) as client:
        if args.member_command == "payment-info":
            _print(await client.payment_information(args.shop))
        elif args.member_command == "anonymous-id":
            _print(await client.anonymous_user_id(args.shop))
        elif args.member_command == "notices":
            if args.follow:
                async for notice in client.stream_completion_notices(args.after):
                    _print(notice)
            else:
                for notice in await client.completion_notices():
                    _print(notice)
        elif args.member_command == "disclosures":
            token = ""
            while True:
                page = await client.data_disclosures(page_token=token)
                for disclosure in page.data_disclosures:
                    _print(disclosure)
                token = page.next_page_token
                if not token:
                    break
        else:
            await client.logout()
            _session_file(args).unlink(missing_ok=True)
            print("logged out")
    return 0


async def _shop(args: argparse.Namespace, manifest: dict[str, Any], ca: bytes) -> int:
    async with ShopClient(_member_address(manifest, args.shop), ca) as client:
        if args.member_command == "cancel":
            _print(
                await client.request_cancellation(
                    args.order_number,
                    args.anonymous_id,
                    args.reason,
                    request_id=args.request_id or "",
                )
            )
        elif args.member_command == "catalog":
            for item in await client.catalog():
                _print(item)
        elif args.member_command == "buy":
            request_id = args.request_id or uuid.uuid4().hex
            # Told first (on stderr: stdout stays the order's JSON), so that after any
            # failure the same order can be retried safely with --request-id.
            print(
                f"request_id: {request_id} (retry with --request-id {request_id})",
                file=sys.stderr,
                flush=True,
            )
            _print(
                await client.place_order(
                    args.anonymous_id, _items(args.item), request_id=request_id
                )
            )
        else:
            _print(await client.order(args.order_number, args.anonymous_id))
    return 0


def add_parser(commands: Any) -> None:
    """Adds ``member`` and its subcommands to the ``suretynet`` parser."""
    member = commands.add_parser("member", help="act as a member: log in, get IDs, buy")
    member.add_argument("--network", required=True, help="network.json written by 'up'")
    member.add_argument("--session", help="session file (default: next to network.json)")
    sub = member.add_subparsers(dest="member_command", required=True)
    login = sub.add_parser("login", help="step 1: log in at your settlement agency")
    login.add_argument("--agency", required=True, help="agency entity ID, e.g. agency-1")
    login.add_argument("--member-id", required=True, help="your member ID at the agency")
    login.add_argument("--password", default="", help=f"password (or set {PASSWORD_ENVIRONMENT})")
    for name, help_text in (
        ("payment-info", "step 2: a shop's payment methods and private details"),
        ("anonymous-id", "step 3: your anonymous user ID for a shop"),
    ):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--shop", required=True, help="shop entity ID, e.g. shop-1")
    notices = sub.add_parser("notices", help="step 7: your transaction completion notices")
    notices.add_argument("--follow", action="store_true", help="stream new notices as they come")
    notices.add_argument("--after", type=int, default=0, help="stream after this sequence")
    sub.add_parser(
        "disclosures", help="who saw your data: what, when and why (ListDataDisclosures)"
    )
    sub.add_parser("logout", help="end the session")
    catalog = sub.add_parser("catalog", help="a shop's catalog")
    catalog.add_argument("--shop", required=True, help=SHOP_HELP)
    buy = sub.add_parser("buy", help="steps 4-11: order at a shop with your anonymous ID")
    buy.add_argument("--shop", required=True, help=SHOP_HELP)
    buy.add_argument("--anonymous-id", required=True, help=ANONYMOUS_HELP)
    buy.add_argument("--item", action="append", required=True, help="ITEM or ITEM=QUANTITY")
    buy.add_argument(
        "--request-id",
        help="idempotency key (default: a new one, printed on stderr); reuse it to retry "
        "the same order safely",
    )
    order = sub.add_parser("order", help="an order's status at the shop")
    order.add_argument("--shop", required=True, help=SHOP_HELP)
    order.add_argument("--order-number", required=True, help="the order number")
    order.add_argument("--anonymous-id", required=True, help="the anonymous ID it was placed with")
    cancel = sub.add_parser("cancel", help="ask the shop to cancel an order (claims 2-3)")
    cancel.add_argument("--shop", required=True, help=SHOP_HELP)
    cancel.add_argument("--order-number", required=True, help="the order number")
    cancel.add_argument("--anonymous-id", required=True, help="the anonymous ID it was placed with")
    cancel.add_argument("--reason", default="", help="why, for the shop")
    cancel.add_argument("--request-id", help="idempotency key; reuse it to retry")
    member.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    manifest = _manifest(args)
    ca = Path(manifest["ca"]).read_bytes()
    if args.member_command in ("catalog", "buy", "order", "cancel"):
        return asyncio.run(_shop(args, manifest, ca))
    return asyncio.run(_agency(args, manifest, ca))
