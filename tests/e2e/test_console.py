"""`suretynet trace` and `suretynet console` on a real local network, the console in Chromium.

An order made in the test is traced from the CLI and then opened in the console in real
headless Chromium (Debian's package, installed by scripts/install_chromium.sh where it is
missing); the rendered SVG sequence diagram must show every hop of that order.
"""

from __future__ import annotations

import asyncio
import html.parser
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from suretynet.type.v1 import types_pb2

from nodes.common.status import decode_rpc_error
from nodes.member.client import AgencyClient, ShopClient
from nodes.network.demo import FlowContext
from nodes.network.demo_data import members_of
from nodes.network.flows import cancellation, mediation, purchase
from nodes.network.local import LocalNetwork, restart_node, stop_node
from nodes.operator import network as network_file
from nodes.operator import trace

REPO = Path(__file__).resolve().parents[2]
CONSOLE_START_TIMEOUT_S = 30.0
BROWSER_TIMEOUT_S = 120
# 0.2 s apart: the shop's saga voids a refused order within its first rounds.
WAIT_ROUNDS = 300
# Hops every purchase at shop-1 (directory discovery, agency-1) must show, named
# independently of the exported records so that a missing record fails the test.
PURCHASE_HOPS = {
    ("member", "shop-1", "ShopService/PlaceOrder"),
    ("shop-1", "agency-1", "BillingService/SearchBillingAgencyIdentification"),
    ("agency-1", "verification", "VerificationService/SubmitTransactionReport"),
    ("shop-1", "institution", "TransactionService/VerifyTransaction"),
}
CANCELLATION_HOPS = {
    ("member", "shop-1", "ShopService/RequestCancellation"),
    ("shop-1", "verification", "VerificationService/SubmitCancelRequestNotice"),
    ("shop-1", "agency-1", "BillingService/NotifyCancelRequest"),
    ("agency-1", "verification", "VerificationService/SubmitCancelProcessNotice"),
    ("shop-1", "institution", "TransactionService/RecordTransactionCancellation"),
}


@pytest.fixture(scope="module")
def traced_network(network: LocalNetwork) -> LocalNetwork:
    """The `up` network after a purchase, a refused (voided) one, a cancelled one and a
    mediation."""

    async def run_flows() -> None:
        for number, flow in enumerate(
            (
                purchase.directory_purchase,
                purchase.credit_limit_refusal,
                cancellation.member_cancels_before_billing,
                mediation.mediated_claim_6,
            )
        ):
            await flow(FlowContext(network, trace_id=f"console-flow-{number}"))

    asyncio.run(run_flows())
    asyncio.run(_until_no_order_in_flight(network))
    return network


async def _until_no_order_in_flight(network: LocalNetwork) -> None:
    """The refused order is voided by the shop's saga; waits (bounded) until it is."""
    manifest = network_file.load(_manifest(network))
    shops = [node for node in manifest.nodes if node.role == "retail"]
    for _ in range(WAIT_ROUNDS):
        exports = await network_file.export_all(manifest, nodes=shops)
        states = {record.state for export in exports for record in export.records}
        if not states & {"PENDING", "VOIDING", "CANCELLING"}:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"orders still in flight: {states}")


def _manifest(network: LocalNetwork) -> Path:
    return network.data_dir / "network.json"


def _orders(network: LocalNetwork) -> dict[str, str]:
    """shop-1's order numbers by state (COMPLETED, CANCELLED) and market-1's transaction."""
    exports = asyncio.run(network_file.export_all(network_file.load(_manifest(network))))
    found = {}
    for export in exports:
        for record in export.records:
            if record.entity_id == "shop-1" and record.attributes.get("step"):
                found[record.state] = record.order_number
            if record.entity_id == "shop-2" and record.kind == types_pb2.FLOW_RECORD_KIND_ORDER:
                assert record.state == "VOIDED", record
                found["REFUSED"] = record.order_number
            if record.entity_id == "market-1" and record.attributes.get("side") == "requester":
                found["MEDIATION"] = record.key
    return found


def _cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodes.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_trace_prints_every_hop_and_each_nodes_final_state(traced_network: LocalNetwork) -> None:
    order = _orders(traced_network)["COMPLETED"]
    done = _cli("trace", order, "--network", str(_manifest(traced_network)))
    assert done.returncode == 0, done.stdout + done.stderr
    for sender, receiver, label in PURCHASE_HOPS:
        assert f"{sender} -> {receiver}: {label}" in done.stdout, done.stdout
    finals = done.stdout.split("Final state at each node:")[1]
    for node in ("shop-1", "agency-1", "verification", "institution"):
        assert any(
            line.split()[0] == node and "COMPLETED" in line for line in finals.splitlines() if line
        ), finals


