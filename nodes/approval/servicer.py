"""Approval's gRPC adapters: proto in, use case, proto out. No business rules live here."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import grpc
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.approval import enrollment, export
from nodes.approval.enrollment import InformationChange, LicensePolicy, Registration
from nodes.common import flow_export
from nodes.common.calls import call_info, certificate_caller
from nodes.common.channels import LICENSE_KEY_METADATA_KEY
from nodes.common.convert import (
    enum_label,
    enum_value,
    timestamp,
)
from nodes.common.errors import DomainError, ErrorKind, required
from nodes.common.idempotency import serve_once
from nodes.common.interceptor import policy
from nodes.common.paging import by_key
from storage.approval.models import EntityRow, LicenseKeyRow, ProgramSerialRow
from storage.approval.repository import ApprovalRepository
from storage.common.database import Store
from storage.common.models import utc_now

Role = types_pb2.Role
EntityStatus = types_pb2.EntityStatus
DiscoveryVariant = types_pb2.DiscoveryVariant
PaymentMethod = types_pb2.PaymentMethod

ENROLLMENT = "/suretynet.approval.v1.EnrollmentService/"
ADMIN = "/suretynet.approval.v1.ApprovalAdminService/"
DIRECTORY = "/suretynet.approval.v1.DirectoryService/"
TRANSACTION = "/suretynet.approval.v1.TransactionService/"
NODES = ("retail", "settlement", "marketplace")

# Who may call what at approval. Enrolled roles also present a license key on every call
# except the registration that obtains it.
POLICIES = {
    # Not correlated: the caller is not registered yet; register_entity checks the address.
    ENROLLMENT + "RegisterEntity": policy(*NODES, correlate=False),
    ENROLLMENT + "RotateLicenseKey": policy(*NODES, license_key=True),
    ENROLLMENT + "ChangeRetailEntityInformation": policy("retail", "admin", license_key=True),
    ENROLLMENT + "ChangeSettlementAgencyInformation": policy(
        "settlement", "admin", license_key=True
    ),
    ENROLLMENT + "ChangeMarketplaceInformation": policy("marketplace", "admin", license_key=True),
    ENROLLMENT + "GetRegisteredInformation": policy(*NODES, license_key=True),
    **{
        ADMIN + name: policy("admin")
        for name in (
            "IssueProgramSerial",
            "ListProgramSerials",
            "RevokeLicenseKey",
            "ListLicenseKeys",
            "SetEntityStatus",
            "GetEntity",
            "ListEntities",
            "ExportFlowRecords",
            "ExportAuditChain",
            "ListAuditedRecords",
        )
    },
    # Least privilege: each look-up is open to the roles whose flow needs it (and to the
    # institution's operators, for debugging with grpcurl).
    DIRECTORY + "GetPaymentInformation": policy("settlement", "retail", "admin", license_key=True),
    DIRECTORY + "SearchSettlementAgencyIdentification": policy("retail", "admin", license_key=True),
    # Shops under push catch up from it; agencies serve claim 19's pull from it.
    DIRECTORY + "ListSettlementAgencyGuarantees": policy(
        "retail", "settlement", "admin", license_key=True
    ),
    DIRECTORY + "SearchRetailEntityIdentification": policy("settlement", "admin", license_key=True),
    # Address correlation (claims 8-9): asked by whoever receives calls from that role.
    DIRECTORY + "GetRelatedRetailEntityInformation": policy(
        "settlement", "verification", "admin", license_key=True
    ),
    DIRECTORY + "GetRelatedSettlementAgencyInformation": policy(
        "retail", "verification", "admin", license_key=True
    ),
    DIRECTORY + "GetRelatedMarketplaceInformation": policy(
        "marketplace", "admin", license_key=True
    ),
    TRANSACTION + "VerifyTransaction": policy("retail", license_key=True),
    TRANSACTION + "GetTransactionRecord": policy(
        "retail", "verification", "admin", license_key=True
    ),
    TRANSACTION + "RecordTransactionCancellation": policy("retail", license_key=True),
    TRANSACTION + "RecordTransactionVoid": policy("retail", license_key=True),
    TRANSACTION + "ListTransactionMismatches": policy("admin"),
}


def role_label(value: int) -> str:
    return enum_label(Role, "ROLE_", value)


def _replicas(change: Any) -> list[str] | None:
    """A change's new replica set, or None when it leaves the set as it is."""
    if not change.HasField("replica_addresses"):
        return None
    return list(change.replica_addresses.addresses)


