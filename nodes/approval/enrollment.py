"""Enrollment use cases (seed 001 claims 4-7, 13-16, 22-25): serials, registration, keys.

Plain functions over ApprovalRepository; each runs inside one transaction. They raise
DomainError for every refusal and never import gRPC.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from nodes.common import routing
from nodes.common.errors import DomainError, ErrorKind, Violations
from nodes.common.identity import EntityIdentity, host_ip
from storage.approval.models import EntityRow, LicenseKeyRow, ProgramSerialRow
from storage.approval.repository import ApprovalRepository
from storage.common.models import utc_now

ENROLLABLE_ROLES = ("retail", "settlement", "marketplace")
LICENSE_KEY_PREFIX = "snlk"
# last_seen_at is a heartbeat, not an audit log: one write a minute per key is plenty.
LAST_SEEN_RESOLUTION = datetime.timedelta(seconds=60)
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
# A shop stores an agency's route (every replica's address, joined) in 128 characters.
MAX_REPLICA_ADDRESSES_LENGTH = 128


@dataclass(frozen=True)
class LicensePolicy:
    """How long keys live, and how long a rotated-out key keeps working."""

    validity: datetime.timedelta = datetime.timedelta(days=365)
    rotation_grace: datetime.timedelta = datetime.timedelta(minutes=5)


@dataclass
class Registration:
    """What a node sends in its registration request (claims 4, 5)."""

    program_serial: str
    role: str
    entity_id: str
    display_name: str
    address: str
    routing_prefix: str = ""
    discovery_variant: str = ""
    payment_methods: list[str] = field(default_factory=list)
    currency_codes: list[str] = field(default_factory=list)
    private_details: dict[str, str] = field(default_factory=dict)
    program_version: str = ""
    # Every replica's address when the node runs as several processes; empty for one.
    replica_addresses: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IssuedKey:
    """A license key as handed to its holder: the only time the secret is visible."""

    key: str
    row: LicenseKeyRow


@dataclass
class InformationChange:
    """Fields to change in a registry entry (claims 6, 7); None leaves a field as it is."""

    display_name: str | None = None
    address: str | None = None
    routing_prefix: str | None = None
    discovery_variant: str | None = None
    payment_methods: list[str] | None = None
    currency_codes: list[str] | None = None
    private_details: dict[str, str] | None = None
    replica_addresses: list[str] | None = None


def issue_serial(repo: ApprovalRepository, *, role: str, note: str = "") -> ProgramSerialRow:
    """Issues a new program serial for ``role`` (the institution's admin command)."""
    if role not in ENROLLABLE_ROLES:
        raise DomainError(
            ErrorKind.INVALID_ARGUMENT,
            "FIELD_INVALID",
            f"role: serials are issued for {', '.join(ENROLLABLE_ROLES)}",
        )
    serial = f"SN-{role[:3].upper()}-" + "-".join(secrets.token_hex(2).upper() for _ in range(3))
    row: ProgramSerialRow = repo.serials.create(serial=serial, role=role, note=note[:200])
    return row


def _check_address(violations: Violations, field_path: str, address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        host_ip(address)
    except ValueError:
        violations.add(field_path, "must be IP:port (the IP other nodes see this node call from)")
        return
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        violations.add(field_path, "must end in a port between 1 and 65535")


def registered_addresses(row: EntityRow) -> list[str]:
    """Every address the entity serves and calls from: its replicas', or its one address."""
    replicas = [part for part in row.replica_addresses.split(",") if part]
    return replicas or [row.address]


def _check_replicas(
    violations: Violations, field_path: str, address: str | None, replicas: list[str]
) -> None:
    """A replica set lists distinct IP:port addresses, the registered address among them,
    and fits what every shop stores as an agency's route."""
    for index, replica in enumerate(replicas):
        _check_address(violations, f"{field_path}[{index}]", replica)
    if len(set(replicas)) != len(replicas):
        violations.add(field_path, "must not list an address twice")
    if replicas and address is not None and address not in replicas:
        violations.add(field_path, "must include the registered address")
    if len(",".join(replicas)) > MAX_REPLICA_ADDRESSES_LENGTH:
        violations.add(
            field_path, f"must take at most {MAX_REPLICA_ADDRESSES_LENGTH} characters joined"
        )


def _validate_registration(request: Registration) -> None:
    violations = Violations()
    violations.require("program_serial", request.program_serial)
    violations.require("entity_id", request.entity_id)
    violations.require("display_name", request.display_name)
    if request.role not in ENROLLABLE_ROLES:
        violations.add("role", "must be ROLE_RETAIL, ROLE_SETTLEMENT or ROLE_MARKETPLACE")
    if request.address:
        _check_address(violations, "address", request.address)
    else:
        violations.add("address", "is required")
    _check_replicas(violations, "replica_addresses", request.address, request.replica_addresses)
    if request.role == "settlement":
        if not routing.PATTERN.match(request.routing_prefix):
            violations.add("routing_prefix", f"{routing.DESCRIPTION} for a settlement agency")
    elif request.routing_prefix:
        violations.add("routing_prefix", "only settlement agencies have a routing prefix")
    if request.role == "retail":
        if not request.discovery_variant:
            violations.add("discovery_variant", "is required for a retail entity")
        if not request.payment_methods:
            violations.add("accepted_payment_methods", "a retail entity accepts at least one")
        for index, code in enumerate(request.currency_codes):
            if not CURRENCY_PATTERN.match(code):
                violations.add(f"accepted_currency_codes[{index}]", "must be an ISO 4217 code")
    violations.raise_if_any()


def _check_routing_prefix_free(repo: ApprovalRepository, prefix: str, owner: str) -> None:
    # Prefixes must not nest either: "4000" and "40001" would make routing ambiguous.
    for row in repo.entities.select().where(repo.entities.routing_prefix.is_null(False)):
        if row.entity_id == owner or row.routing_prefix is None:
            continue
        if row.routing_prefix.startswith(prefix) or prefix.startswith(row.routing_prefix):
            raise DomainError(
                ErrorKind.ALREADY_EXISTS,
                "FIELD_INVALID",
                f"routing_prefix {prefix} overlaps {row.routing_prefix} of {row.entity_id}",
                metadata={"field": "routing_prefix"},
            )


def register_entity(
    repo: ApprovalRepository,
    request: Registration,
    *,
    caller: EntityIdentity,
    caller_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    policy: LicensePolicy,
) -> tuple[EntityRow, IssuedKey]:
    """Registers a node and issues its license key (claims 4, 5, 13, 14, 22, 23).

    Refuses an unknown serial, a serial already registered, a serial for another role,
    an entity registered before, a certificate naming someone else, and an address other
    than the one the caller calls from.
    """
    _validate_registration(request)
    if caller.role != request.role or caller.entity_id != request.entity_id:
        raise DomainError(
            ErrorKind.PERMISSION_DENIED,
            "CERTIFICATE_ENTITY_MISMATCH",
            f"certificate names {caller.uri}, request registers {request.role}/{request.entity_id}",
        )
    addresses = request.replica_addresses or [request.address]
    if caller_ip is not None and caller_ip not in [host_ip(address) for address in addresses]:
        registered = ",".join(addresses)
        raise DomainError(
            ErrorKind.PERMISSION_DENIED,
            "ADDRESS_MISMATCH",
            f"address {registered} is not the address the call came from ({caller_ip})",
            metadata={"registered": registered, "observed": str(caller_ip)},
        )
    serial = repo.serial(request.program_serial)
    if serial is None:
        raise DomainError(
            ErrorKind.NOT_FOUND,
            "SERIAL_UNKNOWN",
            "program_serial was never issued by the institution",
            metadata={"field": "program_serial"},
        )
    if serial.registered_entity_id is not None:
        raise DomainError(
            ErrorKind.ALREADY_EXISTS,
            "SERIAL_ALREADY_REGISTERED",
            f"program_serial was already registered by {serial.registered_entity_id}",
            metadata={"field": "program_serial"},
        )
    if serial.role != request.role:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "SERIAL_ROLE_MISMATCH",
            f"program_serial was issued for role {serial.role}, not {request.role}",
            metadata={"field": "program_serial"},
        )
    now = utc_now()
    existing = repo.entity(request.entity_id)
    if existing is not None and (
        existing.role != request.role or _usable_key_ids(repo, request.entity_id, now)
    ):
        raise DomainError(
            ErrorKind.ALREADY_EXISTS,
            "ENTITY_ALREADY_REGISTERED",
            f"entity {request.entity_id} is already registered and holds a usable license "
            "key; an entity registers again only once its keys are revoked or expired",
        )
    if request.routing_prefix:
        _check_routing_prefix_free(repo, request.routing_prefix, request.entity_id)
    values: dict[str, Any] = {
        "role": request.role,
        "display_name": request.display_name,
        "address": request.address,
        "replica_addresses": ",".join(request.replica_addresses),
        "routing_prefix": request.routing_prefix or None,
        "discovery_variant": request.discovery_variant,
        "payment_methods_json": json.dumps(request.payment_methods),
        "currency_codes_json": json.dumps(request.currency_codes),
        "private_details_json": json.dumps(request.private_details, sort_keys=True),
        "program_serial": request.program_serial,
        "program_version": request.program_version,
        "registry_serial": repo.next_registry_serial(),
        "updated_at": now,
    }
    entity: EntityRow
    if existing is None:
        entity = repo.entities.create(entity_id=request.entity_id, registered_at=now, **values)
    else:
        # The way back for a revoked (or lapsed) node: a new serial from the institution
        # re-registers the same entity with a new key; its status is left to the
        # institution (a suspension stays until it lifts it).
        for name, value in values.items():
            setattr(existing, name, value)
        existing.save()
        entity = existing
    serial.registered_entity_id = request.entity_id
    serial.registered_at = now
    serial.save()
    return entity, _issue_key(repo, request.entity_id, now, policy)


def _usable_key_ids(repo: ApprovalRepository, entity_id: str, now: datetime.datetime) -> list[str]:
    """The entity's keys that approval would still accept (active or in rotation grace)."""
    rows = repo.license_keys.select().where(repo.license_keys.entity_id == entity_id)
    return [row.key_id for row in rows if license_key_state(row, now) in ("ACTIVE", "GRACE")]


def _issue_key(
    repo: ApprovalRepository, entity_id: str, now: datetime.datetime, policy: LicensePolicy
) -> IssuedKey:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row: LicenseKeyRow = repo.license_keys.create(
        key_id=key_id,
        secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
        entity_id=entity_id,
        issued_at=now,
        expires_at=now + policy.validity,
    )
    return IssuedKey(f"{LICENSE_KEY_PREFIX}_{key_id}_{secret}", row)


def _unauthenticated(reason: str, message: str) -> DomainError:
    return DomainError(ErrorKind.UNAUTHENTICATED, reason, message)


def license_key_state(row: LicenseKeyRow, now: datetime.datetime) -> str:
    """ACTIVE, GRACE (rotated out, still honoured), REVOKED or EXPIRED."""
    if row.revoked_at is not None:
        return "REVOKED"
    if row.superseded_by is not None:
        return "GRACE" if row.grace_until is not None and now < row.grace_until else "EXPIRED"
    return "EXPIRED" if now >= row.expires_at else "ACTIVE"


def authenticate_license_key(
    repo: ApprovalRepository, presented: str | None, caller: EntityIdentity
) -> LicenseKeyRow:
    """Checks the key a node presents on a call to approval (claims 4-5, last element).

    Missing, malformed or unknown keys, revoked keys, expired keys and keys of another
    entity are all refused with UNAUTHENTICATED and their own reason. Records last use.
    """
    if not presented:
        raise _unauthenticated(
            "LICENSE_KEY_MISSING", "send the license key as x-suretynet-license-key metadata"
        )
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != LICENSE_KEY_PREFIX:
        raise _unauthenticated("LICENSE_KEY_UNKNOWN", "the license key is not one approval issued")
    row = repo.license_key(parts[1])
    digest = hashlib.sha256(parts[2].encode()).hexdigest()
    if row is None or not hmac.compare_digest(row.secret_sha256, digest):
        raise _unauthenticated("LICENSE_KEY_UNKNOWN", "the license key is not one approval issued")
    if row.entity_id != caller.entity_id:
        raise _unauthenticated(
            "LICENSE_KEY_ENTITY_MISMATCH",
            f"the license key belongs to another entity than {caller.uri}",
        )
    now = utc_now()
    check_license_key_state(row, now)
    if row.last_seen_at is None or now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
        repo.license_keys.update(last_seen_at=now).where(
            repo.license_keys.key_id == row.key_id
        ).execute()
        row.last_seen_at = now
    return row


def check_license_key_state(row: LicenseKeyRow, now: datetime.datetime) -> None:
    """Refuses a revoked or expired key (also one rotated out whose grace has ended)."""
    state = license_key_state(row, now)
    if state == "REVOKED":
        raise _unauthenticated("LICENSE_KEY_REVOKED", f"revoked: {row.revocation_reason}")
    if state == "EXPIRED":
        raise _unauthenticated("LICENSE_KEY_EXPIRED", "the license key expired; rotate or re-enrol")


def rotate_license_key(
    repo: ApprovalRepository, current: LicenseKeyRow, policy: LicensePolicy
) -> tuple[IssuedKey, LicenseKeyRow]:
    """Issues a new key; the presented one keeps working for the rotation grace period."""
    if current.superseded_by is not None:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "LICENSE_KEY_EXPIRED",
            "this key was already rotated; rotate with the newest key",
        )
    now = utc_now()
    issued = _issue_key(repo, current.entity_id, now, policy)
    current.superseded_by = issued.row.key_id
    current.grace_until = min(now + policy.rotation_grace, current.expires_at)
    current.save()
    return issued, current