def test_trace_follows_a_mediation_to_the_partner(traced_network: LocalNetwork) -> None:
    """The purchaser's transaction ID leads to the partner's records of the mediation."""
    transaction = _orders(traced_network)["MEDIATION"]
    done = _cli("trace", transaction, "--network", str(_manifest(traced_network)), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    journey = json.loads(done.stdout)
    assert {final["node"] for final in journey["finals"]} == {"market-1", "market-2"}
    hops = {(step["from"], step["to"], step["label"]) for step in journey["steps"]}
    assert ("purchaser", "market-1", "PurchaserService/RequestPurchase") in hops
    assert ("market-1", "market-2", "MediationService/RequestMediatedTransaction") in hops


def test_trace_of_an_unknown_order_says_so(traced_network: LocalNetwork) -> None:
    done = _cli("trace", "ON-NO-SUCH-ORDER", "--network", str(_manifest(traced_network)))
    assert done.returncode == 1
    assert "no node holds records of ON-NO-SUCH-ORDER" in done.stdout


@pytest.fixture(scope="module")
def console_url(traced_network: LocalNetwork) -> Iterator[str]:
    """`suretynet console` on a free loopback port, stopped (SIGTERM) afterwards."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nodes.cli",
            "console",
            "--network",
            str(_manifest(traced_network)),
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=CONSOLE_START_TIMEOUT_S):
                raise AssertionError("the console printed no address")
        line = process.stdout.readline()
        assert line.startswith("console: http://127.0.0.1:"), line
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium, installed by the project's script where it is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    done = subprocess.run(
        [str(REPO / "scripts" / "install_chromium.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"scripts/install_chromium.sh failed:\n{done.stderr[-2000:]}"
    return done.stdout.strip().splitlines()[-1]


def _browser(chromium: str, tmp_path: Path, *arguments: str) -> str:
    """Runs headless Chromium once; its virtual time budget lets the page's fetches finish."""
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--disable-gpu",
            # Root in a container has no user namespace for Chromium's sandbox.
            *(["--no-sandbox"] if os.geteuid() == 0 else []),
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=30000",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Diagram(html.parser.HTMLParser):
    """The hops (from, to, label) the rendered SVG draws, and the page's ready mark."""

    def __init__(self) -> None:
        super().__init__()
        self.hops: set[tuple[str, str, str]] = set()
        self.ready = ""
        self.journey = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "body":
            self.ready = values.get("data-ready", "")
            self.journey = values.get("data-journey", "")
        if tag == "g" and "hop" in values.get("class", "").split():
            self.hops.add((values["data-from"], values["data-to"], values["data-label"]))


@pytest.mark.parametrize(
    ("state", "expected"), [("COMPLETED", PURCHASE_HOPS), ("CANCELLED", CANCELLATION_HOPS)]
)
def test_console_draws_every_hop_of_an_order_in_chromium(
    traced_network: LocalNetwork,
    console_url: str,
    chromium: str,
    tmp_path: Path,
    state: str,
    expected: set[tuple[str, str, str]],
) -> None:
    order = _orders(traced_network)[state]
    dom = _browser(chromium, tmp_path, "--dump-dom", f"{console_url}?order={order}")
    diagram = _Diagram()
    diagram.feed(dom)
    assert diagram.ready == "true" and diagram.journey == order, dom[-2000:]
    assert expected <= diagram.hops, expected - diagram.hops
    # And every message any node recorded for the order, as trace reports it.
    journey = asyncio.run(trace.trace(network_file.load(_manifest(traced_network)), order))
    recorded = {(step.sender, step.receiver, step.label) for step in journey.steps if step.receiver}
    assert recorded and recorded <= diagram.hops, recorded - diagram.hops


def test_console_marks_a_refusal_and_the_voids_it_caused(
    traced_network: LocalNetwork, console_url: str, chromium: str, tmp_path: Path
) -> None:
    """The order over the credit limit: the refusal drawn in red with its reason, and the
    shop's voids at approval and the agency drawn as hops."""
    order = _orders(traced_network)["REFUSED"]
    dom = _browser(chromium, tmp_path, "--dump-dom", f"{console_url}?order={order}")
    diagram = _Diagram()
    diagram.feed(dom)
    assert diagram.ready == "true" and diagram.journey == order, dom[-2000:]
    assert re.search(r'<g class="local refused"[^>]*>.*?CREDIT_LIMIT_EXCEEDED', dom), dom[-3000:]
    assert ("shop-2", "institution", "TransactionService/RecordTransactionVoid") in diagram.hops
    assert any(
        sender == "shop-2" and label == "BillingService/VoidOrder"
        for sender, _, label in diagram.hops
    ), diagram.hops


@pytest.fixture(scope="module")
def retried_order(traced_network: LocalNetwork) -> str:
    """A purchase at shop-1 while verification is down: the agency cannot file its report,
    so its resumer retries it once verification is back on its address, and the order ends."""
    network = traced_network

    async def scenario() -> str:
        member = members_of("agency-1")[0]
        ca = network.ca.read_bytes()
        async with AgencyClient(network.node("agency-1").member_address, ca) as client:
            await client.login(member.member_id, member.password)
            value = (await client.anonymous_user_id("shop-1")).anonymous_user_id.value
        stop_node(network.node("verification"))
        try:
            async with ShopClient(network.node("shop-1").member_address, ca) as shop:
                try:
                    number = (await shop.place_order(value, [("tea", 1)])).order_number
                except grpc.RpcError as error:
                    number = decode_rpc_error(error).metadata["order_number"]
            await _until_the_agency_has_retried(network, number)
        finally:
            await restart_node(network, "verification")
        await _until_no_order_in_flight(network)
        return str(number)

    return asyncio.run(scenario())


async def _until_the_agency_has_retried(network: LocalNetwork, order_number: str) -> None:
    """Waits (bounded) until agency-1's resumer has failed to file the report at least once."""
    manifest = network_file.load(_manifest(network))
    agency = next(node for node in manifest.nodes if node.entity_id == "agency-1")
    for _ in range(WAIT_ROUNDS):
        export = await network_file.export_node(manifest, agency, order_number=order_number)
        if any(event.attempts for record in export.records for event in record.events):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"agency-1 never retried the report of {order_number}")


