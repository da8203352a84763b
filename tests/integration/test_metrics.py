"""Prometheus metrics, scraped over HTTP from real nodes on port 0 as calls happen."""

from __future__ import annotations

import asyncio
import datetime
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common import metrics, resumer
from nodes.common.config import ConfigError
from nodes.common.errors import DomainError, ErrorKind
from tests.integration.test_enrollment import issue_serial
from tests.support import Pki, node_config, refusal, running

Sample = dict[tuple[str, frozenset[tuple[str, str]]], float]
GET_ENTITY = "/suretynet.approval.v1.ApprovalAdminService/GetEntity"
GET_PAYMENT_INFORMATION = "/suretynet.approval.v1.DirectoryService/GetPaymentInformation"


def scrape_sync(address: str) -> Sample:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(address: str) -> Sample:
    return await asyncio.to_thread(scrape_sync, address)


def value(sample: Sample, name: str, **labels: str) -> float:
    return sample.get((name, frozenset(labels.items())), 0.0)


def test_rpcs_database_and_expiry_move_on_a_served_node(ca: Pki, tmp_path: Path):
    """Served RPCs count by method and code (refusals by reason too), each call runs database
    transactions, and the certificate's seconds left are reported."""

    async def scenario() -> tuple[Sample, Sample, str]:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as node:
            address = node.runtime.metrics_address
            before = await scrape(address)
            async with ca.channel(node.runtime.address) as channel:
                admin = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
                await admin.IssueProgramSerial(
                    approval_pb2.IssueProgramSerialRequest(
                        request_id="serial-m", role=types_pb2.ROLE_RETAIL
                    ),
                    timeout=5,
                )
                refused = await refusal(
                    admin.GetEntity(approval_pb2.GetEntityRequest(entity_id="shop-404"), timeout=5)
                )
                assert refused.reason == "ENTITY_NOT_FOUND"
            after = await scrape(address)
            return before, after, address

    before, after, address = asyncio.run(scenario())
    assert address.startswith("127.0.0.1:") and not address.endswith(":0")

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    issue = "/suretynet.approval.v1.ApprovalAdminService/IssueProgramSerial"
    assert moved("suretynet_rpc_served_seconds_count", method=issue, code="OK") == 1
    assert moved("suretynet_rpc_served_seconds_count", method=GET_ENTITY, code="NOT_FOUND") == 1
    assert moved("suretynet_rpc_refusals_total", method=GET_ENTITY, reason="ENTITY_NOT_FOUND") == 1
    assert moved("suretynet_rpc_served_seconds_bucket", method=issue, code="OK", le="+Inf") == 1
    assert moved("suretynet_db_transaction_seconds_count") >= 2
    node_left = value(after, "suretynet_certificate_expiry_seconds", certificate="node")
    assert 0 < node_left < 10 * 366 * 86_400
    assert value(after, "suretynet_node_info", role="approval", entity_id="institution") == 1


def test_correlation_cache_and_calls_made_are_counted(ca: Pki, tmp_path: Path):
    """A shop's enrolment is a call made (RegisterEntity, OK) and gives it a license key
    whose seconds left are reported; approval's correlation counts misses, hits and
    refusals by reason."""

    async def scenario() -> tuple[Sample, Sample]:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as approval:
            address = approval.runtime.address
            serial = await issue_serial(ca, address, types_pb2.ROLE_RETAIL, "serial-shop-1")
            before = await scrape(approval.runtime.metrics_address)
            shop_config = node_config(
                tmp_path,
                ca,
                "retail",
                "shop-1",
                approval_address=address,
                program_serial=serial,
                options={"discovery": "directory"},
            )
            async with running(shop_config):
                request = approval_pb2.GetPaymentInformationRequest(retail_entity_id="shop-1")
                # A certificate approval has never registered: refused by correlation.
                async with ca.channel(address, "retail", "shop-9") as channel:
                    stub = approval_pb2_grpc.DirectoryServiceStub(channel)
                    unknown = await refusal(stub.GetPaymentInformation(request, timeout=5))
                    assert unknown.reason == "ADDRESS_UNKNOWN"
                # The registered shop, twice: correlation passes (a miss, then a hit), and the
                # call is then refused for its missing license key.
                async with ca.channel(address, "retail", "shop-1") as channel:
                    stub = approval_pb2_grpc.DirectoryServiceStub(channel)
                    for _ in range(2):
                        missing = await refusal(stub.GetPaymentInformation(request, timeout=5))
                        assert missing.reason == "LICENSE_KEY_MISSING"
                after = await scrape(approval.runtime.metrics_address)
            return before, after

    before, after = asyncio.run(scenario())

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    register = "/suretynet.approval.v1.EnrollmentService/RegisterEntity"
    assert moved("suretynet_rpc_called_seconds_count", method=register, code="OK") == 1
    assert moved("suretynet_correlation_refusals_total", reason="ADDRESS_UNKNOWN") == 1
    assert moved("suretynet_correlation_cache_lookups_total", result="miss") >= 2
    assert moved("suretynet_correlation_cache_lookups_total", result="hit") >= 1
    assert (
        moved(
            "suretynet_rpc_refusals_total",
            method=GET_PAYMENT_INFORMATION,
            reason="LICENSE_KEY_MISSING",
        )
        == 2
    )
    assert value(after, "suretynet_license_key_expiry_seconds") > 0


