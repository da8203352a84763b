"""Demo flows for enrollment (seed 001 claims 4-7): what a new installation goes through."""

from __future__ import annotations

import grpc
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common import pki, tls
from nodes.common.channels import LICENSE_KEY_METADATA_KEY
from nodes.common.node import enrollment_trace_id
from nodes.network.demo import DemoFlow, FlowContext, expect_refusal
from nodes.network.local import LocalNetwork, issue_serial

INSTALLER_SHOP = "shop-3"
INSTALLER_AGENCY = "agency-3"


def _approval(network: LocalNetwork) -> str:
    return next(node.address for node in network.nodes if node.spec.role == "approval")


def _installer_channel(network: LocalNetwork, role: str, entity_id: str) -> grpc.aio.Channel:
    """A channel holding a freshly issued certificate for a new installation."""
    pki_dir = network.data_dir / "pki"
    issued = pki.issue_certificate(
        pki_dir, role=role, entity_id=entity_id, ip_addresses=[network.ip], out_directory=pki_dir
    )
    credentials = tls.client_credentials(
        network.ca.read_bytes(), issued.cert_path.read_bytes(), issued.key_path.read_bytes()
    )
    return grpc.aio.secure_channel(_approval(network), credentials)


async def enrollment_at_start(context: FlowContext) -> None:
    """What every node did when `up` started it: serial from the institution, registration.

    Checked at approval: every enrolled node is registered, active, at the address it
    serves from, under a serial issued for its role, holding exactly one active key.
    """
    network = context.network
    async with network.admin_channel(_approval(network)) as channel:
        admin = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
        entities = {
            entity.entity_id: entity
            for entity in (
                await admin.ListEntities(
                    approval_pb2.ListEntitiesRequest(page_size=500),
                    metadata=context.metadata(),
                    timeout=10,
                )
            ).entities
        }
        for node in network.nodes:
            if node.spec.role not in ("retail", "settlement", "marketplace"):
                continue
            entity = entities.get(node.spec.entity_id)
            if entity is None or entity.address != node.address:
                raise AssertionError(f"{node.spec.entity_id} is not registered at {node.address}")
            if entity.status != types_pb2.ENTITY_STATUS_ACTIVE:
                raise AssertionError(f"{node.spec.entity_id} is not active")
            keys = (
                await admin.ListLicenseKeys(
                    approval_pb2.ListLicenseKeysRequest(entity_id=node.spec.entity_id),
                    metadata=context.metadata(),
                    timeout=10,
                )
            ).license_keys
            active = [key for key in keys if key.state == approval_pb2.LICENSE_KEY_STATE_ACTIVE]
            if len(active) != 1:
                raise AssertionError(f"{node.spec.entity_id} holds {len(active)} active keys")
    enrolled = sorted(
        node.spec.entity_id
        for node in network.nodes
        if node.spec.role in ("retail", "settlement", "marketplace")
    )
    context.note(f"registered, active, one license key each: {', '.join(enrolled)}")