def test_console_marks_a_retried_message(
    traced_network: LocalNetwork,
    retried_order: str,
    console_url: str,
    chromium: str,
    tmp_path: Path,
) -> None:
    """The report verification missed while down is drawn as retried."""
    journey = asyncio.run(trace.trace(network_file.load(_manifest(traced_network)), retried_order))
    assert any(step.attempts > 1 for step in journey.steps), journey.steps
    dom = _browser(chromium, tmp_path, "--dump-dom", f"{console_url}?order={retried_order}")
    assert re.search(r'<g class="[^"]*\bretried\b', dom), dom[-3000:]
    assert "↻" in dom


def test_console_api_searches_and_reports_health(
    traced_network: LocalNetwork, console_url: str
) -> None:
    order = _orders(traced_network)["COMPLETED"]

    def get(path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(console_url + path, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, found = get(f"api/flows?q={order[-8:]}")
    assert status == 200 and [flow["number"] for flow in found["flows"]] == [order]
    status, nodes = get("api/nodes")
    assert status == 200
    listed = nodes["nodes"]
    assert isinstance(listed, list) and len(listed) == len(traced_network.nodes)
    # Every node serves metrics on the metrics_address `up` gave it: the console shows them.
    assert {(node["health"], node["metrics"]["state"]) for node in listed} == {("SERVING", "ok")}
    assert all(
        any(name.startswith("suretynet_rpc_") for name in node["metrics"]["values"])
        for node in listed
    ), listed
    assert get("api/journey")[0] == 400
    assert get("api/journey?order=" + "x" * 200)[0] == 400
    assert get("no-such-page")[0] == 404


def test_console_screenshot_is_a_png(
    traced_network: LocalNetwork, console_url: str, chromium: str, tmp_path: Path
) -> None:
    """What docs/console.png is made with (see docs/OPERATIONS.md)."""
    order = _orders(traced_network)["CANCELLED"]
    picture = tmp_path / "console.png"
    _browser(
        chromium,
        tmp_path,
        "--window-size=1500,900",
        "--hide-scrollbars",
        f"--screenshot={picture}",
        f"{console_url}?order={order}",
    )
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