def test_flow_and_backlog_helpers_refuse_misuse_and_record():
    """Flows report an outcome from a fixed set; a backlog never goes negative."""
    with pytest.raises(ValueError, match="completed, refused, voided"):
        metrics.flow_outcome("purchase", "finished")
    backlog = metrics.register_backlog("test_worker")
    with pytest.raises(ValueError, match="must not be negative"):
        backlog.set(items=-1, oldest_age_s=None)
    backlog.set(items=3, oldest_age_s=42.0)
    assert metrics.BACKLOG_ITEMS.labels(worker="test_worker")._value.get() == 3
    assert metrics.BACKLOG_OLDEST_AGE.labels(worker="test_worker")._value.get() == 42.0


def test_a_bad_metrics_address_is_refused_by_name(ca: Pki, tmp_path: Path):
    with pytest.raises(ConfigError, match="metrics_address"):
        node_config(tmp_path, ca, "approval", "institution", metrics_address="localhost")


def test_the_metrics_port_can_be_switched_off(ca: Pki, tmp_path: Path):
    async def scenario() -> str:
        config = node_config(tmp_path, ca, "approval", "institution", metrics_address="")
        async with running(config) as node:
            async with ca.channel(node.runtime.address) as channel:
                await approval_pb2_grpc.ApprovalAdminServiceStub(channel).ListEntities(
                    approval_pb2.ListEntitiesRequest(), timeout=5
                )
            return node.runtime.metrics_address

    assert asyncio.run(scenario()) == ""


def test_a_metrics_port_in_use_stops_the_node_from_starting(ca: Pki, tmp_path: Path):
    async def scenario() -> None:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as first:
            taken = first.runtime.metrics_address
            config = node_config(tmp_path / "b", ca, "approval", "other", metrics_address=taken)
            with pytest.raises(OSError, match="in use"):
                async with running(config):
                    pass

    (tmp_path / "b").mkdir()
    asyncio.run(scenario())


def test_a_resumer_round_sets_its_backlog_gauges():
    """The items a round found due and the age of the oldest, under the resumer's name."""
    began = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(hours=1)
    flows = [
        resumer.DueFlow("ON-1", "approval", since=began),
        resumer.DueFlow("ON-2", "agency-1", since=began + datetime.timedelta(minutes=30)),
    ]

    async def due(limit: int) -> list[resumer.DueFlow]:
        return flows[:limit]

    async def drive(flow: resumer.DueFlow) -> None:
        raise DomainError(ErrorKind.UNAVAILABLE, "PEER_UNAVAILABLE", "still down")

    async def postpone(flow: resumer.DueFlow, wait_s: float | None) -> None:
        return None

    worker = resumer.Resumer("test resumer", due=due, drive=drive, postpone=postpone)
    assert metrics.BACKLOG_ITEMS.labels(worker="test_resumer")._value.get() == 0
    asyncio.run(worker.run_round())
    assert metrics.BACKLOG_ITEMS.labels(worker="test_resumer")._value.get() == 2
    oldest = metrics.BACKLOG_OLDEST_AGE.labels(worker="test_resumer")._value.get()
    assert 3_600 <= oldest < 3_600 + 300
    flows.clear()
    asyncio.run(worker.run_round())
    assert metrics.BACKLOG_ITEMS.labels(worker="test_resumer")._value.get() == 0
    assert metrics.BACKLOG_OLDEST_AGE.labels(worker="test_resumer")._value.get() == 0
