"""Node configuration: one TOML file, with environment overrides for every key.

An override is ``SURETYNET_<KEY>`` for a top-level key and ``SURETYNET_<TABLE>__<KEY>`` for
a key inside a table, e.g. ``SURETYNET_DATABASE_URL`` or ``SURETYNET_LIMITS__CALL_TIMEOUT_S``.
Values in the environment are parsed as TOML values when they parse (numbers, booleans,
quoted strings) and taken as plain strings otherwise. Unknown keys are refused, so that a
typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodes.common.identity import NODE_ROLES, validate_entity_id
from nodes.common.options import OptionError, validate_options

ENV_PREFIX = "SURETYNET_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$")


class ConfigError(ValueError):
    """The configuration is unusable; the message names the key at fault."""


@dataclass(frozen=True)
class TlsConfig:
    """PEM files: the network CA, and this node's certificate and private key."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Limits:
    """Every bound the node enforces; defaults suit a small network on one host."""

    max_message_bytes: int = 4 * 1024 * 1024
    max_concurrent_rpcs: int = 256
    # Deadline for one outgoing call when the incoming call left more time than this.
    call_timeout_s: float = 5.0
    # Attempts for an idempotent outgoing call that failed with UNAVAILABLE.
    max_attempts: int = 3
    retry_backoff_s: float = 0.1
    # Address-correlation lookups are cached this long; bounds how fast info changes apply.
    identity_cache_ttl_s: float = 5.0
    identity_cache_entries: int = 1024
    database_workers: int = 4
    # Failed logins per member ID and source address within the window before that
    # address is refused for that member (nodes/common/credentials.py).
    login_max_failures: int = 5
    login_failure_window_s: float = 900.0
    # Failed logins per member ID from all addresses within the window beyond which
    # attempts from addresses the member never used are slowed (backoff up to the delay).
    login_member_max_failures: int = 20
    login_member_max_delay_s: float = 60.0
    shutdown_grace_s: float = 5.0
    enrollment_timeout_s: float = 30.0


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to start; see docs/OPERATIONS.md for each key."""

    role: str
    entity_id: str
    database_url: str
    name: str = ""
    listen_address: str = "127.0.0.1:0"
    # Where other nodes reach this node; port 0 means "the port actually bound".
    advertised_address: str = ""
    # Members (server-authenticated TLS, no client certificate) connect here.
    member_listen_address: str = ""
    insecure_dev: bool = False
    tls: TlsConfig | None = None
    approval_address: str = ""
    verification_address: str = ""
    # Every replica's address when this entity runs as several processes over one
    # database (this process's own among them); the first is the one it registers.
    replica_addresses: tuple[str, ...] = ()
    program_serial: str = ""
    ready_file: Path | None = None
    log_level: str = "INFO"
    # Operator certificates (suretynet://admin/ENTITY) this node accepts, by ENTITY: its
    # own organization's. Empty means the node's own entity ID. See docs/IDENTITY.md.
    operators: tuple[str, ...] = ()
    # The networks (CIDR) operator calls may come from; loopback unless configured.
    operator_networks: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    # The file holding the key that seals secrets this node stores (license keys, stored
    # answers); empty means beside a SQLite database, and is required for PostgreSQL.
    secrets_key_file: Path | None = None
    # Prometheus metrics over HTTP (GET /metrics); port 0 picks a free port; "" serves none.
    metrics_address: str = "127.0.0.1:0"
    # Spans go over OTLP/gRPC here (or to OTEL_EXPORTER_OTLP_ENDPOINT); "" with neither: none.
    otlp_endpoint: str = ""
    # Appends every finished span to this file as one JSON object per line.
    trace_file: Path | None = None
    limits: Limits = field(default_factory=Limits)
    # Role-specific settings, e.g. [retail] discovery = "directory"; read by the role.
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        return self.name or self.entity_id

    @property
    def accepted_operators(self) -> frozenset[str]:
        """The operator entity IDs this node accepts (its own entity ID unless configured)."""
        return frozenset(self.operators or (self.entity_id,))


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if path == ["venv"]:
            continue  # SURETYNET_VENV belongs to the bootstrap script, not to a node.
        target = data
        for table in path[:-1]:
            target = target.setdefault(table, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{name}: {table} is not a table")
        target[path[-1]] = _parse_env_value(raw)


def _number(kind: type, value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        number = kind(value)
    except ValueError as error:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from error
    if kind is int and isinstance(value, float) and number != value:
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    return number


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        kind = known[key].type
        if key in ("limits", "tls", "options") and not isinstance(value, dict):
            raise ConfigError(f"{where}.{key}: expected a table ([{key}])")
        if key == "limits":
            values[key] = _build(Limits, value, f"{where}.limits")
        elif key == "tls":
            for name, path in value.items():
                if not isinstance(path, str | Path):
                    raise ConfigError(f"{where}.tls.{name}: expected a file path (a string)")
            tls_values = {name: Path(path) for name, path in dict(value).items()}
            values[key] = _build(TlsConfig, tls_values, f"{where}.tls")
        elif key == "options":
            values[key] = dict(value)
        elif "tuple[str" in str(kind):
            if isinstance(value, str) or not all(isinstance(item, str) for item in value):
                raise ConfigError(f"{where}.{key}: expected a list of strings, got {value!r}")
            values[key] = tuple(value)
        elif "Path" in str(kind):
            values[key] = value if isinstance(value, Path) else Path(value)
        elif "float" in str(kind):
            values[key] = _number(float, value, f"{where}.{key}")
        elif "int" in str(kind):
            values[key] = _number(int, value, f"{where}.{key}")
        elif "bool" in str(kind):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
            values[key] = value
        elif str(kind) == "str" and not isinstance(value, str):
            raise ConfigError(f"{where}.{key}: expected a string, got {value!r}")
        else:
            values[key] = value
    try:
        return cls(**values)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from error


def parse_config(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Builds a NodeConfig from parsed TOML plus ``SURETYNET_*`` environment overrides."""
    merged: dict[str, Any] = {
        key: dict(value) if isinstance(value, dict) else value for key, value in data.items()
    }
    _apply_env(merged, os.environ if environ is None else environ)
    config: NodeConfig = _build(NodeConfig, merged, "config")
    _validate(config)
    try:
        options = validate_options(config.role, config.options)
    except OptionError as error:
        raise ConfigError(f"config.{error}") from error
    return dataclasses.replace(config, options=options, log_level=config.log_level.upper())


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Reads a node's TOML file; relative TLS and ready-file paths resolve against its folder."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from error
    config = parse_config(data, environ)
    base = path.parent

    def resolve(value: Path) -> Path:
        return value if value.is_absolute() else base / value

    if config.tls is not None:
        config = dataclasses.replace(
            config,
            tls=TlsConfig(
                resolve(config.tls.ca), resolve(config.tls.cert), resolve(config.tls.key)
            ),
        )
    if config.ready_file is not None:
        config = dataclasses.replace(config, ready_file=resolve(config.ready_file))
    if config.secrets_key_file is not None:
        config = dataclasses.replace(config, secrets_key_file=resolve(config.secrets_key_file))
    if config.trace_file is not None:
        config = dataclasses.replace(config, trace_file=resolve(config.trace_file))
    return config