def entity_to_proto(row: EntityRow) -> approval_pb2.RegisteredEntity:
    entity = approval_pb2.RegisteredEntity(
        entity_id=row.entity_id,
        role=enum_value(Role, "ROLE_", row.role),
        display_name=row.display_name,
        address=row.address,
        replica_addresses=[part for part in row.replica_addresses.split(",") if part],
        status=enum_value(EntityStatus, "ENTITY_STATUS_", row.status),
        routing_prefix=row.routing_prefix or "",
        discovery_variant=enum_value(DiscoveryVariant, "DISCOVERY_VARIANT_", row.discovery_variant),
        program_serial=row.program_serial,
        program_version=row.program_version,
        status_reason=row.status_reason,
        registry_serial=row.registry_serial,
        registered_at=timestamp(row.registered_at),
        updated_at=timestamp(row.updated_at),
    )
    if row.role == "retail":
        entity.payment_information.CopyFrom(payment_information(row))
    return entity


def payment_information(row: EntityRow) -> types_pb2.PaymentInformation:
    return types_pb2.PaymentInformation(
        retail_entity_id=row.entity_id,
        display_name=row.display_name,
        accepted_payment_methods=[
            enum_value(PaymentMethod, "PAYMENT_METHOD_", method)
            for method in json.loads(row.payment_methods_json)
        ],
        accepted_currency_codes=json.loads(row.currency_codes_json),
        private_details=types_pb2.RetailEntityPrivateDetails(
            **json.loads(row.private_details_json)
        ),
        updated_at=timestamp(row.updated_at),
    )


def license_key_to_proto(row: LicenseKeyRow, role: str) -> approval_pb2.LicenseKeyInfo:
    state = enrollment.license_key_state(row, utc_now())
    return approval_pb2.LicenseKeyInfo(
        license_key_id=row.key_id,
        entity_id=row.entity_id,
        role=enum_value(Role, "ROLE_", role),
        state=enum_value(approval_pb2.LicenseKeyState, "LICENSE_KEY_STATE_", state),
        issued_at=timestamp(row.issued_at),
        expires_at=timestamp(row.expires_at),
        last_seen_at=timestamp(row.last_seen_at),
        revoked_at=timestamp(row.revoked_at),
        revocation_reason=row.revocation_reason,
        superseded_by_license_key_id=row.superseded_by or "",
    )


def serial_to_proto(row: ProgramSerialRow) -> approval_pb2.ProgramSerial:
    return approval_pb2.ProgramSerial(
        serial=row.serial,
        role=enum_value(Role, "ROLE_", row.role),
        note=row.note,
        issued_at=timestamp(row.issued_at),
        registered=row.registered_entity_id is not None,
        registered_entity_id=row.registered_entity_id or "",
        registered_at=timestamp(row.registered_at),
    )


def _private_details(message: types_pb2.RetailEntityPrivateDetails) -> dict[str, str]:
    return {field.name: value for field, value in message.ListFields()}


def _payment_methods(values: Any) -> list[str]:
    return [enum_label(PaymentMethod, "PAYMENT_METHOD_", value) for value in values]


