"""Running one node: build its role, open its database, enrol, serve, shut down cleanly.

Start-up order: open the database and apply its pending schema migrations (refusing a
schema newer than this code); bind the ports; enrol with approval if this node holds no
license key yet (claims 4-5: first start after installation); start serving; report
SERVING on health; write the ready file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peewee

from nodes.common import failpoints, logs, metrics, telemetry
from nodes.common.channels import Channels
from nodes.common.config import ConfigError, NodeConfig
from nodes.common.correlation import (
    AddressCorrelation,
    AddressLookup,
    RegisteredAddressCache,
    remote_lookup,
)
from nodes.common.interceptor import CallCheck, NodeInterceptor, RpcPolicy
from nodes.common.license import LicenseKeeper
from nodes.common.operators import OperatorAuthority
from nodes.common.secrets import SecretBox, SecretsKeyError, ephemeral_box, load_or_create_key
from nodes.common.server import NodeServer, Service, address_with_port
from storage.common import statements
from storage.common.database import Store, bind, open_database
from storage.common.models import (
    NodeCredential,
    NodeEnrollment,
    utc_now,
)

log = logging.getLogger(__name__)


@dataclass
class NodeRuntime:
    """What every role's code gets: its config, database, and channels to peers."""

    config: NodeConfig
    store: Store
    channels: Channels
    # Filled in once the ports are bound.
    address: str = ""
    member_address: str = ""
    metrics_address: str = ""


@dataclass
class RoleParts:
    """What a role contributes to a node: services, their policies, tables and hooks."""

    services: Sequence[Service]
    policies: dict[str, RpcPolicy]
    # The role's current tables; the schema itself comes from storage/<role>/migrations.
    tables: Sequence[type[peewee.Model]]
    credential_table: type[NodeCredential] | None = None
    checks: Sequence[CallCheck] = ()
    # Builds the RegisterEntityRequest for first start; None for approval and verification.
    registration: Callable[[NodeRuntime], Any] | None = None
    on_serving: Callable[[], Awaitable[None]] | None = None
    on_stop: Callable[[], Awaitable[None]] | None = None
    # Where registered addresses come from; None means "ask approval" (every node but it).
    address_lookup: AddressLookup | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)


def load_role(runtime: NodeRuntime) -> RoleParts:
    """Imports ``nodes.<role>.node`` and asks it to build the role's parts."""
    module = importlib.import_module(f"nodes.{runtime.config.role}.node")
    parts: RoleParts = module.build(runtime)
    return parts


