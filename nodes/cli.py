"""The ``suretynet`` command: PKI, running a node, a local network, the demo, admin calls."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import grpc

from nodes.common import pki, tls
from nodes.common.config import ConfigError, load_config
from nodes.common.convert import enum_value
from nodes.common.identity import ROLES
from nodes.common.status import decode_rpc_error


def _pki(args: argparse.Namespace) -> int:
    if args.pki_command == "init":
        issued = pki.init_ca(Path(args.dir))
        print(
            f"CA certificate: {issued.cert_path}\nCA private key: {issued.key_path} (keep it offline)"
        )
        return 0
    out = Path(args.out or args.dir)
    issued = pki.issue_certificate(
        Path(args.dir),
        role=args.role,
        entity_id=args.entity,
        ip_addresses=args.ip,
        out_directory=out,
    )
    print(f"certificate: {issued.cert_path}\nprivate key: {issued.key_path}")
    return 0


def _node_run(args: argparse.Namespace) -> int:
    from nodes.common.node import run_until_signalled

    config = load_config(Path(args.config))
    if args.insecure_dev:
        import dataclasses

        config = dataclasses.replace(config, insecure_dev=True)
    if config.role != args.role:
        raise ConfigError(f"{args.config} configures role {config.role!r}, not {args.role!r}")
    asyncio.run(run_until_signalled(config))
    return 0


def _up(args: argparse.Namespace) -> int:
    from nodes.network.local import run_up

    extra: dict[str, Any] = {}
    if args.otlp_endpoint:
        extra["otlp_endpoint"] = args.otlp_endpoint
    if args.trace_files:
        extra["trace_files"] = True
    return asyncio.run(run_up(Path(args.data_dir), netns=args.netns, extra_config=extra))


def _demo(args: argparse.Namespace) -> int:
    from nodes.network.demo import run_demo

    return asyncio.run(run_demo(keep=Path(args.keep) if args.keep else None))


def _admin_channel(args: argparse.Namespace) -> tuple[grpc.aio.Channel, str]:
    manifest = json.loads(Path(args.network).read_text())
    approval = next(node for node in manifest["nodes"] if node["role"] == "approval")
    credentials = tls.client_credentials(
        Path(manifest["ca"]).read_bytes(),
        Path(manifest["admin"]["cert"]).read_bytes(),
        Path(manifest["admin"]["key"]).read_bytes(),
    )
    return grpc.aio.secure_channel(approval["address"], credentials), approval["address"]


async def _approval_admin(args: argparse.Namespace) -> int:
    from google.protobuf.message import Message
    from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
    from suretynet.type.v1 import types_pb2

    from nodes.common.output import print_message

    channel, _ = _admin_channel(args)
    response: Message
    async with channel:
        stub = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
        if args.admin_command == "issue-serial":
            response = await stub.IssueProgramSerial(
                approval_pb2.IssueProgramSerialRequest(
                    request_id=args.request_id,
                    role=enum_value(types_pb2.Role, "ROLE_", args.role),
                    note=args.note,
                ),
                timeout=10,
            )
        elif args.admin_command == "revoke-key":
            response = await stub.RevokeLicenseKey(
                approval_pb2.RevokeLicenseKeyRequest(
                    request_id=args.request_id, license_key_id=args.key_id, reason=args.reason
                ),
                timeout=10,
            )
        elif args.admin_command == "set-status":
            response = await stub.SetEntityStatus(
                approval_pb2.SetEntityStatusRequest(
                    request_id=args.request_id,
                    entity_id=args.entity,
                    status=enum_value(types_pb2.EntityStatus, "ENTITY_STATUS_", args.status),
                    reason=args.reason,
                ),
                timeout=10,
            )
        elif args.admin_command == "list-keys":
            response = await stub.ListLicenseKeys(
                approval_pb2.ListLicenseKeysRequest(entity_id=args.entity or ""), timeout=10
            )
        else:
            response = await stub.ListEntities(approval_pb2.ListEntitiesRequest(), timeout=10)
    print_message(response)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="suretynet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    pki_parser = commands.add_parser("pki", help="the network's certificate authority")
    pki_commands = pki_parser.add_subparsers(dest="pki_command", required=True)
    init = pki_commands.add_parser("init", help="create a network CA (ca.pem, ca.key)")
    init.add_argument("--dir", default="pki", help="where to write the CA (default: ./pki)")
    issue = pki_commands.add_parser("issue", help="issue a node or admin certificate")
    issue.add_argument("--dir", default="pki", help="the CA's directory (default: ./pki)")
    issue.add_argument("--role", required=True, choices=sorted(ROLES))
    issue.add_argument("--entity", required=True, help="entity ID, e.g. shop-1")
    issue.add_argument("--ip", required=True, action="append", help="IP SAN (repeatable)")
    issue.add_argument("--out", help="output directory (default: the CA's directory)")
    pki_parser.set_defaults(handler=_pki)

    node = commands.add_parser("node", help="run one node")
    node_commands = node.add_subparsers(dest="node_command", required=True)
    run = node_commands.add_parser("run", help="run a node until SIGTERM/SIGINT")
    run.add_argument(
        "role", choices=["approval", "verification", "settlement", "retail", "marketplace"]
    )
    run.add_argument("--config", required=True, help="the node's TOML file")
    run.add_argument(
        "--insecure-dev", action="store_true", help="plaintext, no TLS: development only"
    )
    run.set_defaults(handler=_node_run)

    up = commands.add_parser("up", help="run a whole local network until Ctrl-C")
    up.add_argument("--data-dir", required=True, help="where certificates, configs, DBs go")
    up.add_argument(
        "--netns",
        action="store_true",
        help="one Linux network namespace and IP per node (root only): real address checks",
    )
    up.add_argument(
        "--otlp-endpoint",
        default="",
        help="every node exports its spans over OTLP/gRPC here (e.g. http://127.0.0.1:4317)",
    )
    up.add_argument(
        "--trace-files",
        action="store_true",
        help="every node appends its spans to DATA_DIR/traces/ENTITY.jsonl",
    )
    up.set_defaults(handler=_up)

    demo = commands.add_parser("demo", help="run every flow on a fresh local network")
    demo.add_argument("--keep", help="use this directory instead of a temporary one")
    demo.set_defaults(handler=_demo)

    admin = commands.add_parser("approval", help="the institution's admin calls to approval")
    admin.add_argument("--network", required=True, help="network.json written by 'up'")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    serial = admin_commands.add_parser("issue-serial", help="issue a program serial number")
    serial.add_argument("--role", required=True, choices=["retail", "settlement", "marketplace"])
    serial.add_argument("--note", default="")
    serial.add_argument("--request-id", required=True)
    revoke = admin_commands.add_parser("revoke-key", help="revoke a license key")
    revoke.add_argument("--key-id", required=True)
    revoke.add_argument("--reason", required=True)
    revoke.add_argument("--request-id", required=True)
    status = admin_commands.add_parser("set-status", help="suspend or reactivate an entity")
    status.add_argument("--entity", required=True)
    status.add_argument("--status", required=True, choices=["active", "suspended", "terminated"])
    status.add_argument("--reason", default="")
    status.add_argument("--request-id", required=True)
    keys = admin_commands.add_parser("list-keys", help="list license keys (never the secrets)")
    keys.add_argument("--entity")
    admin_commands.add_parser("list-entities", help="list registered entities")
    admin.set_defaults(handler=lambda args: asyncio.run(_approval_admin(args)))

    from nodes.member.cli import add_parser as add_member_parser
    from nodes.network.admin_cli import add_parsers as add_operator_parsers

    add_member_parser(commands)
    add_operator_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (ConfigError, FileExistsError, ValueError) as error:
        print(f"suretynet: {error}", file=sys.stderr)
        return 2
    except grpc.RpcError as error:
        remote = decode_rpc_error(error)
        print(f"suretynet: {remote.code.name} {remote.reason}: {remote.message}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
