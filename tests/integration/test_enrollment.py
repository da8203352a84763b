"""Enrollment against real nodes on port 0 with real mutual TLS (seed 001 claims 4-7)."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common.channels import LICENSE_KEY_METADATA_KEY
from storage.common.database import bind
from storage.common.models import NodeCredential
from tests.support import Pki, node_config, refusal, running

RETAIL = types_pb2.ROLE_RETAIL
SETTLEMENT = types_pb2.ROLE_SETTLEMENT


async def issue_serial(ca: Pki, address: str, role: int, request_id: str) -> str:
    async with ca.channel(address) as channel:
        response = await approval_pb2_grpc.ApprovalAdminServiceStub(channel).IssueProgramSerial(
            approval_pb2.IssueProgramSerialRequest(request_id=request_id, role=role), timeout=5
        )
    return response.program_serial.serial


def registration(serial: str, entity_id: str, address: str = "127.0.0.1:7001", **extra):
    fields: dict[str, Any] = {
        "request_id": f"register-{entity_id}-{serial}",
        "program_serial": serial,
        "role": RETAIL,
        "entity_id": entity_id,
        "display_name": entity_id.title(),
        "address": address,
        "discovery_variant": types_pb2.DISCOVERY_VARIANT_DIRECTORY,
        "accepted_payment_methods": [types_pb2.PAYMENT_METHOD_SINGLE_PAYMENT],
        "accepted_currency_codes": ["USD"],
    }
    fields.update(extra)
    return approval_pb2.RegisterEntityRequest(**fields)


def test_node_enrols_on_first_start_and_reuses_its_key_after_restart(ca: Pki, tmp_path: Path):
    """A shop registers with its serial, stores the key, and does not re-register on restart."""

    async def scenario() -> None:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as approval:
            address = approval.runtime.address
            serial = await issue_serial(ca, address, RETAIL, "serial-shop-1")
            shop_config = node_config(
                tmp_path,
                ca,
                "retail",
                "shop-1",
                approval_address=address,
                program_serial=serial,
                options={"discovery": "push", "currency_codes": ["EUR"]},
            )
            async with running(shop_config) as shop:
                shop_address = shop.runtime.address
            async with ca.channel(address) as channel:
                admin = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
                entity = (
                    await admin.GetEntity(
                        approval_pb2.GetEntityRequest(entity_id="shop-1"), timeout=5
                    )
                ).entity
                keys = (
                    await admin.ListLicenseKeys(
                        approval_pb2.ListLicenseKeysRequest(entity_id="shop-1"), timeout=5
                    )
                ).license_keys
                serials = (
                    await admin.ListProgramSerials(
                        approval_pb2.ListProgramSerialsRequest(), timeout=5
                    )
                ).program_serials
            assert entity.address == shop_address
            assert entity.discovery_variant == types_pb2.DISCOVERY_VARIANT_PUSH
            assert list(entity.payment_information.accepted_currency_codes) == ["EUR"]
            assert entity.status == types_pb2.ENTITY_STATUS_ACTIVE
            assert len(keys) == 1 and keys[0].state == approval_pb2.LICENSE_KEY_STATE_ACTIVE
            assert [s.registered_entity_id for s in serials] == ["shop-1"]
            # Restart: the stored key is reused, so approval still holds exactly one key.
            async with running(shop_config):
                pass
            async with ca.channel(address) as channel:
                keys = (
                    await approval_pb2_grpc.ApprovalAdminServiceStub(channel).ListLicenseKeys(
                        approval_pb2.ListLicenseKeysRequest(entity_id="shop-1"), timeout=5
                    )
                ).license_keys
            assert len(keys) == 1
        database = shop_config.database_url.removeprefix("sqlite:///")
        import peewee

        credentials = bind(peewee.SqliteDatabase(database), NodeCredential)
        stored = list(credentials.select())
        assert [row.license_key_id for row in stored] == [keys[0].license_key_id]

    asyncio.run(scenario())


def test_registration_refusals_each_have_their_own_reason(ca: Pki, tmp_path: Path):
    """Unknown serial, reused serial, serial of another role, someone else's certificate."""

    async def scenario() -> None:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as approval:
            address = approval.runtime.address
            serial = await issue_serial(ca, address, RETAIL, "serial-a")
            agency_serial = await issue_serial(ca, address, SETTLEMENT, "serial-b")
            async with ca.channel(address, "retail", "shop-1") as channel:
                stub = approval_pb2_grpc.EnrollmentServiceStub(channel)
                unknown = await refusal(
                    stub.RegisterEntity(registration("SN-RET-0000-0000-0000", "shop-1"), timeout=5)
                )
                wrong_role = await refusal(
                    stub.RegisterEntity(registration(agency_serial, "shop-1"), timeout=5)
                )
                someone_else = await refusal(
                    stub.RegisterEntity(registration(serial, "shop-9"), timeout=5)
                )
                first = await stub.RegisterEntity(registration(serial, "shop-1"), timeout=5)
                assert first.license_key.startswith("snlk_")
            async with ca.channel(address, "retail", "shop-2") as channel:
                reused = await refusal(
                    approval_pb2_grpc.EnrollmentServiceStub(channel).RegisterEntity(
                        registration(serial, "shop-2"), timeout=5
                    )
                )
        assert (unknown.code, unknown.reason) == (grpc.StatusCode.NOT_FOUND, "SERIAL_UNKNOWN")
        assert (wrong_role.code, wrong_role.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "SERIAL_ROLE_MISMATCH",
        )
        assert (someone_else.code, someone_else.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "CERTIFICATE_ENTITY_MISMATCH",
        )
        assert (reused.code, reused.reason) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "SERIAL_ALREADY_REGISTERED",
        )

    asyncio.run(scenario())


