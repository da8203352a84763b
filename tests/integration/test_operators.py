"""Operator authority is scoped: a node accepts only its own organization's operators, from
their configured networks, and every registry change is recorded with who made it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common.channels import LICENSE_KEY_METADATA_KEY
from storage.approval.repository import ApprovalRepository
from storage.common.database import open_database
from tests.integration.test_enrollment import registration
from tests.support import Pki, node_config, refusal, running


def change_address(entity_id: str, address: str, request_id: str):
    return approval_pb2.ChangeRetailEntityInformationRequest(
        request_id=request_id,
        entity_id=entity_id,
        change=approval_pb2.RetailEntityInformationChange(address=address),
    )


def test_another_organizations_operator_cannot_repoint_a_shop_and_changes_name_their_maker(
    ca: Pki, tmp_path: Path
):
    """A shop's operator certificate is refused at approval (OPERATOR_NOT_ACCEPTED): it can no
    longer re-point another shop's registered address. The institution's operator and the
    shop itself can, and approval records who made each change and from where."""

    async def scenario() -> None:
        config = node_config(tmp_path, ca, "approval", "institution", operators=["institution"])
        async with running(config) as approval:
            address = approval.runtime.address
            async with ca.channel(address, "admin", "institution") as channel:
                response = await approval_pb2_grpc.ApprovalAdminServiceStub(
                    channel
                ).IssueProgramSerial(
                    approval_pb2.IssueProgramSerialRequest(
                        request_id="serial-1", role=types_pb2.ROLE_RETAIL
                    ),
                    timeout=5,
                )
            serial = response.program_serial.serial
            async with ca.channel(address, "retail", "shop-1") as channel:
                enrolment = approval_pb2_grpc.EnrollmentServiceStub(channel)
                registered = await enrolment.RegisterEntity(
                    registration(serial, "shop-1"), timeout=5
                )
                await enrolment.ChangeRetailEntityInformation(
                    change_address("shop-1", "127.0.0.1:7002", "by-shop"),
                    metadata=[(LICENSE_KEY_METADATA_KEY, registered.license_key)],
                    timeout=5,
                )
            for other in ("shop-2", "operator", "agency-1"):
                async with ca.channel(address, "admin", other) as channel:
                    error = await refusal(
                        approval_pb2_grpc.EnrollmentServiceStub(
                            channel
                        ).ChangeRetailEntityInformation(
                            change_address("shop-1", "10.9.9.9:7001", f"attack-{other}"),
                            timeout=5,
                        )
                    )
                assert (error.code.name, error.reason) == (
                    "PERMISSION_DENIED",
                    "OPERATOR_NOT_ACCEPTED",
                ), other
            async with ca.channel(address, "admin", "institution") as channel:
                await approval_pb2_grpc.EnrollmentServiceStub(
                    channel
                ).ChangeRetailEntityInformation(
                    change_address("shop-1", "127.0.0.1:7003", "by-institution"), timeout=5
                )

    asyncio.run(scenario())
    database = open_database(f"sqlite:///{tmp_path / 'institution.db'}")
    repo = ApprovalRepository(database)
    with database.atomic():
        entity = repo.entity("shop-1")
        assert entity is not None and entity.address == "127.0.0.1:7003"
        changes = [
            (row.changed_by, row.source_ip, row.previous_address, row.address)
            for row in repo.registry_changes.select().order_by(repo.registry_changes.id)
        ]
    database.close()
    assert changes == [
        ("suretynet://retail/shop-1", "127.0.0.1", "127.0.0.1:7001", "127.0.0.1:7002"),
        ("suretynet://admin/institution", "127.0.0.1", "127.0.0.1:7002", "127.0.0.1:7003"),
    ]


def test_an_accepted_operator_calling_from_outside_its_networks_is_refused(ca: Pki, tmp_path: Path):
    """Operator calls are address-checked: the right certificate from the wrong network is
    refused with OPERATOR_ADDRESS_NOT_ALLOWED, and nothing is written."""

    async def scenario() -> None:
        config = node_config(
            tmp_path,
            ca,
            "approval",
            "institution",
            operators=["institution"],
            operator_networks=["192.0.2.0/24"],
        )
        async with running(config) as approval:
            async with ca.channel(approval.runtime.address, "admin", "institution") as channel:
                stub = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
                error = await refusal(
                    stub.IssueProgramSerial(
                        approval_pb2.IssueProgramSerialRequest(
                            request_id="serial-x", role=types_pb2.ROLE_RETAIL
                        ),
                        timeout=5,
                    )
                )
                assert (error.code.name, error.reason) == (
                    "PERMISSION_DENIED",
                    "OPERATOR_ADDRESS_NOT_ALLOWED",
                )
                listed = await refusal(
                    stub.ListProgramSerials(approval_pb2.ListProgramSerialsRequest(), timeout=5)
                )
                assert listed.reason == "OPERATOR_ADDRESS_NOT_ALLOWED"

    asyncio.run(scenario())
    database = open_database(f"sqlite:///{tmp_path / 'institution.db'}")
    with database.atomic():
        assert ApprovalRepository(database).serials.select().count() == 0
    database.close()


def test_a_node_accepts_its_own_entity_as_operator_by_default(ca: Pki, tmp_path: Path):
    """With no ``operators`` configured a node accepts suretynet://admin/<its entity ID> only."""

    async def scenario() -> None:
        config = node_config(tmp_path, ca, "approval", "institution", operators=[])
        async with running(config) as approval:
            address = approval.runtime.address
            assert await issue_serial_as(ca, address, "institution")
            async with ca.channel(address) as channel:  # suretynet://admin/operator
                error = await refusal(
                    approval_pb2_grpc.ApprovalAdminServiceStub(channel).ListProgramSerials(
                        approval_pb2.ListProgramSerialsRequest(), timeout=5
                    )
                )
                assert error.reason == "OPERATOR_NOT_ACCEPTED"

    asyncio.run(scenario())


async def issue_serial_as(ca: Pki, address: str, operator: str) -> str:
    async with ca.channel(address, "admin", operator) as channel:
        response = await approval_pb2_grpc.ApprovalAdminServiceStub(channel).IssueProgramSerial(
            approval_pb2.IssueProgramSerialRequest(
                request_id=f"serial-{operator}", role=types_pb2.ROLE_RETAIL
            ),
            timeout=5,
        )
    return str(response.program_serial.serial)