def revoke_license_key(repo: ApprovalRepository, key_id: str, reason: str) -> LicenseKeyRow:
    """Revokes a key at once; every later call presenting it gets LICENSE_KEY_REVOKED."""
    row = repo.license_key(key_id)
    if row is None:
        raise DomainError(ErrorKind.NOT_FOUND, "LICENSE_KEY_UNKNOWN", f"no license key {key_id}")
    if row.revoked_at is None:
        row.revoked_at = utc_now()
        row.revocation_reason = reason[:200] or "revoked by the institution"
        row.save()
    return row


def _entity_of_role(repo: ApprovalRepository, entity_id: str, role: str) -> EntityRow:
    entity = repo.entity(entity_id)
    if entity is None or entity.role != role:
        raise DomainError(
            ErrorKind.NOT_FOUND, "ENTITY_NOT_FOUND", f"no registered {role} entity {entity_id!r}"
        )
    return entity


def change_information(
    repo: ApprovalRepository,
    *,
    role: str,
    entity_id: str,
    change: InformationChange,
    caller: EntityIdentity,
    source_ip: str = "",
) -> EntityRow:
    """Applies an information change request (claims 6, 7, 15, 16, 24, 25).

    An entity may change only its own entry, and (address correlation, before this runs)
    only from its current registered address; the institution's operators, the only
    operators approval accepts, may change any. Each change is recorded with who made it
    and from where, and bumps the registry serial so push and cache subscribers see it.
    """
    if caller.role != "admin" and (caller.role != role or caller.entity_id != entity_id):
        raise DomainError(
            ErrorKind.PERMISSION_DENIED,
            "NOT_OWNER",
            f"{caller.uri} may change only its own registry entry, not {role}/{entity_id}",
        )
    entity = _entity_of_role(repo, entity_id, role)
    violations = Violations()
    if change.display_name is not None and not change.display_name.strip():
        violations.add("change.display_name", "must not be empty")
    if change.address is not None:
        _check_address(violations, "change.address", change.address)
    if change.replica_addresses is not None:
        _check_replicas(
            violations,
            "change.replica_addresses",
            change.address if change.address is not None else entity.address,
            change.replica_addresses,
        )
    elif (
        change.address is not None
        and entity.replica_addresses
        and change.address not in entity.replica_addresses.split(",")
    ):
        violations.add("change.address", "must be one of the replica addresses, or change them too")
    if change.routing_prefix is not None:
        if role != "settlement":
            violations.add("change.routing_prefix", "only settlement agencies have one")
        elif not routing.PATTERN.match(change.routing_prefix):
            violations.add("change.routing_prefix", routing.DESCRIPTION)
    if change.payment_methods is not None and not change.payment_methods:
        violations.add("change.accepted_payment_methods", "a retail entity accepts at least one")
    violations.raise_if_any()
    if change.routing_prefix is not None:
        _check_routing_prefix_free(repo, change.routing_prefix, entity_id)
    updates: dict[str, Any] = {
        "display_name": change.display_name,
        "address": change.address,
        "routing_prefix": change.routing_prefix,
        "discovery_variant": change.discovery_variant,
    }
    previous_address = entity.address
    for name, value in updates.items():
        if value is not None:
            setattr(entity, name, value)
    if change.payment_methods is not None:
        entity.payment_methods_json = json.dumps(change.payment_methods)
    if change.currency_codes is not None:
        entity.currency_codes_json = json.dumps(change.currency_codes)
    if change.private_details is not None:
        entity.private_details_json = json.dumps(change.private_details, sort_keys=True)
    if change.replica_addresses is not None:
        entity.replica_addresses = ",".join(change.replica_addresses)
    entity.registry_serial = repo.next_registry_serial()
    entity.updated_at = utc_now()
    entity.save()
    repo.registry_changes.create(
        entity_id=entity_id,
        changed_by=caller.uri,
        source_ip=source_ip,
        previous_address=previous_address,
        address=entity.address,
        registry_serial=entity.registry_serial,
    )
    return entity


def set_entity_status(
    repo: ApprovalRepository, entity_id: str, status: str, reason: str
) -> EntityRow:
    """Suspends, reactivates or terminates an entity; a suspended one fails guarantees."""
    entity = repo.entity(entity_id)
    if entity is None:
        raise DomainError(ErrorKind.NOT_FOUND, "ENTITY_NOT_FOUND", f"no entity {entity_id!r}")
    if status not in ("ACTIVE", "SUSPENDED", "TERMINATED"):
        raise DomainError(
            ErrorKind.INVALID_ARGUMENT, "FIELD_INVALID", "status: ACTIVE, SUSPENDED or TERMINATED"
        )
    entity.status = status
    entity.status_reason = reason[:200]
    entity.registry_serial = repo.next_registry_serial()
    entity.updated_at = utc_now()
    entity.save()
    return entity


def get_entity(repo: ApprovalRepository, entity_id: str) -> EntityRow:
    entity = repo.entity(entity_id)
    if entity is None:
        raise DomainError(ErrorKind.NOT_FOUND, "ENTITY_NOT_FOUND", f"no entity {entity_id!r}")
    return entity