def test_bad_input_names_every_field_at_fault(ca: Pki, tmp_path: Path):
    """A malformed registration is INVALID_ARGUMENT with a BadRequest per field, and no effect."""

    async def scenario() -> None:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as approval:
            address = approval.runtime.address
            serial = await issue_serial(ca, address, SETTLEMENT, "serial-s")
            async with ca.channel(address, "settlement", "agency-1") as channel:
                stub = approval_pb2_grpc.EnrollmentServiceStub(channel)
                bad = await refusal(
                    stub.RegisterEntity(
                        approval_pb2.RegisterEntityRequest(
                            request_id="r1",
                            program_serial=serial,
                            role=SETTLEMENT,
                            entity_id="agency-1",
                            address="not-an-address",
                            routing_prefix="41x",
                        ),
                        timeout=5,
                    )
                )
                missing_id = await refusal(
                    stub.RegisterEntity(
                        approval_pb2.RegisterEntityRequest(program_serial=serial), timeout=5
                    )
                )
            async with ca.channel(address) as channel:
                serials = (
                    await approval_pb2_grpc.ApprovalAdminServiceStub(channel).ListProgramSerials(
                        approval_pb2.ListProgramSerialsRequest(), timeout=5
                    )
                ).program_serials
        assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
        assert {v.field for v in bad.violations} == {"display_name", "address", "routing_prefix"}
        assert missing_id.reason == "FIELD_REQUIRED"
        assert [v.field for v in missing_id.violations] == ["request_id"]
        assert not serials[0].registered

    asyncio.run(scenario())