def _validate_replicas(name: str, address: str) -> None:
    """One HOST:PORT, or several replicas as IP:PORT,IP:PORT (gRPC lists IPs only)."""
    parts = [part.strip() for part in address.split(",")] if address else []
    for part in parts:
        if not _HOST_PORT.match(part):
            raise ConfigError(f"config.{name}: {part!r} is not HOST:PORT (e.g. 10.0.0.14:7443)")
    if len(parts) > 1:
        for part in parts:
            try:
                ipaddress.ip_address(part.rsplit(":", 1)[0].strip("[]"))
            except ValueError:
                raise ConfigError(
                    f"config.{name}: {part!r}: replicas are listed by IP, not by host name"
                ) from None


def _validate(config: NodeConfig) -> None:
    if config.role not in NODE_ROLES:
        raise ConfigError(f"config.role: must be one of {', '.join(sorted(NODE_ROLES))}")
    try:
        validate_entity_id(config.entity_id)
    except ValueError as error:
        raise ConfigError(f"config.entity_id: {error}") from error
    if not config.database_url:
        raise ConfigError("config.database_url: is required")
    if config.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"config.log_level: must be one of {', '.join(LOG_LEVELS)}")
    for name in ("listen_address", "member_listen_address", "advertised_address"):
        address = getattr(config, name)
        if address and not _HOST_PORT.match(address):
            raise ConfigError(f"config.{name}: {address!r} is not HOST:PORT (e.g. 10.0.0.14:7443)")
    for name in ("approval_address", "verification_address"):
        _validate_replicas(name, getattr(config, name))
    if config.replica_addresses:
        _validate_replicas("replica_addresses", ",".join(config.replica_addresses))
        own = config.advertised_address or config.listen_address
        if not own.endswith(":0") and own not in config.replica_addresses:
            raise ConfigError(
                f"config.replica_addresses: must list this process's own address {own!r}"
            )
    if not config.insecure_dev and config.tls is None:
        raise ConfigError(
            "config.tls: is required (ca, cert, key); plaintext needs insecure_dev = true"
        )
    if config.role != "approval":
        if not config.approval_address:
            raise ConfigError("config.approval_address: is required for every node but approval")
        if config.role in ("retail", "settlement", "marketplace") and not config.program_serial:
            raise ConfigError("config.program_serial: is required to enrol with approval")
    for operator in config.operators:
        try:
            validate_entity_id(operator)
        except ValueError as error:
            raise ConfigError(f"config.operators: {error}") from error
    for network in config.operator_networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as error:
            raise ConfigError(f"config.operator_networks: {error}") from error
    if config.metrics_address:
        host, separator, port = config.metrics_address.rpartition(":")
        if not separator or not host or not port.isdigit():
            raise ConfigError(
                f'config.metrics_address: expected HOST:PORT (or "" for none), '
                f"got {config.metrics_address!r}"
            )
    limits = config.limits
    for name in (
        "max_message_bytes",
        "max_concurrent_rpcs",
        "max_attempts",
        "database_workers",
        "login_max_failures",
        "login_member_max_failures",
    ):
        if getattr(limits, name) < 1:
            raise ConfigError(f"config.limits.{name}: must be at least 1")
    for name in (
        "call_timeout_s",
        "identity_cache_ttl_s",
        "shutdown_grace_s",
        "login_failure_window_s",
        "login_member_max_delay_s",
    ):
        if getattr(limits, name) <= 0:
            raise ConfigError(f"config.limits.{name}: must be positive")