class Node:
    """One running node; ``start`` returns once it serves, ``stop`` drains and closes."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.secret_box = node_secret_box(config)
        _create_private_database_file(config.database_url)
        failpoints.configure(config.entity_id)
        workers = config.limits.database_workers
        self.store = Store(
            open_database(config.database_url, max_connections=workers), workers=workers
        )
        self.runtime = NodeRuntime(config=config, store=self.store, channels=Channels(config))
        self.parts = load_role(self.runtime)
        # Every table that declares a secret_box (stored answers, the license key, the
        # agency's anonymous-ID key) seals its secrets under this node's key.
        for table in self.parts.tables:
            if hasattr(table, "secret_box"):
                table.secret_box = self.secret_box
        self.interceptor = NodeInterceptor(
            self.parts.policies, self.parts.checks, insecure_dev=config.insecure_dev
        )
        lookup = self.parts.address_lookup or remote_lookup(
            self.runtime.channels, config.approval_address
        )
        self.correlation = AddressCorrelation(
            RegisteredAddressCache(
                lookup,
                ttl_s=config.limits.identity_cache_ttl_s,
                max_entries=config.limits.identity_cache_entries,
            ),
            institution_addresses={
                role: address
                for role, address in (
                    ("approval", config.approval_address),
                    ("verification", config.verification_address),
                )
                if address
            },
        )
        self.interceptor.add_check(self.correlation, first=True)
        self.interceptor.add_check(
            OperatorAuthority(config.accepted_operators, config.operator_networks), first=True
        )
        self.server = NodeServer(config, self.parts.services, self.interceptor)
        self._metrics: metrics.MetricsServer | None = None
        self.keeper: LicenseKeeper | None = None
        if self.parts.registration is not None and self.parts.credential_table is not None:
            self.keeper = LicenseKeeper(
                self.runtime, self.parts.credential_table, self._license_usable
            )
            keeper = self.keeper
            self.runtime.channels.license_key = lambda: keeper.key
            self.runtime.channels.on_license_answer = keeper.answer
            metrics.watch_license_key(lambda: keeper.expires_at)

    async def start(self) -> None:
        config = self.config
        applied = await self.store.migrate(config.role)
        for step in applied:
            logs.event(log, "schema migrated", version=step.version, step=step.name)
        self._check_certificate()
        self.server.bind()
        self.runtime.address = (
            address_with_port(config.advertised_address or config.listen_address, self.server.port)
            if _port_of(config.advertised_address) in ("", "0")
            else config.advertised_address
        )
        if self.server.member_port:
            self.runtime.member_address = address_with_port(
                config.member_listen_address, self.server.member_port
            )
        self._start_metrics()
        await self.server.start()
        if self.parts.registration is not None and not await self._enrol():
            await self.announce_information()
        if self.parts.on_serving is not None:
            await self.parts.on_serving()
        await self._refresh_health()
        self.store.health_listeners.append(lambda _healthy: self._refresh_health())
        if self.keeper is not None:
            self.parts.background.append(asyncio.create_task(self.keeper.run()))
        logs.event(
            log,
            "serving",
            role=config.role,
            entity_id=config.entity_id,
            address=self.runtime.address,
            member_address=self.runtime.member_address,
            metrics_address=self.runtime.metrics_address,
        )
        if config.ready_file is not None:
            _write_json_atomically(
                config.ready_file,
                {
                    "role": config.role,
                    "entity_id": config.entity_id,
                    "address": self.runtime.address,
                    "member_address": self.runtime.member_address,
                    "metrics_address": self.runtime.metrics_address,
                    "pid": os.getpid(),
                },
            )

    def _start_metrics(self) -> None:
        config = self.config
        metrics.node_info(config.role, config.entity_id)
        if config.tls is not None:
            metrics.watch_certificate("node", config.tls.cert)
            metrics.watch_certificate("ca", config.tls.ca)
        if config.metrics_address:
            self._metrics = metrics.serve(config.metrics_address)
            self.runtime.metrics_address = self._metrics.address

    def _check_certificate(self) -> None:
        """Refuses to start with a certificate peers would reject (wrong IP, entity, dates)."""
        from nodes.common import pki
        from nodes.common.config import ConfigError

        config = self.config
        if config.insecure_dev or config.tls is None:
            return
        addresses = [config.advertised_address or config.listen_address]
        if config.member_listen_address:
            addresses.append(config.member_listen_address)
        for address in addresses:
            try:
                pki.check_node_certificate(
                    config.tls.cert.read_bytes(),
                    role=config.role,
                    entity_id=config.entity_id,
                    address=address,
                )
            except pki.CertificateError as error:
                raise ConfigError(f"config.tls.cert ({config.tls.cert}): {error}") from error

    async def announce_information(self) -> Any:
        """Compares installation info with approval's registry and sends any change (claims
        6-7); see nodes/common/announce.py. Returns the Announcement."""
        from nodes.common.announce import announce

        assert self.parts.registration is not None
        return await announce(self.runtime, self.parts.registration(self.runtime))

    async def _enrol(self) -> bool:
        """Registers with approval on first start; later starts reuse the stored key.

        A program serial in the config other than the one the node registered with (the
        way back for a revoked node) registers again and replaces the stored key. Returns
        True when it registered now (the registration carried the installation info).
        """
        table = self.parts.credential_table
        keeper = self.keeper
        assert table is not None and self.parts.registration is not None and keeper is not None
        enrollments = bind(self.store.database, NodeEnrollment)
        entity_id, serial = self.config.entity_id, self.config.program_serial

        def stored_state() -> tuple[Any, str]:
            row = statements.find(table, entity_id=entity_id)
            enrolled = statements.find(enrollments, entity_id=entity_id)
            if row is not None and enrolled is None:
                # Registered before serials were recorded: with the serial configured now.
                enrolled = enrollments.create(entity_id=entity_id, program_serial=serial)
            return row, enrolled.program_serial if enrolled is not None else ""

        stored, enrolled_serial = await self.store.run(stored_state)
        if stored is not None and enrolled_serial == serial:
            keeper.hold(stored)
            return False
        from nodes.common.enrollment_client import register

        logs.trace_id_var.set(enrollment_trace_id(entity_id))
        if stored is not None:
            logs.event(
                log,
                "re-registering with a new program serial",
                logging.WARNING,
                previous_program_serial=enrolled_serial,
                program_serial=serial,
            )
        request = self.parts.registration(self.runtime)
        # The request ID is derived from the serial, so a crash between approval's answer
        # and our commit is healed by asking again: approval returns the same key.
        request.request_id = (
            "enrol-" + hashlib.sha256(f"{serial}/{entity_id}".encode()).hexdigest()[:32]
        )
        response = await register(self.runtime, request)

        def save() -> Any:
            with self.store.database.atomic():
                table.delete().where(table.entity_id == entity_id).execute()
                row = table.create(
                    entity_id=entity_id,
                    license_key=response.license_key,
                    license_key_id=response.license_key_id,
                    expires_at=response.expires_at.ToDatetime(),
                    updated_at=utc_now(),
                )
                # An upsert both engines have (PostgreSQL has no INSERT OR REPLACE).
                now = utc_now()
                enrollments.insert(
                    entity_id=entity_id, program_serial=serial, enrolled_at=now
                ).on_conflict(
                    conflict_target=[enrollments.entity_id],
                    update={enrollments.program_serial: serial, enrollments.enrolled_at: now},
                ).execute()
                return row

        keeper.hold(await self.store.run(save))
        logs.event(log, "enrolled", license_key_id=response.license_key_id)
        return True

    def replace_license_key(self, key: str) -> None:
        if self.keeper is not None:
            self.keeper.key = key

    async def _license_usable(self, usable: bool) -> None:
        await self._refresh_health()

    async def _refresh_health(self) -> None:
        """SERVING only while the node can do its work: its database can be written and
        approval accepts its license key."""
        usable = self.keeper is None or self.keeper.usable
        await self.server.set_serving(self.store.healthy and usable)

    async def stop(self) -> None:
        for task in self.parts.background:
            task.cancel()
        for task in self.parts.background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.parts.on_stop is not None:
            await self.parts.on_stop()
        await self.server.stop()
        await self.runtime.channels.close()
        self.store.close()
        if self._metrics is not None:
            self._metrics.close()


def read_license_key(database: Path, entity_id: str) -> str:
    """The license key a node on a SQLite file holds, opened with the key file beside it.

    For operators and tools with access to the node's data directory (the fuzz harness,
    tests that act as a node): the key is sealed in the database.
    """
    import sqlite3

    box = load_or_create_key(database.with_name(database.name + ".secrets.key"))
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        (stored,) = connection.execute(
            "select license_key from node_credential where entity_id = ?", (entity_id,)
        ).fetchone()
    # The context SealedCharField seals node_credential.license_key under.
    return box.open_text(str(stored), "node_credential.license_key")


def sqlite_path(database_url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL; None for in-memory and other databases."""
    if not database_url.startswith("sqlite:///"):
        return None
    path = database_url[len("sqlite:///") :]
    return None if path in ("", ":memory:") else Path(path)