def test_every_bad_license_key_is_refused_with_its_reason(ca: Pki, tmp_path: Path):
    """Missing, unknown, another entity's, revoked and expired keys: UNAUTHENTICATED each."""

    async def scenario() -> None:
        config = node_config(
            tmp_path, ca, "approval", "institution", options={"license_key_validity_days": 1}
        )
        async with running(config) as approval:
            address = approval.runtime.address
            keys = {}
            for entity in ("shop-1", "shop-2"):
                serial = await issue_serial(ca, address, RETAIL, f"serial-{entity}")
                async with ca.channel(address, "retail", entity) as channel:
                    keys[entity] = await approval_pb2_grpc.EnrollmentServiceStub(
                        channel
                    ).RegisterEntity(registration(serial, entity), timeout=5)

            async def change(key: str | None, request_id: str):
                metadata = [(LICENSE_KEY_METADATA_KEY, key)] if key is not None else []
                async with ca.channel(address, "retail", "shop-1") as channel:
                    return await approval_pb2_grpc.EnrollmentServiceStub(
                        channel
                    ).ChangeRetailEntityInformation(
                        approval_pb2.ChangeRetailEntityInformationRequest(
                            request_id=request_id,
                            entity_id="shop-1",
                            change=approval_pb2.RetailEntityInformationChange(display_name="S1"),
                        ),
                        metadata=metadata,
                        timeout=5,
                    )

            good = keys["shop-1"].license_key
            assert (await change(good, "ok-1")).entity.display_name == "S1"
            missing = await refusal(change(None, "m"))
            unknown = await refusal(change("snlk_0000000000000000_forged", "u"))
            garbage = await refusal(change("not-a-key", "g"))
            tampered = await refusal(change(good[:-2] + "xx", "t"))
            other = await refusal(change(keys["shop-2"].license_key, "o"))
            async with ca.channel(address) as channel:
                await approval_pb2_grpc.ApprovalAdminServiceStub(channel).RevokeLicenseKey(
                    approval_pb2.RevokeLicenseKeyRequest(
                        request_id="revoke-1",
                        license_key_id=keys["shop-1"].license_key_id,
                        reason="terminal compromised",
                    ),
                    timeout=5,
                )
            revoked = await refusal(change(good, "r"))
        # Expiry: reopen approval's database a year later by moving the key's expiry back.
        import peewee

        from storage.approval.models import LicenseKeyRow

        table = bind(
            peewee.SqliteDatabase(config.database_url.removeprefix("sqlite:///")), LicenseKeyRow
        )
        table.update(expires_at=datetime.datetime(2000, 1, 1)).where(
            table.key_id == keys["shop-2"].license_key_id
        ).execute()
        async with running(config) as approval:
            async with ca.channel(approval.runtime.address, "retail", "shop-2") as channel:
                expired = await refusal(
                    approval_pb2_grpc.EnrollmentServiceStub(channel).RotateLicenseKey(
                        approval_pb2.RotateLicenseKeyRequest(request_id="rot"),
                        metadata=[(LICENSE_KEY_METADATA_KEY, keys["shop-2"].license_key)],
                        timeout=5,
                    )
                )
        reasons = {
            "missing": missing,
            "unknown": unknown,
            "garbage": garbage,
            "tampered": tampered,
            "other": other,
            "revoked": revoked,
            "expired": expired,
        }
        assert {name: r.code for name, r in reasons.items()} == dict.fromkeys(
            reasons, grpc.StatusCode.UNAUTHENTICATED
        )
        assert {name: r.reason for name, r in reasons.items()} == {
            "missing": "LICENSE_KEY_MISSING",
            "unknown": "LICENSE_KEY_UNKNOWN",
            "garbage": "LICENSE_KEY_UNKNOWN",
            "tampered": "LICENSE_KEY_UNKNOWN",
            "other": "LICENSE_KEY_ENTITY_MISMATCH",
            "revoked": "LICENSE_KEY_REVOKED",
            "expired": "LICENSE_KEY_EXPIRED",
        }

    asyncio.run(scenario())