async def installation_and_refusals(context: FlowContext) -> None:
    """A new shop installs: registers, is refused a reused serial and a bad key, changes info."""
    network = context.network
    approval = _approval(network)
    serial = await issue_serial(network, approval, "retail", INSTALLER_SHOP)
    async with network.admin_channel(approval) as channel:
        admin = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
        serials = await admin.ListProgramSerials(
            approval_pb2.ListProgramSerialsRequest(role=types_pb2.ROLE_RETAIL),
            metadata=context.metadata(),
            timeout=10,
        )
    used = next(s.serial for s in serials.program_serials if s.registered_entity_id == "shop-1")
    async with _installer_channel(network, "retail", INSTALLER_SHOP) as channel:
        enrollment = approval_pb2_grpc.EnrollmentServiceStub(channel)

        def registration(
            program_serial: str, request_id: str
        ) -> approval_pb2.RegisterEntityRequest:
            return approval_pb2.RegisterEntityRequest(
                request_id=request_id,
                program_serial=program_serial,
                role=types_pb2.ROLE_RETAIL,
                entity_id=INSTALLER_SHOP,
                display_name="Shop Three",
                address=f"{network.ip}:7003",
                discovery_variant=types_pb2.DISCOVERY_VARIANT_DIRECTORY,
                accepted_payment_methods=[types_pb2.PAYMENT_METHOD_SINGLE_PAYMENT],
                accepted_currency_codes=["USD"],
            )

        refused = await expect_refusal(
            enrollment.RegisterEntity(
                registration(used, "install-shop-3-reused"), metadata=context.metadata(), timeout=10
            ),
            "SERIAL_ALREADY_REGISTERED",
        )
        context.note(f"shop-1's serial presented again: {refused}")
        registered = await enrollment.RegisterEntity(
            registration(serial, "install-shop-3"), metadata=context.metadata(), timeout=10
        )
        context.note(f"{INSTALLER_SHOP} registered; license key id {registered.license_key_id}")
        change = approval_pb2.ChangeRetailEntityInformationRequest(
            request_id="shop-3-rename",
            entity_id=INSTALLER_SHOP,
            change=approval_pb2.RetailEntityInformationChange(display_name="Shop Three (renamed)"),
        )
        refused = await expect_refusal(
            enrollment.ChangeRetailEntityInformation(
                change,
                metadata=[*context.metadata(), (LICENSE_KEY_METADATA_KEY, "snlk_0_forged")],
                timeout=10,
            ),
            "LICENSE_KEY_UNKNOWN",
        )
        context.note(f"a forged license key: {refused}")
        changed = await enrollment.ChangeRetailEntityInformation(
            change,
            metadata=[*context.metadata(), (LICENSE_KEY_METADATA_KEY, registered.license_key)],
            timeout=10,
        )
        context.note(f"claim 6 info change: display name now {changed.entity.display_name!r}")
    agency_serial = await issue_serial(network, approval, "settlement", INSTALLER_AGENCY)
    async with _installer_channel(network, "settlement", INSTALLER_AGENCY) as channel:
        enrollment = approval_pb2_grpc.EnrollmentServiceStub(channel)
        agency = await enrollment.RegisterEntity(
            approval_pb2.RegisterEntityRequest(
                request_id="install-agency-3",
                program_serial=agency_serial,
                role=types_pb2.ROLE_SETTLEMENT,
                entity_id=INSTALLER_AGENCY,
                display_name="Agency Three",
                address=f"{network.ip}:7004",
                routing_prefix="6333",
            ),
            metadata=context.metadata(),
            timeout=10,
        )
        changed_agency = await enrollment.ChangeSettlementAgencyInformation(
            approval_pb2.ChangeSettlementAgencyInformationRequest(
                request_id="agency-3-prefix",
                entity_id=INSTALLER_AGENCY,
                change=approval_pb2.SettlementAgencyInformationChange(routing_prefix="6334"),
            ),
            metadata=[*context.metadata(), (LICENSE_KEY_METADATA_KEY, agency.license_key)],
            timeout=10,
        )
        context.note(
            f"claim 7 info change: routing prefix now {changed_agency.entity.routing_prefix}"
        )
    # The demo installations never run a node: retire them so later flows never route to them.
    async with network.admin_channel(approval) as channel:
        admin = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
        for entity_id in (INSTALLER_SHOP, INSTALLER_AGENCY):
            await admin.SetEntityStatus(
                approval_pb2.SetEntityStatusRequest(
                    request_id=f"retire-{entity_id}",
                    entity_id=entity_id,
                    status=types_pb2.ENTITY_STATUS_TERMINATED,
                    reason="demo installation without a running node",
                ),
                metadata=context.metadata(),
                timeout=10,
            )


FLOWS = [
    DemoFlow(
        "Enrollment at start-up: serials issued, shops and agencies register (claims 4-5)",
        enrollment_at_start,
        what=(
            "The institution hands out program serials; each shop, agency and marketplace "
            "registers with its serial on first start and gets the license key it presents from "
            "then on."
        ),
        extra_traces=tuple(
            enrollment_trace_id(entity) for entity in ("agency-1", "shop-1", "market-1")
        ),
    ),
    DemoFlow(
        "A new installation: serial reuse and a bad license key refused, info changes (claims 4-7)",
        installation_and_refusals,
        what=(
            "A newly installed shop registers; reusing a serial and calling with a bad license key"
            " are refused; the shop then changes its own registered information."
        ),
    ),
]