class EnrollmentServicer(approval_pb2_grpc.EnrollmentServiceServicer):
    """Registration, key rotation and information changes (claims 4-7)."""

    def __init__(
        self,
        store: Store,
        repo: ApprovalRepository,
        license_policy: LicensePolicy,
        verified_keys: VerifiedKeyCache,
    ):
        self._store = store
        self._repo = repo
        self._policy = license_policy
        self._verified_keys = verified_keys

    async def RegisterEntity(
        self, request: approval_pb2.RegisterEntityRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.RegisterEntityResponse:
        info = call_info()
        caller = certificate_caller()
        registration = Registration(
            program_serial=request.program_serial,
            role=role_label(request.role),
            entity_id=request.entity_id,
            display_name=request.display_name,
            address=request.address,
            routing_prefix=request.routing_prefix,
            discovery_variant=enum_label(
                DiscoveryVariant, "DISCOVERY_VARIANT_", request.discovery_variant
            ),
            payment_methods=_payment_methods(request.accepted_payment_methods),
            currency_codes=list(request.accepted_currency_codes),
            private_details=_private_details(request.private_details),
            program_version=request.program_version,
            replica_addresses=list(request.replica_addresses),
        )

        def effect() -> approval_pb2.RegisterEntityResponse:
            entity, issued = enrollment.register_entity(
                self._repo,
                registration,
                caller=caller,
                caller_ip=info.peer_ip,
                policy=self._policy,
            )
            return approval_pb2.RegisterEntityResponse(
                license_key=issued.key,
                license_key_id=issued.row.key_id,
                expires_at=timestamp(issued.row.expires_at),
                entity=entity_to_proto(entity),
            )

        return await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            approval_pb2.RegisterEntityResponse,
            effect,
        )

    async def RotateLicenseKey(
        self, request: approval_pb2.RotateLicenseKeyRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.RotateLicenseKeyResponse:
        presented = call_info().metadata.get(LICENSE_KEY_METADATA_KEY)
        caller = certificate_caller()

        def effect() -> approval_pb2.RotateLicenseKeyResponse:
            current = enrollment.authenticate_license_key(self._repo, presented, caller)
            issued, previous = enrollment.rotate_license_key(self._repo, current, self._policy)
            assert previous.grace_until is not None, "a rotated key always has a grace end"
            grace = previous.grace_until - utc_now()
            return approval_pb2.RotateLicenseKeyResponse(
                license_key=issued.key,
                license_key_id=issued.row.key_id,
                expires_at=timestamp(issued.row.expires_at),
                previous_license_key_id=previous.key_id,
                grace_period_s=max(0, int(grace.total_seconds())),
                previous_license_key_valid_until=timestamp(previous.grace_until),
            )

        response = await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            approval_pb2.RotateLicenseKeyResponse,
            effect,
        )
        self._verified_keys.clear()  # the old key's row now carries its grace end
        return response

    async def _change(
        self, request: Any, role: str, change: InformationChange, response_type: type[Any]
    ) -> Any:
        caller = certificate_caller()
        if not request.entity_id:
            raise required("entity_id")

        def effect() -> Any:
            entity = enrollment.change_information(
                self._repo,
                role=role,
                entity_id=request.entity_id,
                change=change,
                caller=caller,
                source_ip=str(call_info().peer_ip or ""),
            )
            return response_type(entity=entity_to_proto(entity))

        return await serve_once(self._store, self._repo.idempotency, request, response_type, effect)

    async def ChangeRetailEntityInformation(
        self,
        request: approval_pb2.ChangeRetailEntityInformationRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.ChangeRetailEntityInformationResponse:
        change = request.change
        return await self._change(
            request,
            "retail",
            InformationChange(
                display_name=change.display_name if change.HasField("display_name") else None,
                address=change.address if change.HasField("address") else None,
                replica_addresses=_replicas(change),
                discovery_variant=enum_label(
                    DiscoveryVariant, "DISCOVERY_VARIANT_", change.discovery_variant
                )
                if change.HasField("discovery_variant")
                else None,
                payment_methods=_payment_methods(change.accepted_payment_methods.payment_methods)
                if change.HasField("accepted_payment_methods")
                else None,
                currency_codes=list(change.accepted_currency_codes.currency_codes)
                if change.HasField("accepted_currency_codes")
                else None,
                private_details=_private_details(change.private_details)
                if change.HasField("private_details")
                else None,
            ),
            approval_pb2.ChangeRetailEntityInformationResponse,
        )

    async def GetRegisteredInformation(
        self,
        request: approval_pb2.GetRegisteredInformationRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.GetRegisteredInformationResponse:
        caller = certificate_caller()
        if not request.entity_id:
            raise required("entity_id")
        if caller.entity_id != request.entity_id:
            raise DomainError(
                ErrorKind.PERMISSION_DENIED,
                "NOT_OWNER",
                f"{caller.uri} may read only its own registry entry, not {request.entity_id!r}",
            )
        row = await self._store.run(lambda: enrollment.get_entity(self._repo, request.entity_id))
        return approval_pb2.GetRegisteredInformationResponse(entity=entity_to_proto(row))

    async def ChangeSettlementAgencyInformation(
        self,
        request: approval_pb2.ChangeSettlementAgencyInformationRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.ChangeSettlementAgencyInformationResponse:
        change = request.change
        return await self._change(
            request,
            "settlement",
            InformationChange(
                display_name=change.display_name if change.HasField("display_name") else None,
                address=change.address if change.HasField("address") else None,
                replica_addresses=_replicas(change),
                routing_prefix=change.routing_prefix if change.HasField("routing_prefix") else None,
            ),
            approval_pb2.ChangeSettlementAgencyInformationResponse,
        )

    async def ChangeMarketplaceInformation(
        self,
        request: approval_pb2.ChangeMarketplaceInformationRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.ChangeMarketplaceInformationResponse:
        change = request.change
        return await self._change(
            request,
            "marketplace",
            InformationChange(
                display_name=change.display_name if change.HasField("display_name") else None,
                address=change.address if change.HasField("address") else None,
                replica_addresses=_replicas(change),
            ),
            approval_pb2.ChangeMarketplaceInformationResponse,
        )


class ApprovalAdminServicer(approval_pb2_grpc.ApprovalAdminServiceServicer):
    """The institution's operator console: serials, keys and entity status."""

    def __init__(
        self,
        store: Store,
        repo: ApprovalRepository,
        verified_keys: VerifiedKeyCache,
        entity_id: str,
    ):
        self._store = store
        self._entity_id = entity_id
        self._repo = repo
        self._verified_keys = verified_keys

    async def IssueProgramSerial(
        self, request: approval_pb2.IssueProgramSerialRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.IssueProgramSerialResponse:
        role = role_label(request.role)

        def effect() -> approval_pb2.IssueProgramSerialResponse:
            row = enrollment.issue_serial(self._repo, role=role, note=request.note)
            return approval_pb2.IssueProgramSerialResponse(program_serial=serial_to_proto(row))

        return await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            approval_pb2.IssueProgramSerialResponse,
            effect,
        )

    async def ListProgramSerials(
        self, request: approval_pb2.ListProgramSerialsRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.ListProgramSerialsResponse:
        role = role_label(request.role)

        def query() -> approval_pb2.ListProgramSerialsResponse:
            table = self._repo.serials
            rows = table.select()
            if role:
                rows = rows.where(table.role == role)
            page, token = by_key(rows, table.serial, request)
            return approval_pb2.ListProgramSerialsResponse(
                program_serials=[serial_to_proto(row) for row in page], next_page_token=token
            )

        return await self._store.run(query)

    async def RevokeLicenseKey(
        self, request: approval_pb2.RevokeLicenseKeyRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.RevokeLicenseKeyResponse:
        if not request.license_key_id:
            raise required("license_key_id")

        def effect() -> approval_pb2.RevokeLicenseKeyResponse:
            row = enrollment.revoke_license_key(self._repo, request.license_key_id, request.reason)
            entity = enrollment.get_entity(self._repo, row.entity_id)
            return approval_pb2.RevokeLicenseKeyResponse(
                license_key=license_key_to_proto(row, entity.role)
            )

        response = await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            approval_pb2.RevokeLicenseKeyResponse,
            effect,
        )
        self._verified_keys.clear()  # a revocation takes effect on the next call
        return response

    async def ListLicenseKeys(
        self, request: approval_pb2.ListLicenseKeysRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.ListLicenseKeysResponse:

        def query() -> approval_pb2.ListLicenseKeysResponse:
            keys, entities = self._repo.license_keys, self._repo.entities
            rows = keys.select()
            if request.entity_id:
                rows = rows.where(keys.entity_id == request.entity_id)
            page, token = by_key(rows, keys.key_id, request)
            roles = {
                row.entity_id: row.role
                for row in entities.select().where(
                    entities.entity_id.in_([key.entity_id for key in page])
                )
            }
            return approval_pb2.ListLicenseKeysResponse(
                license_keys=[
                    license_key_to_proto(row, roles.get(row.entity_id, "")) for row in page
                ],
                next_page_token=token,
            )

        return await self._store.run(query)

    async def SetEntityStatus(
        self, request: approval_pb2.SetEntityStatusRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.SetEntityStatusResponse:
        status = enum_label(EntityStatus, "ENTITY_STATUS_", request.status).upper()
        if not request.entity_id:
            raise required("entity_id")
        if not status:
            raise required("status")

        def effect() -> approval_pb2.SetEntityStatusResponse:
            row = enrollment.set_entity_status(
                self._repo, request.entity_id, status, request.reason
            )
            return approval_pb2.SetEntityStatusResponse(entity=entity_to_proto(row))

        return await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            approval_pb2.SetEntityStatusResponse,
            effect,
        )

    async def GetEntity(
        self, request: approval_pb2.GetEntityRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.GetEntityResponse:
        if not request.entity_id:
            raise required("entity_id")
        row = await self._store.run(lambda: enrollment.get_entity(self._repo, request.entity_id))
        return approval_pb2.GetEntityResponse(entity=entity_to_proto(row))

    async def ListEntities(
        self, request: approval_pb2.ListEntitiesRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.ListEntitiesResponse:
        role = role_label(request.role)
        status = enum_label(EntityStatus, "ENTITY_STATUS_", request.status).upper()

        def query() -> approval_pb2.ListEntitiesResponse:
            table = self._repo.entities
            rows = table.select()
            if role:
                rows = rows.where(table.role == role)
            if status:
                rows = rows.where(table.status == status)
            page, token = by_key(rows, table.entity_id, request)
            return approval_pb2.ListEntitiesResponse(
                entities=[entity_to_proto(row) for row in page], next_page_token=token
            )

        return await self._store.run(query)

    async def ExportFlowRecords(
        self, request: approval_pb2.ExportFlowRecordsRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.ExportFlowRecordsResponse:
        sections = export.sections(self._repo, self._entity_id)
        records, token = await self._store.run(lambda: flow_export.export_page(sections, request))
        return approval_pb2.ExportFlowRecordsResponse(flow_records=records, next_page_token=token)


class VerifiedKeyCache:
    """License keys verified in the last ``ttl_s`` seconds, so a busy node costs no read.

    Holds the key row as read (keyed by a digest of the presented key, never the key), so
    expiry and grace are still checked against the clock on every call. Revocation and
    rotation on this approval process clear it at once; on another process of a scaled-out
    approval they take effect within ``ttl_s``.
    """

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, LicenseKeyRow]] = {}

    @staticmethod
    def _digest(presented: str) -> str:
        return hashlib.sha256(presented.encode()).hexdigest()

    def get(self, presented: str) -> LicenseKeyRow | None:
        entry = self._entries.get(self._digest(presented))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, presented: str, row: LicenseKeyRow) -> None:
        if len(self._entries) >= self._max_entries:
            self._entries.clear()  # bounded; a full cache just costs a read per key again
        self._entries[self._digest(presented)] = (time.monotonic() + self._ttl_s, row)

    def clear(self) -> None:
        self._entries.clear()


def license_key_check(store: Store, repo: ApprovalRepository, cache: VerifiedKeyCache) -> Any:
    """The interceptor check that enforces license keys (claims 4-5) on enrolled callers."""

    async def check(info: Any, rpc_policy: Any) -> None:
        if not rpc_policy.license_key or info.caller is None or info.caller.role not in NODES:
            return
        presented = info.metadata.get(LICENSE_KEY_METADATA_KEY)
        cached = cache.get(presented) if presented else None
        if cached is not None and cached.entity_id == info.caller.entity_id:
            enrollment.check_license_key_state(cached, utc_now())
            return
        row = await store.run(
            lambda: enrollment.authenticate_license_key(repo, presented, info.caller)
        )
        cache.put(presented, row)

    return check