def test_rotation_issues_a_new_key_and_keeps_the_old_one_for_the_grace_period(
    ca: Pki, tmp_path: Path
):
    """After rotation both keys work until the grace ends; then only the new one."""

    async def scenario() -> None:
        config = node_config(
            tmp_path, ca, "approval", "institution", options={"license_key_rotation_grace_s": 3600}
        )
        async with running(config) as approval:
            address = approval.runtime.address
            serial = await issue_serial(ca, address, RETAIL, "serial-rot")
            async with ca.channel(address, "retail", "shop-1") as channel:
                stub = approval_pb2_grpc.EnrollmentServiceStub(channel)
                first = await stub.RegisterEntity(registration(serial, "shop-1"), timeout=5)
                rotated = await stub.RotateLicenseKey(
                    approval_pb2.RotateLicenseKeyRequest(request_id="rot-1"),
                    metadata=[(LICENSE_KEY_METADATA_KEY, first.license_key)],
                    timeout=5,
                )
                again = await stub.RotateLicenseKey(
                    approval_pb2.RotateLicenseKeyRequest(request_id="rot-1"),
                    metadata=[(LICENSE_KEY_METADATA_KEY, first.license_key)],
                    timeout=5,
                )
                assert again == rotated, "a replayed rotation returns the first answer"
                for key in (first.license_key, rotated.license_key):
                    await stub.ChangeRetailEntityInformation(
                        approval_pb2.ChangeRetailEntityInformationRequest(
                            request_id=f"c-{key[-6:]}",
                            entity_id="shop-1",
                            change=approval_pb2.RetailEntityInformationChange(display_name="S"),
                        ),
                        metadata=[(LICENSE_KEY_METADATA_KEY, key)],
                        timeout=5,
                    )
            assert rotated.previous_license_key_id == first.license_key_id
            assert 3500 < rotated.grace_period_s <= 3600
        import peewee

        from storage.approval.models import LicenseKeyRow

        table = bind(
            peewee.SqliteDatabase(config.database_url.removeprefix("sqlite:///")), LicenseKeyRow
        )
        table.update(grace_until=datetime.datetime(2000, 1, 1)).where(
            table.key_id == first.license_key_id
        ).execute()
        async with running(config) as approval:
            async with ca.channel(approval.runtime.address, "retail", "shop-1") as channel:
                stale = await refusal(
                    approval_pb2_grpc.EnrollmentServiceStub(channel).ChangeRetailEntityInformation(
                        approval_pb2.ChangeRetailEntityInformationRequest(
                            request_id="late",
                            entity_id="shop-1",
                            change=approval_pb2.RetailEntityInformationChange(display_name="L"),
                        ),
                        metadata=[(LICENSE_KEY_METADATA_KEY, first.license_key)],
                        timeout=5,
                    )
                )
        assert stale.reason == "LICENSE_KEY_EXPIRED"

    asyncio.run(scenario())


def test_information_changes_update_the_registry_for_the_owner_only(ca: Pki, tmp_path: Path):
    """Claims 6 and 7: a shop and an agency change their own entries; not each other's."""

    async def scenario() -> None:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as approval:
            address = approval.runtime.address
            shop_serial = await issue_serial(ca, address, RETAIL, "s-shop")
            agency_serial = await issue_serial(ca, address, SETTLEMENT, "s-agency")
            async with ca.channel(address, "retail", "shop-1") as channel:
                shop_key = (
                    await approval_pb2_grpc.EnrollmentServiceStub(channel).RegisterEntity(
                        registration(shop_serial, "shop-1"), timeout=5
                    )
                ).license_key
            async with ca.channel(address, "settlement", "agency-1") as channel:
                stub = approval_pb2_grpc.EnrollmentServiceStub(channel)
                agency = await stub.RegisterEntity(
                    approval_pb2.RegisterEntityRequest(
                        request_id="reg-agency",
                        program_serial=agency_serial,
                        role=SETTLEMENT,
                        entity_id="agency-1",
                        display_name="Agency",
                        address="127.0.0.1:7100",
                        routing_prefix="4111",
                    ),
                    timeout=5,
                )
                metadata = [(LICENSE_KEY_METADATA_KEY, agency.license_key)]
                changed = await stub.ChangeSettlementAgencyInformation(
                    approval_pb2.ChangeSettlementAgencyInformationRequest(
                        request_id="chg-1",
                        entity_id="agency-1",
                        change=approval_pb2.SettlementAgencyInformationChange(
                            address="127.0.0.1:7200", routing_prefix="4112"
                        ),
                    ),
                    metadata=metadata,
                    timeout=5,
                )
                not_mine = await refusal(
                    stub.ChangeSettlementAgencyInformation(
                        approval_pb2.ChangeSettlementAgencyInformationRequest(
                            request_id="chg-2",
                            entity_id="shop-1",
                            change=approval_pb2.SettlementAgencyInformationChange(display_name="X"),
                        ),
                        metadata=metadata,
                        timeout=5,
                    )
                )
            async with ca.channel(address, "retail", "shop-1") as channel:
                shop_changed = await approval_pb2_grpc.EnrollmentServiceStub(
                    channel
                ).ChangeRetailEntityInformation(
                    approval_pb2.ChangeRetailEntityInformationRequest(
                        request_id="chg-shop",
                        entity_id="shop-1",
                        change=approval_pb2.RetailEntityInformationChange(
                            address="127.0.0.1:7300",
                            accepted_payment_methods=approval_pb2.PaymentMethodList(
                                payment_methods=[types_pb2.PAYMENT_METHOD_INSTALLMENTS]
                            ),
                        ),
                    ),
                    metadata=[(LICENSE_KEY_METADATA_KEY, shop_key)],
                    timeout=5,
                )
        assert changed.entity.address == "127.0.0.1:7200"
        assert changed.entity.routing_prefix == "4112"
        assert changed.entity.display_name == "Agency", "unset fields stay as they were"
        assert changed.entity.registry_serial > agency.entity.registry_serial
        assert not_mine.code == grpc.StatusCode.PERMISSION_DENIED
        assert shop_changed.entity.address == "127.0.0.1:7300"
        assert list(shop_changed.entity.payment_information.accepted_payment_methods) == [
            types_pb2.PAYMENT_METHOD_INSTALLMENTS
        ]

    asyncio.run(scenario())


