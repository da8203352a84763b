"""The ``suretynet`` command: PKI, running a node, a local network, the demo, admin calls."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import grpc

from nodes.common import pki, tls
from nodes.common.config import ConfigError, load_config
from nodes.common.convert import enum_label, enum_value
from nodes.common.errors import DomainError
from nodes.common.identity import ROLES
from nodes.common.status import decode_rpc_error
from nodes.network.postgres import PostgresUnavailableError
from storage.common.migrations import MigrationError


def _pki(args: argparse.Namespace) -> int:
    if args.pki_command == "init":
        issued = pki.init_ca(Path(args.dir))
        print(
            f"CA certificate: {issued.cert_path}\nCA private key: {issued.key_path} (keep it offline)"
        )
        return 0
    if args.pki_command == "renew":
        renewed = pki.renew_certificate(Path(args.dir), Path(args.cert))
        print(
            f"certificate: {renewed.cert_path}\nprivate key: {renewed.key_path}\n"
            "running nodes present it on their next TLS handshakes (no restart)"
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
    import uvloop

    # uvloop's event loop: the same node, less CPU per purchase (docs/PERFORMANCE.md).
    uvloop.run(run_until_signalled(config))
    return 0


def _node_migrate(args: argparse.Namespace) -> int:
    from storage.common import migrations
    from storage.common.database import close_database, open_database

    config = load_config(Path(args.config))
    if config.role != args.role:
        raise ConfigError(f"{args.config} configures role {config.role!r}, not {args.role!r}")
    database = open_database(config.database_url, max_connections=1)
    try:
        latest = migrations.latest_version(config.role)
        if args.check:
            current = migrations.current_version(database)
            print(f"{config.role} {config.entity_id}: schema version {current}, latest {latest}")
            if current > latest:
                raise migrations.SchemaTooNewError(
                    f"the schema is at version {current}, newer than this release's {latest}"
                )
            return 0 if current == latest else 1
        for step in migrations.migrate(database, config.role):
            print(f"applied {step.version} {step.name}")
        print(f"{config.role} {config.entity_id}: schema version {latest}")
        return 0
    finally:
        close_database(database)


def _node_restart(args: argparse.Namespace) -> int:
    from nodes.network.supervisor import restart_supervised

    entry = asyncio.run(restart_supervised(Path(args.network), args.entity))
    print(f"{args.entity} restarted: pid {entry['pid']}, SERVING at {entry['address']}")
    return 0


def _node_change_info(args: argparse.Namespace) -> int:
    from nodes.network.change_info import change_info

    status = asyncio.run(change_info(Path(args.network), args.entity))
    fields = ", ".join(status["fields"]) or "none"
    print(f"{args.entity}: {status['outcome']} (fields: {fields}) {status['detail']}".rstrip())
    return 0 if status["outcome"] in ("MATCHED", "CHANGED") else 1


def _node_rotate_key(args: argparse.Namespace) -> int:
    from nodes.network.change_info import rotate_key

    key = asyncio.run(rotate_key(Path(args.network), args.entity))
    print(f"{args.entity}: new license key {key}")
    return 0


def _network_add_node(args: argparse.Namespace) -> int:
    from nodes.network.descriptor import add_node

    entry = {
        "role": args.role,
        "entity_id": args.entity,
        "address": args.address,
        "member_address": args.member_address or "",
        "config": args.config or "",
        "cert": args.cert or "",
        "key": args.key or "",
        "log": args.log or "",
    }
    if bool(args.operator_cert) != bool(args.operator_key):
        raise ValueError("--operator-cert and --operator-key go together")
    if args.operator_cert:
        entry["operator"] = {"cert": args.operator_cert, "key": args.operator_key}
    network = add_node(
        Path(args.network),
        entry,
        ca=args.ca or "",
        admin_cert=args.admin_cert or "",
        admin_key=args.admin_key or "",
        replace=args.replace,
    )
    print(f"{args.network}: {len(network['nodes'])} node(s); {args.entity} at {args.address}")
    return 0


def _up(args: argparse.Namespace) -> int:
    from nodes.network.local import check_replicas, run_up

    try:
        check_replicas(args.replicas, args.database)
    except ValueError as error:
        print(f"suretynet up: {error}", file=sys.stderr)
        return 2
    extra: dict[str, Any] = {}
    if args.otlp_endpoint:
        extra["otlp_endpoint"] = args.otlp_endpoint
    if args.trace_files:
        extra["trace_files"] = True
    return asyncio.run(
        run_up(
            Path(args.data_dir),
            netns=args.netns,
            database=args.database,
            standby=args.standby,
            extra_config=extra,
            replicas=args.replicas,
        )
    )


def _demo(args: argparse.Namespace) -> int:
    from nodes.network.demo import run_demo

    return asyncio.run(run_demo(keep=Path(args.keep) if args.keep else None))


def _admin_channel(args: argparse.Namespace) -> tuple[grpc.aio.Channel, str]:
    from nodes.common.channels import secure_channel
    from nodes.network.descriptor import load_network, role_address

    manifest = load_network(args.network)
    approval = role_address(manifest, "approval", path=args.network)
    credentials = tls.client_credentials(
        Path(manifest["ca"]).read_bytes(),
        Path(manifest["admin"]["cert"]).read_bytes(),
        Path(manifest["admin"]["key"]).read_bytes(),
    )
    return secure_channel(approval, credentials), approval


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
        elif args.admin_command == "change-info":
            response = await _change_information(channel, args)
        elif args.admin_command == "list-serials":
            response = await stub.ListProgramSerials(
                approval_pb2.ListProgramSerialsRequest(
                    role=enum_value(types_pb2.Role, "ROLE_", args.role or "")
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


def _fuzz(args: argparse.Namespace) -> int:
    from nodes.network.fuzz import run_cli

    return run_cli(
        args.network, long=args.long, examples_per_rpc=args.examples_per_rpc, seed=args.seed
    )


async def _change_information(channel: grpc.aio.Channel, args: argparse.Namespace) -> Any:
    """The institution changes an entity's registry entry (a move, a correction)."""
    from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
    from suretynet.type.v1 import types_pb2

    entity = (
        await approval_pb2_grpc.ApprovalAdminServiceStub(channel).GetEntity(
            approval_pb2.GetEntityRequest(entity_id=args.entity), timeout=10
        )
    ).entity
    role = enum_label(types_pb2.Role, "ROLE_", entity.role)
    if args.routing_prefix is not None and role != "settlement":
        raise ValueError(f"--routing-prefix: {args.entity} is a {role} entity, not an agency")
    values = {
        "display_name": args.name,
        "address": args.address,
        "routing_prefix": args.routing_prefix,
    }
    present = {key: value for key, value in values.items() if value is not None}
    if not present:
        raise ValueError("change-info: give at least one of --name, --address, --routing-prefix")
    stub = approval_pb2_grpc.EnrollmentServiceStub(channel)
    if role == "retail":
        return await stub.ChangeRetailEntityInformation(
            approval_pb2.ChangeRetailEntityInformationRequest(
                request_id=args.request_id,
                entity_id=args.entity,
                change=approval_pb2.RetailEntityInformationChange(**present),
            ),
            timeout=10,
        )
    if role == "settlement":
        return await stub.ChangeSettlementAgencyInformation(
            approval_pb2.ChangeSettlementAgencyInformationRequest(
                request_id=args.request_id,
                entity_id=args.entity,
                change=approval_pb2.SettlementAgencyInformationChange(**present),
            ),
            timeout=10,
        )
    return await stub.ChangeMarketplaceInformation(
        approval_pb2.ChangeMarketplaceInformationRequest(
            request_id=args.request_id,
            entity_id=args.entity,
            change=approval_pb2.MarketplaceInformationChange(**present),
        ),
        timeout=10,
    )