def node_secret_box(config: NodeConfig) -> SecretBox:
    """The key that seals this node's stored secrets (nodes/common/secrets.py)."""
    path = config.secrets_key_file
    if path is None:
        database = sqlite_path(config.database_url)
        if database is None:
            if config.database_url.startswith("sqlite:///"):
                return ephemeral_box()  # an in-memory database dies with the process
            raise ConfigError(
                "config.secrets_key_file: is required when the database is not a SQLite file"
            )
        path = database.with_name(database.name + ".secrets.key")
    try:
        return load_or_create_key(path)
    except SecretsKeyError as error:
        raise ConfigError(f"config.secrets_key_file: {error}") from error


def _create_private_database_file(database_url: str) -> None:
    """Creates a SQLite database file owner-only (0600) before SQLite opens it; its WAL and
    shared-memory files take the same mode. It holds password hashes and sealed secrets."""
    path = sqlite_path(database_url)
    if path is None:
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    path.chmod(0o600)


def enrollment_trace_id(entity_id: str) -> str:
    """The trace ID of a node's enrollment, so its messages can be found in the logs."""
    return logs.trace_id_for(f"enrol-{entity_id}")


def _port_of(address: str) -> str:
    return address.rsplit(":", 1)[1] if ":" in address else ""


def _write_json_atomically(path: Any, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


async def run_until_signalled(config: NodeConfig) -> None:
    """Runs a node until SIGTERM or SIGINT, then shuts it down gracefully."""
    # Everything the node writes (database, WAL, key file, ready file) is its own alone.
    os.umask(0o077)
    logs.configure(f"{config.role}/{config.entity_id}", level=config.log_level)
    telemetry.configure(
        f"{config.role}/{config.entity_id}",
        otlp_endpoint=config.otlp_endpoint,
        trace_file=config.trace_file,
    )
    # Start-up and shutdown are not part of any flow: they get the node's own trace ID,
    # logs.trace_id_for("node-ENTITY"), so every line still carries one.
    logs.trace_id_var.set(f"node-{config.entity_id}")
    node = Node(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    announcements: set[asyncio.Task[Any]] = set()

    def change_info() -> None:
        # SIGHUP (`suretynet node change-info`): compare and announce again, in the
        # background; the task set keeps a reference until it is done.
        if node.parts.registration is None:
            logs.event(log, "SIGHUP ignored: this role has no registry entry of its own")
            return
        task = asyncio.ensure_future(node.announce_information())
        announcements.add(task)
        task.add_done_callback(announcements.discard)

    def rotate_key() -> None:
        # SIGUSR1 (`suretynet node rotate-key`): rotate the license key now.
        if node.keeper is None:
            logs.event(log, "SIGUSR1 ignored: this role holds no license key")
            return
        task = asyncio.ensure_future(node.keeper.rotate_now())
        announcements.add(task)
        task.add_done_callback(announcements.discard)

    try:
        await node.start()
    except BaseException:
        # A node that cannot start (enrolment refused, approval unreachable) still closes
        # its server and database, so the process ends with the reason alone.
        with contextlib.suppress(Exception):
            await node.stop()
        raise
    loop.add_signal_handler(signal.SIGHUP, change_info)
    loop.add_signal_handler(signal.SIGUSR1, rotate_key)
    await stopping.wait()
    logs.event(log, "stopping", grace_s=config.limits.shutdown_grace_s)
    await node.stop()
    telemetry.shutdown()
    logs.event(log, "stopped")


def declared_services(
    module: Any, grpc_module: Any, roles: Sequence[str]
) -> tuple[list[Service], dict[str, RpcPolicy]]:
    """Every service of a generated module, served by its generated base servicer.

    The base servicer answers UNIMPLEMENTED: the protocol is complete, the behaviour lands
    issue by issue. ``roles`` may call them (so they learn UNIMPLEMENTED, not a refusal).
    """
    from nodes.common.interceptor import policy

    services: list[Service] = []
    policies: dict[str, RpcPolicy] = {}
    for name, descriptor in module.DESCRIPTOR.services_by_name.items():
        services.append(
            Service(
                descriptor.full_name,
                getattr(grpc_module, f"{name}Servicer")(),
                getattr(grpc_module, f"add_{name}Servicer_to_server"),
            )
        )
        for method in descriptor.methods:
            policies[f"/{descriptor.full_name}/{method.name}"] = policy(*roles)
    return services, policies