def test_request_id_replays_the_first_answer_and_refuses_a_different_body(ca: Pki, tmp_path: Path):
    """Same request_id + same request: same serial, one row. Different request: refused."""

    async def scenario() -> None:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as approval:
            async with ca.channel(approval.runtime.address) as channel:
                admin = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
                request = approval_pb2.IssueProgramSerialRequest(
                    request_id="same", role=RETAIL, note="n"
                )
                first = await admin.IssueProgramSerial(request, timeout=5)
                second = await admin.IssueProgramSerial(request, timeout=5)
                changed = await refusal(
                    admin.IssueProgramSerial(
                        approval_pb2.IssueProgramSerialRequest(request_id="same", role=SETTLEMENT),
                        timeout=5,
                    )
                )
                listed = await admin.ListProgramSerials(
                    approval_pb2.ListProgramSerialsRequest(), timeout=5
                )
        assert first == second
        assert len(listed.program_serials) == 1
        assert (changed.code, changed.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "IDEMPOTENCY_KEY_REUSED",
        )
        assert [v.field for v in changed.violations] == ["request_id"]

    asyncio.run(scenario())


def test_pagination_walks_every_entity_once(ca: Pki, tmp_path: Path):
    """ListProgramSerials pages with next_page_token until it is empty."""

    async def scenario() -> None:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as approval:
            async with ca.channel(approval.runtime.address) as channel:
                admin = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
                issued = {
                    (
                        await admin.IssueProgramSerial(
                            approval_pb2.IssueProgramSerialRequest(request_id=f"p{i}", role=RETAIL),
                            timeout=5,
                        )
                    ).program_serial.serial
                    for i in range(5)
                }
                seen, token = [], ""
                while True:
                    page = await admin.ListProgramSerials(
                        approval_pb2.ListProgramSerialsRequest(page_size=2, page_token=token),
                        timeout=5,
                    )
                    seen += [serial.serial for serial in page.program_serials]
                    token = page.next_page_token
                    if not token:
                        break
                bad = await refusal(
                    admin.ListProgramSerials(
                        approval_pb2.ListProgramSerialsRequest(page_token="%%%"), timeout=5
                    )
                )
        assert sorted(seen) == sorted(issued) and len(seen) == 5
        assert bad.reason == "PAGE_TOKEN_INVALID"

    asyncio.run(scenario())


@pytest.mark.parametrize("role", ["retail", "verification"])
def test_role_not_in_the_policy_is_refused(ca: Pki, tmp_path: Path, role: str):
    """Only admin certificates reach the admin service."""

    async def scenario():
        async with running(node_config(tmp_path, ca, "approval", "institution")) as approval:
            async with ca.channel(approval.runtime.address, role, "someone") as channel:
                return await refusal(
                    approval_pb2_grpc.ApprovalAdminServiceStub(channel).IssueProgramSerial(
                        approval_pb2.IssueProgramSerialRequest(request_id="x", role=RETAIL),
                        timeout=5,
                    )
                )

    refused = asyncio.run(scenario())
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")


