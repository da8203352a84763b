"""`suretynet up`'s seeded marketplaces: the demo's mediation flows, and grpcurl by hand."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from nodes.network.demo import FlowContext, message_sequence
from nodes.network.flows import mediation
from nodes.network.local import LocalNetwork
from tests.support import grpcurl_binary

# What must cross the network in each flow, as the demo prints it.
EXPECTED = {
    "local_purchase": ["member -> market-1: PurchaserService/RequestPurchase"],
    "mediated_claim_6": [
        "market-1 -> institution: DirectoryService/GetRelatedMarketplaceInformation",
        "market-1 -> market-2: MediationService/QuoteCommodity",
        "market-1 -> market-2: MediationService/RequestMediatedTransaction",
        "market-1 -> market-2: MediationService/ReplyToMediatedEstimate",
        "market-2 -> market-1: MediationService/ReportShipment",
        "market-1 -> market-2: MediationService/SettleMediatedTransaction",
    ],
    "mediated_claim_7": [
        "market-2 -> market-1: MediationService/RequestMediatedTransaction",
        "market-2 -> market-1: MediationService/SettleMediatedTransaction",
        "market-2 -> market-1: MediationService/RecordPurchaserPayment",
    ],
    "credit_refusal": ["market-1 refused: FAILED_PRECONDITION CREDIT_ENQUIRY_FAILED"],
    "fraud_disclosure": ["market-1 -> market-2: MediationService/DiscloseFraud"],
}


@pytest.mark.parametrize("flow", mediation.FLOWS, ids=lambda flow: flow.run.__name__)
def test_demo_flow_runs_and_its_messages_cross_the_network(network: LocalNetwork, flow):
    """Each mediation flow of `suretynet demo` succeeds on the seeded `up` network."""
    context = FlowContext(network, trace_id=f"test-{flow.run.__name__}")
    asyncio.run(flow.run(context))
    sequence = [
        line.split(". ", 1)[-1].strip() for line in message_sequence(network, {context.trace_id})
    ]
    for expected in EXPECTED[flow.run.__name__]:
        assert expected in sequence, f"{expected!r} not in {sequence}"


def test_an_operator_can_start_a_mediated_purchase_with_grpcurl(network: LocalNetwork):
    """The member port takes server-only TLS; a purchaser logs in and is mediated by hand."""
    binary = grpcurl_binary()
    market = network.node("market-1").member_address

    def grpcurl(*args: str) -> dict:
        result = subprocess.run(
            [binary, "-cacert", str(network.ca), "-max-time", "20", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    login = grpcurl(
        "-d",
        '{"member_id": "tanaka-trading", "password": "tanaka-trading-pass"}',
        market,
        "suretynet.marketplace.v1.PurchaserService/Login",
    )
    answer = grpcurl(
        "-H",
        f"authorization: Bearer {login['sessionToken']}",
        "-d",
        '{"request_id": "by-hand-1", "commodity_id": "coffee-beans-1kg", "quantity": "1"}',
        market,
        "suretynet.marketplace.v1.PurchaserService/RequestPurchase",
    )
    assert answer["transaction"]["state"] == "TRANSACTION_STATE_ESTIMATE_PENDING"
    assert answer["transaction"]["estimate"]["totalAmount"]["amountMinor"] == "3480"
    assert "market-2" not in json.dumps(answer)


def test_a_mediation_moves_the_marketplaces_flow_metrics(network: LocalNetwork):
    """market-1 counts a mediation it started and one it completed (settled), on its own
    metrics endpoint."""
    from tests.integration.test_metrics import scrape_sync, value

    address = network.node("market-1").metrics_address
    before = scrape_sync(address)
    asyncio.run(mediation.mediated_claim_6(FlowContext(network, trace_id="metrics-mediation")))
    after = scrape_sync(address)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("suretynet_flows_started_total", flow="mediation") == 1
    completed = {"flow": "mediation", "outcome": "completed", "reason": ""}
    assert moved("suretynet_flow_outcomes_total", **completed) == 1