NETWORK_HELP = "the network descriptor (network.json written by 'up' or 'network add-node')"
REQUEST_ID_HELP = "idempotency key: the same ID repeats the first answer; reuse it to retry"


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("suretynet")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="suretynet", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    pki_parser = commands.add_parser("pki", help="the network's certificate authority")
    pki_commands = pki_parser.add_subparsers(dest="pki_command", required=True)
    init = pki_commands.add_parser("init", help="create a network CA (ca.pem, ca.key)")
    init.add_argument("--dir", default="pki", help="where to write the CA (default: ./pki)")
    issue = pki_commands.add_parser("issue", help="issue a node or admin certificate")
    issue.add_argument("--dir", default="pki", help="the CA's directory (default: ./pki)")
    issue.add_argument("--role", required=True, choices=sorted(ROLES), help="the holder's role")
    issue.add_argument("--entity", required=True, help="entity ID, e.g. shop-1")
    issue.add_argument("--ip", required=True, action="append", help="IP SAN (repeatable)")
    issue.add_argument("--out", help="output directory (default: the CA's directory)")
    renew = pki_commands.add_parser(
        "renew",
        help="re-issue a certificate with the same names and a new key, in place",
        description="Writes a new key and certificate over CERT (and CERT's .key) with the "
        "same role, entity and IPs; running nodes reload them on their next handshakes.",
    )
    renew.add_argument("--dir", default="pki", help="the CA's directory (default: ./pki)")
    renew.add_argument(
        "--cert", required=True, help="the certificate to renew, e.g. pki/retail-shop-1.pem"
    )
    pki_parser.set_defaults(handler=_pki)

    node = commands.add_parser("node", help="run one node")
    node_commands = node.add_subparsers(dest="node_command", required=True)
    run = node_commands.add_parser("run", help="run a node until SIGTERM/SIGINT")
    run.add_argument(
        "role",
        choices=["approval", "verification", "settlement", "retail", "marketplace"],
        help="the role the config must name",
    )
    run.add_argument("--config", required=True, help="the node's TOML file")
    run.add_argument(
        "--insecure-dev", action="store_true", help="plaintext, no TLS: development only"
    )
    run.set_defaults(handler=_node_run)
    schema = node_commands.add_parser(
        "migrate", help="apply the node's pending schema migrations (or --check), then exit"
    )
    schema.add_argument(
        "role",
        choices=["approval", "verification", "settlement", "retail", "marketplace"],
        help="the role the config must name",
    )
    schema.add_argument("--config", required=True, help="the node's TOML file")
    schema.add_argument(
        "--check", action="store_true", help="only report the versions; exit 1 if any is pending"
    )
    schema.set_defaults(handler=_node_migrate)
    restart = node_commands.add_parser(
        "restart",
        help="restart a node that 'suretynet up' supervises, and wait until it serves again",
        description="Sends the node SIGTERM; the supervising 'up' starts it again on the same "
        "addresses; returns once network.json names the new process and it reports SERVING.",
    )
    restart.add_argument("entity", help="the node's entity ID, e.g. shop-1")
    restart.add_argument("--network", required=True, help=NETWORK_HELP)
    restart.set_defaults(handler=_node_restart)
    change = node_commands.add_parser(
        "change-info",
        help="make a running node compare its installation info with approval's registry "
        "and send any change (claims 6-7)",
        description="Sends the node SIGHUP and prints the outcome it records: MATCHED, "
        "CHANGED (with the fields sent), REFUSED or FAILED (exit 1, with the reason). Edits "
        "to node.toml take effect with 'suretynet node restart', which announces on start.",
    )
    change.add_argument("entity", help="the node's entity ID, e.g. shop-1")
    change.add_argument("--network", required=True, help=NETWORK_HELP)
    change.set_defaults(handler=_node_change_info)
    rotate = node_commands.add_parser(
        "rotate-key",
        help="make a running node rotate its license key now, and wait for the new key",
        description="Sends the node SIGUSR1; it rotates its key (the old one keeps working "
        "for approval's rotation grace) and this waits until approval lists the new key.",
    )
    rotate.add_argument("entity", help="the node's entity ID, e.g. shop-1")
    rotate.add_argument("--network", required=True, help=NETWORK_HELP)
    rotate.set_defaults(handler=_node_rotate_key)

    network = commands.add_parser(
        "network", help="write the network descriptor (network.json) the CLIs read"
    )
    network_commands = network.add_subparsers(dest="network_command", required=True)
    add = network_commands.add_parser(
        "add-node",
        help="add a node to network.json (created if missing), or replace one",
        description="Records where a node is so that every CLI can reach it; the format is "
        "in docs/OPERATIONS.md, 'The network descriptor'.",
    )
    add.add_argument("--network", required=True, help="the descriptor to write, network.json")
    add.add_argument(
        "--role",
        required=True,
        choices=["approval", "verification", "settlement", "retail", "marketplace"],
        help="the node's role",
    )
    add.add_argument("--entity", required=True, help="the node's entity ID, e.g. shop-9")
    add.add_argument("--address", required=True, help="the node port, HOST:PORT (mutual TLS)")
    add.add_argument("--member-address", help="the member port, HOST:PORT, if it has one")
    add.add_argument("--config", help="the node's node.toml, if on this host")
    add.add_argument("--cert", help="the node's certificate, for reference")
    add.add_argument("--key", help="the node's private key, for reference")
    add.add_argument("--log", help="the node's log file, if on this host")
    add.add_argument("--ca", help="the network CA's PEM (needed to create the descriptor)")
    add.add_argument("--admin-cert", help="the institution's operator certificate (to create it)")
    add.add_argument("--admin-key", help="the institution's operator key (to create it)")
    add.add_argument(
        "--operator-cert",
        help="this node's organization's operator certificate (suretynet://admin/ORG), "
        "which its admin commands present; default: the institution's",
    )
    add.add_argument("--operator-key", help="the key of --operator-cert")
    add.add_argument("--replace", action="store_true", help="overwrite the node if listed")
    add.set_defaults(handler=_network_add_node)

    up = commands.add_parser("up", help="run a whole local network until Ctrl-C")
    up.add_argument("--data-dir", required=True, help="where certificates, configs, DBs go")
    up.add_argument(
        "--netns",
        action="store_true",
        help="one Linux network namespace and IP per node (root only): real address checks",
    )
    up.add_argument(
        "--database",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="sqlite (default): a file per node; postgresql: a local cluster under "
        "DATA_DIR/postgres with a database and role per node (installed if missing, as root)",
    )
    up.add_argument(
        "--standby",
        action="store_true",
        help="with --database postgresql: a synchronous streaming standby of the cluster "
        "(DATA_DIR/postgres-standby); nodes follow it when it is promoted",
    )
    up.add_argument(
        "--replicas",
        type=int,
        default=1,
        metavar="N",
        help="with --database postgresql: N processes each of approval, verification and "
        "every settlement agency over its one database, each on its own address; peers "
        "spread their calls over them (default 1)",
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
    demo.add_argument(
        "--keep", help="run the network in this directory and leave it there afterwards"
    )
    demo.set_defaults(handler=_demo)

    admin = commands.add_parser("approval", help="the institution's admin calls to approval")
    admin.add_argument("--network", required=True, help=NETWORK_HELP)
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    serial = admin_commands.add_parser("issue-serial", help="issue a program serial number")
    serial.add_argument(
        "--role",
        required=True,
        choices=["retail", "settlement", "marketplace"],
        help="the role the serial may register",
    )
    serial.add_argument("--note", default="", help="a note for the institution's records")
    serial.add_argument("--request-id", required=True, help=REQUEST_ID_HELP)
    serials = admin_commands.add_parser("list-serials", help="list issued program serials")
    serials.add_argument(
        "--role", choices=["retail", "settlement", "marketplace"], help="only this role's"
    )
    revoke = admin_commands.add_parser("revoke-key", help="revoke a license key")
    revoke.add_argument("--key-id", required=True, help="license key ID (see list-keys)")
    revoke.add_argument("--reason", required=True, help="why, for the records and the node")
    revoke.add_argument("--request-id", required=True, help=REQUEST_ID_HELP)
    status = admin_commands.add_parser("set-status", help="suspend or reactivate an entity")
    status.add_argument("--entity", required=True, help="entity ID, e.g. shop-1")
    status.add_argument(
        "--status",
        required=True,
        choices=["active", "suspended", "terminated"],
        help="the new status",
    )
    status.add_argument("--reason", default="", help="why, for the records")
    status.add_argument("--request-id", required=True, help=REQUEST_ID_HELP)
    change = admin_commands.add_parser(
        "change-info",
        help="change an entity's registry entry as the institution (a move to a new address)",
    )
    change.add_argument("--entity", required=True, help="entity ID, e.g. shop-1")
    change.add_argument("--name", help="new display name")
    change.add_argument("--address", help="new address HOST:PORT (a move)")
    change.add_argument("--routing-prefix", help="new routing prefix (agencies only)")
    change.add_argument("--request-id", required=True, help=REQUEST_ID_HELP)
    keys = admin_commands.add_parser("list-keys", help="list license keys (never the secrets)")
    keys.add_argument("--entity", help="only this entity's keys")
    admin_commands.add_parser("list-entities", help="list registered entities")
    admin.set_defaults(handler=lambda args: asyncio.run(_approval_admin(args)))

    fuzz = commands.add_parser(
        "fuzz", help="hostile input against every RPC of a local network (docs/OPERATIONS.md)"
    )
    fuzz.add_argument(
        "--network", help="network.json of a network made for fuzzing (default: start one)"
    )
    fuzz.add_argument("--long", action="store_true", help="the operator's long run")
    fuzz.add_argument("--examples-per-rpc", type=int, help="generated requests per RPC")
    fuzz.add_argument("--seed", type=int, default=0, help="request IDs of the replays")
    fuzz.set_defaults(handler=_fuzz)

    from nodes.member.cli import add_parser as add_member_parser
    from nodes.network.admin_cli import add_parsers as add_operator_parsers
    from nodes.network.bench import add_parser as add_bench_parser
    from nodes.network.faults import add_parser as add_faults_parser
    from nodes.operator.audit import add_parser as add_audit_parser
    from nodes.operator.cli import add_parsers as add_tool_parsers

    add_member_parser(commands)
    add_operator_parsers(commands)
    add_tool_parsers(commands)
    add_audit_parser(commands)
    add_faults_parser(commands)
    add_bench_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; an operator's mistake is one line on stderr and a non-zero exit."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except (
        ConfigError,
        ValueError,
        TimeoutError,
        MigrationError,
        PostgresUnavailableError,
    ) as error:
        print(f"suretynet: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # A file that is missing or unreadable (certificates, keys, configs).
        where = f": {error.filename}" if error.filename else ""
        print(f"suretynet: {error.strerror or error}{where}", file=sys.stderr)
        return 2
    except DomainError as error:
        # A node refused what this command (or a starting node) asked: its code and reason.
        print(f"suretynet: {error.kind.value} {error.reason}: {error.message}", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        remote = decode_rpc_error(error)
        print(f"suretynet: {remote.code.name} {remote.reason}: {remote.message}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