def test_a_node_reads_its_own_registry_entry_and_no_one_elses(ca: Pki, tmp_path: Path):
    """GetRegisteredInformation: what a node compares its installation info with."""

    async def scenario() -> tuple[approval_pb2.RegisteredEntity, Any]:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as approval:
            address = approval.runtime.address
            serial = await issue_serial(ca, address, RETAIL, "s-own")
            async with ca.channel(address, "retail", "shop-1") as channel:
                stub = approval_pb2_grpc.EnrollmentServiceStub(channel)
                key = (
                    await stub.RegisterEntity(registration(serial, "shop-1"), timeout=5)
                ).license_key
                metadata = [(LICENSE_KEY_METADATA_KEY, key)]
                own = await stub.GetRegisteredInformation(
                    approval_pb2.GetRegisteredInformationRequest(entity_id="shop-1"),
                    metadata=metadata,
                    timeout=5,
                )
                other = await refusal(
                    stub.GetRegisteredInformation(
                        approval_pb2.GetRegisteredInformationRequest(entity_id="agency-1"),
                        metadata=metadata,
                        timeout=5,
                    )
                )
        return own.entity, other

    own, other = asyncio.run(scenario())
    assert own.display_name == "Shop-1" and own.address == "127.0.0.1:7001"
    assert list(own.payment_information.accepted_currency_codes) == ["USD"]
    assert other.code == grpc.StatusCode.PERMISSION_DENIED and other.reason == "NOT_OWNER"


def test_an_entity_run_as_replicas_registers_every_replicas_address(ca: Pki, tmp_path: Path):
    """The registry holds a set of addresses per entity (issue 11): a registration from any
    replica's host is accepted, from a host outside the set refused; a malformed set is
    INVALID_ARGUMENT naming the field; a change replaces the set."""

    def agency(serial: str, request_id: str, address: str, replicas: list[str]) -> Any:
        return approval_pb2.RegisterEntityRequest(
            request_id=request_id,
            program_serial=serial,
            role=SETTLEMENT,
            entity_id="agency-1",
            display_name="Agency",
            address=address,
            routing_prefix="4111",
            replica_addresses=replicas,
        )

    async def scenario() -> None:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as approval:
            address = approval.runtime.address
            serial = await issue_serial(ca, address, SETTLEMENT, "s-replicas")
            async with ca.channel(address, "settlement", "agency-1") as channel:
                stub = approval_pb2_grpc.EnrollmentServiceStub(channel)
                elsewhere = await refusal(
                    stub.RegisterEntity(
                        agency(serial, "r1", "10.0.0.1:7100", ["10.0.0.1:7100", "10.0.0.2:7100"]),
                        timeout=5,
                    )
                )
                malformed = await refusal(
                    stub.RegisterEntity(
                        agency(serial, "r2", "127.0.0.1:7100", ["127.0.0.1:7101", "bad", "bad"]),
                        timeout=5,
                    )
                )
                # Called from 127.0.0.1, the second replica's host: the set is the entity's.
                registered = await stub.RegisterEntity(
                    agency(serial, "r3", "10.0.0.1:7100", ["10.0.0.1:7100", "127.0.0.1:7101"]),
                    timeout=5,
                )
                changed = await stub.ChangeSettlementAgencyInformation(
                    approval_pb2.ChangeSettlementAgencyInformationRequest(
                        request_id="chg-replicas",
                        entity_id="agency-1",
                        change=approval_pb2.SettlementAgencyInformationChange(
                            replica_addresses=approval_pb2.ReplicaAddressList(
                                addresses=["10.0.0.1:7100", "127.0.0.1:7101", "127.0.0.1:7102"]
                            )
                        ),
                    ),
                    metadata=[(LICENSE_KEY_METADATA_KEY, registered.license_key)],
                    timeout=5,
                )
        assert (elsewhere.code, elsewhere.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "ADDRESS_MISMATCH",
        )
        assert malformed.code == grpc.StatusCode.INVALID_ARGUMENT
        assert {v.field for v in malformed.violations} == {
            "replica_addresses",
            "replica_addresses[1]",
            "replica_addresses[2]",
        }
        assert list(registered.entity.replica_addresses) == ["10.0.0.1:7100", "127.0.0.1:7101"]
        assert registered.entity.address == "10.0.0.1:7100"
        assert list(changed.entity.replica_addresses)[-1] == "127.0.0.1:7102"

    asyncio.run(scenario())
