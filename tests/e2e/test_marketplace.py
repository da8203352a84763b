"""Marketplace mediation end to end (seed 000 claims 1-11): every marketplace its own process.

Three marketplaces: market-1 asks market-2 and market-3 under claim 6 contracts, market-2
asks market-1 under a claim 7 contract. Each test uses its own members and commodities, so
tests share the network but not their data.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import text_format
from suretynet.marketplace.v1 import marketplace_pb2 as pb
from suretynet.marketplace.v1 import marketplace_pb2_grpc

from nodes.common import tls
from nodes.common.convert import timestamp
from nodes.marketplace.client import Operator, Purchaser, member_channel, money, sign_contract
from nodes.network.local import LocalNetwork, NodeSpec
from tests.support import refusal

TOPOLOGY = (
    NodeSpec("approval", "institution", "Credit Guarantee Institution"),
    NodeSpec("marketplace", "market-1", "Market One", {}, True),
    NodeSpec("marketplace", "market-2", "Market Two", {}, True),
    NodeSpec("marketplace", "market-3", "Market Three", {}, True),
)
MARKETS = ("market-1", "market-2", "market-3")
CLAIM_6 = pb.SETTLEMENT_MODE_PURCHASER_MARKETPLACE_BILLS
CLAIM_7 = pb.SETTLEMENT_MODE_PARTNER_BILLS
PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def markets(network_factory: Callable[..., LocalNetwork]) -> LocalNetwork:
    """The three-marketplace network with its contracts signed at both ends."""
    network = network_factory(TOPOLOGY)
    sign_contracts(network)
    return network


def sign_contracts(network: LocalNetwork) -> None:
    """market-1 -> market-2 and market-3 under claim 6; market-2 -> market-1 under claim 7."""

    async def sign() -> None:
        async with connected(network) as net:
            await sign_contract(
                net.op["market-1"], "market-1", net.op["market-2"], "market-2", "c12",
                mode=CLAIM_6, fee_basis_points=250,
            )  # fmt: skip
            await sign_contract(
                net.op["market-1"], "market-1", net.op["market-3"], "market-3", "c13",
                mode=CLAIM_6, fee_basis_points=250,
            )  # fmt: skip
            await sign_contract(
                net.op["market-2"], "market-2", net.op["market-1"], "market-1", "c21",
                mode=CLAIM_7, fee_basis_points=333,
            )  # fmt: skip

    asyncio.run(sign())


@dataclass
class Connected:
    network: LocalNetwork
    op: dict[str, Operator] = field(default_factory=dict)
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    # Every answer a purchaser received, to prove none of them names a partner (claim 5).
    seen_by_purchasers: list[Any] = field(default_factory=list)

    async def purchaser(self, market: str, member_id: str, **kind: Any) -> Purchaser:
        await self.op[market].member(member_id, PASSWORD, **kind)
        channel = await self.stack.enter_async_context(
            member_channel(self.network.node(market).member_address, self.network.ca)
        )
        purchaser = _Recording(channel, self.seen_by_purchasers)
        await purchaser.login(member_id, PASSWORD)
        return purchaser

    async def as_marketplace(self, market: str, target: str) -> Any:
        """A MediationService stub on ``target`` holding ``market``'s own certificate."""
        node = self.network.node(market)
        credentials = tls.client_credentials(
            self.network.ca.read_bytes(), node.cert.read_bytes(), node.key.read_bytes()
        )
        channel = await self.stack.enter_async_context(
            grpc.aio.secure_channel(self.network.node(target).address, credentials)
        )
        return marketplace_pb2_grpc.MediationServiceStub(channel)


class _Recording(Purchaser):
    def __init__(self, channel: grpc.aio.Channel, seen: list[Any]) -> None:
        super().__init__(channel)
        self._seen = seen

    async def call(self, method: str, **fields: Any) -> Any:
        response = await super().call(method, **fields)
        self._seen.append(response)
        return response


@contextlib.asynccontextmanager
async def connected(network: LocalNetwork) -> AsyncIterator[Connected]:
    net = Connected(network)
    async with net.stack:
        for market in MARKETS:
            channel = await net.stack.enter_async_context(
                network.admin_channel(network.node(market).address)
            )
            net.op[market] = Operator(channel)
        yield net


@dataclass
class Mediated:
    """A mediated purchase driven to delivery, with the IDs each side knows it by."""

    transaction_id: str
    mediated_transaction_id: str
    partner_ids: set[str]


async def mediated_purchase(
    net: Connected, purchaser: Purchaser, requester: str, commodity_id: str, quantity: int
) -> Mediated:
    """Request, accept, ship, deliver: the whole of claims 1 and 5, settled by 6 or 7."""
    requested = await purchaser.call(
        "RequestPurchase", commodity_id=commodity_id, quantity=quantity
    )
    transaction = requested.transaction
    assert transaction.state == pb.TRANSACTION_STATE_ESTIMATE_PENDING
    accepted = await purchaser.call(
        "ReplyToEstimate",
        transaction_id=transaction.transaction_id,
        estimate_id=transaction.estimate.estimate_id,
        decision=pb.ESTIMATE_DECISION_ACCEPT,
    )
    assert accepted.transaction.state == pb.TRANSACTION_STATE_ORDERED
    detail = (
        await net.op[requester].call(
            "GetTransactionDetail", transaction_id=transaction.transaction_id
        )
    ).transaction
    partner = detail.partner_marketplace_id
    mediated_id = detail.mediated_transaction_id
    for status in (pb.SHIPMENT_STATUS_SHIPPED, pb.SHIPMENT_STATUS_DELIVERED):
        await net.op[partner].call(
            "ShipOrder",
            transaction_id=mediated_id,
            status=status,
            carrier="Kuroneko",
            tracking_number="TRK-0001",
        )
    shared = await (await net.as_marketplace(requester, partner)).GetMediatedTransaction(
        pb.GetMediatedTransactionRequest(mediated_transaction_id=mediated_id), timeout=10
    )
    partner_ids = {
        partner,
        mediated_id,
        shared.mediated_transaction.estimate.estimate_id,
        shared.mediated_transaction.shipment.shipment_id,
    }
    return Mediated(transaction.transaction_id, mediated_id, partner_ids)


def run(scenario: Callable[[Connected], Any], network: LocalNetwork) -> None:
    async def wrapped() -> None:
        async with connected(network) as net:
            await scenario(net)

    asyncio.run(wrapped())


def test_local_purchase_is_supplied_from_own_stock_and_billed_on_delivery(markets):
    """Claim 1: a commodity the marketplace has is supplied locally, with no partner."""

    async def scenario(net: Connected) -> None:
        await net.op["market-1"].commodity("local-soap", 350, 10)
        buyer = await net.purchaser("market-1", "local-buyer")
        bought = await buyer.call("RequestPurchase", commodity_id="local-soap", quantity=4)
        transaction = bought.transaction
        assert transaction.state == pb.TRANSACTION_STATE_ORDERED
        assert transaction.total_amount == money(1400)
        detail = await net.op["market-1"].call(
            "GetTransactionDetail", transaction_id=transaction.transaction_id
        )
        assert detail.transaction.kind == pb.TRANSACTION_KIND_LOCAL
        assert detail.transaction.partner_marketplace_id == ""
        shipped = await net.op["market-1"].call(
            "ShipOrder",
            transaction_id=transaction.transaction_id,
            status=pb.SHIPMENT_STATUS_DELIVERED,
        )
        assert shipped.shipment.status == pb.SHIPMENT_STATUS_DELIVERED
        invoices = (await buyer.call("ListInvoices")).invoices
        assert [(i.amount.amount_minor, i.status) for i in invoices] == [
            (1400, pb.INVOICE_STATUS_OPEN)
        ]
        stock = (await buyer.call("ListCommodities")).commodities
        assert next(c for c in stock if c.commodity_id == "local-soap").stock_quantity == 6

    run(scenario, markets)


def test_claim_6_purchaser_marketplace_bills_and_pays_out_the_amount_less_the_charge(markets):
    """Cheapest partner chosen; market-1 bills 3702, pays market-2 3610, keeps 92 (round down)."""

    async def scenario(net: Connected) -> None:
        started = timestamp(datetime.datetime.now(datetime.UTC).replace(tzinfo=None))
        await net.op["market-2"].commodity("c6-kettle", 1234, 10, delivery_days=5)
        await net.op["market-3"].commodity("c6-kettle", 1300, 10, delivery_days=1)
        buyer = await net.purchaser("market-1", "claim6-buyer")
        done = await mediated_purchase(net, buyer, "market-1", "c6-kettle", 3)
        detail = (
            await net.op["market-1"].call(
                "GetTransactionDetail", transaction_id=done.transaction_id
            )
        ).transaction
        assert detail.partner_marketplace_id == "market-2", "the cheaper partner"
        assert detail.state == pb.TRANSACTION_STATE_SETTLED
        guarantee = detail.credit_guarantee
        assert guarantee.guarantor_marketplace_id == "market-1"
        assert guarantee.guaranteed_amount == money(3702)
        assert guarantee.purchaser_pseudonym and "claim6" not in guarantee.purchaser_pseudonym
        assert detail.credit_enquiry_result.guaranteed
        # market-1's books: the purchaser owes the gross, market-2 got gross less charge.
        invoices = (await buyer.call("ListInvoices")).invoices
        assert [i.amount.amount_minor for i in invoices] == [3702]
        payouts = [
            p
            for p in (await net.op["market-1"].call("ListPayouts")).payouts
            if p.mediated_transaction_id == done.mediated_transaction_id
        ]
        assert len(payouts) == 1
        payout = payouts[0]
        assert (payout.gross_amount.amount_minor, payout.mediation_charge.amount_minor) == (
            3702,
            92,
        )
        assert payout.net_amount.amount_minor == 3610
        assert payout.status == pb.PAYOUT_STATUS_PAID
        assert (payout.payer_marketplace_id, payout.payee_marketplace_id) == (
            "market-1",
            "market-2",
        )
        received = [
            p
            for p in (await net.op["market-2"].call("ListPayouts")).payouts
            if p.mediated_transaction_id == done.mediated_transaction_id
        ]
        assert [(p.payout_id, p.net_amount.amount_minor) for p in received] == [
            (payout.payout_id, 3610)
        ]
        books = await net.op["market-1"].call("Reconcile", period_start=started)
        assert list(books.discrepancies) == []
        assert books.checked_transaction_count == 1
        assert books.purchaser_billed_totals == [money(3702)]
        assert books.payout_totals == [money(3610)]
        assert books.mediation_charge_totals == [money(92)]
        supplier_books = await net.op["market-2"].call("Reconcile", period_start=started)
        assert list(supplier_books.discrepancies) == []
        assert supplier_books.checked_transaction_count == 1

    run(scenario, markets)


def test_claim_7_partner_bills_the_purchaser_and_is_billed_the_charge(markets):
    """market-2's purchaser buys from market-1: market-1 bills 5439, market-2 bills it 181."""

    async def scenario(net: Connected) -> None:
        started = timestamp(datetime.datetime.now(datetime.UTC).replace(tzinfo=None))
        await net.op["market-1"].commodity("c7-teapot", 777, 10)
        buyer = await net.purchaser("market-2", "claim7-buyer", corporation=True)
        done = await mediated_purchase(net, buyer, "market-2", "c7-teapot", 7)
        detail = (
            await net.op["market-2"].call(
                "GetTransactionDetail", transaction_id=done.transaction_id
            )
        ).transaction
        assert detail.settlement_mode == CLAIM_7
        assert detail.state == pb.TRANSACTION_STATE_SETTLED
        # 5439 * 333 / 10000 = 181.1187: the charge is rounded down to 181.
        market_2 = (await net.op["market-2"].call("ListInvoices", page_size=500)).invoices
        mine = [i for i in market_2 if i.mediated_transaction_id == done.mediated_transaction_id]
        by_kind = {(i.kind, i.issuer_marketplace_id): i for i in mine}
        charge = by_kind[(pb.INVOICE_KIND_MEDIATION_CHARGE, "market-2")]
        assert (charge.amount.amount_minor, charge.drawee_marketplace_id) == (181, "market-1")
        mirrored = by_kind[(pb.INVOICE_KIND_PURCHASE, "market-1")]
        assert mirrored.amount.amount_minor == 5439
        assert mirrored.drawee_member_id == "claim7-buyer"
        market_1 = (await net.op["market-1"].call("ListInvoices", page_size=500)).invoices
        theirs = {
            (i.kind, i.issuer_marketplace_id): i
            for i in market_1
            if i.mediated_transaction_id == done.mediated_transaction_id
        }
        purchase = theirs[(pb.INVOICE_KIND_PURCHASE, "market-1")]
        assert purchase.amount.amount_minor == 5439
        assert purchase.drawee_purchaser_pseudonym == detail.credit_guarantee.purchaser_pseudonym
        assert purchase.drawee_member_id == ""
        assert theirs[(pb.INVOICE_KIND_MEDIATION_CHARGE, "market-2")].amount.amount_minor == 181
        # The purchaser sees one invoice, from its own marketplace, and pays it there.
        seen = (await buyer.call("ListInvoices")).invoices
        assert [(i.invoice_id, i.amount.amount_minor) for i in seen] == [
            (mirrored.invoice_id, 5439)
        ]
        await net.op["market-2"].call(
            "RecordPayment", invoice_id=mirrored.invoice_id, amount=money(5439)
        )
        relayed = [
            i
            for i in (await net.op["market-1"].call("ListInvoices", page_size=500)).invoices
            if i.invoice_id == purchase.invoice_id
        ]
        assert relayed[0].status == pb.INVOICE_STATUS_PAID
        assert relayed[0].paid_amount.amount_minor == 5439
        books = await net.op["market-2"].call("Reconcile", period_start=started)
        assert list(books.discrepancies) == []
        assert books.partner_billed_totals == [money(181)]
        assert books.mediation_charge_totals == [money(181)]
        assert books.purchaser_billed_totals == [money(0)]
        assert books.payout_totals == [money(0)]
        supplier = await net.op["market-1"].call("Reconcile", period_start=started)
        assert list(supplier.discrepancies) == []

    run(scenario, markets)


def test_purchaser_view_never_names_the_partner_nor_its_ids(markets):
    """Claim 5: estimate, reply, order, shipment and invoices all look like market-1's own."""

    async def scenario(net: Connected) -> None:
        await net.op["market-3"].commodity("view-lamp", 4100, 5, display_name="Desk lamp")
        await net.op["market-1"].commodity("view-tea", 900, 5)
        buyer = await net.purchaser("market-1", "view-buyer")
        first = await mediated_purchase(net, buyer, "market-1", "view-lamp", 1)
        await buyer.call("ListTransactions")
        seen_first = await buyer.call("GetTransaction", transaction_id=first.transaction_id)
        # What is bought is named (the partner's name for it); who supplies it is not.
        assert seen_first.transaction.commodity_display_name == "Desk lamp"
        await buyer.call("ListInvoices")
        claim7_buyer = await net.purchaser("market-2", "view-buyer-7")
        second = await mediated_purchase(net, claim7_buyer, "market-2", "view-tea", 2)
        await claim7_buyer.call("ListInvoices")
        await claim7_buyer.call("GetTransaction", transaction_id=second.transaction_id)
        secrets = first.partner_ids | second.partner_ids | {"market-1", "market-2", "market-3"}
        for market, done in (("market-1", first), ("market-2", second)):
            detail = await net.op[market].call(
                "GetTransactionDetail", transaction_id=done.transaction_id
            )
            secrets.add(detail.transaction.credit_guarantee.purchaser_pseudonym)
        partner_invoices = {
            i.invoice_id
            for i in (await net.op["market-1"].call("ListInvoices", page_size=500)).invoices
            if i.mediated_transaction_id == second.mediated_transaction_id
        }
        assert partner_invoices, "market-1 billed market-2's purchaser under claim 7"
        text = "\n".join(text_format.MessageToString(seen) for seen in net.seen_by_purchasers)
        assert len(net.seen_by_purchasers) >= 9
        for secret in secrets | partner_invoices:
            assert secret not in text, f"{secret!r} reached a purchaser"

    run(scenario, markets)


def test_no_partner_with_stock_is_a_clear_refusal(markets):
    """Claim 1 refusal: neither the marketplace nor any partner under contract can supply."""

    async def scenario(net: Connected) -> None:
        await net.op["market-2"].commodity("scarce-vase", 9000, 1)
        buyer = await net.purchaser("market-1", "scarce-buyer")
        for commodity_id, quantity in (("scarce-vase", 2), ("nowhere-at-all", 1)):
            refused = await refusal(
                buyer.call("RequestPurchase", commodity_id=commodity_id, quantity=quantity)
            )
            assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
            assert refused.reason == "NO_ELIGIBLE_PARTNER"
        assert (await buyer.call("ListTransactions")).transactions == []

    run(scenario, markets)


def test_a_partner_that_is_down_is_retryable_not_a_refusal(markets):
    """Defect 4: the only partner with stock is frozen. The purchaser gets UNAVAILABLE /
    PARTNER_UNAVAILABLE (retry), not the permanent-looking NO_ELIGIBLE_PARTNER; the same
    request_id succeeds once the partner is back. The old requester read a partner that
    did not answer as "no eligible partner"."""

    async def scenario(net: Connected) -> None:
        await net.op["market-3"].commodity("far-lamp", 4200, 3)
        buyer = await net.purchaser("market-1", "patient-buyer")
        pid = net.network.node("market-3").process.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            refused = await refusal(
                buyer.call(
                    "RequestPurchase", request_id="lamp-1", commodity_id="far-lamp", quantity=1
                )
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "PARTNER_UNAVAILABLE",
        )
        requested = await buyer.call(
            "RequestPurchase", request_id="lamp-1", commodity_id="far-lamp", quantity=1
        )
        assert requested.transaction.state == pb.TRANSACTION_STATE_ESTIMATE_PENDING

    run(scenario, markets)


def test_history_from_real_cancels_and_returns_lowers_a_later_score(markets):
    """Claims 2-4: cancels and returns the purchaser made change the next enquiry's points."""

    async def scenario(net: Connected) -> None:
        op = net.op["market-1"]
        await op.commodity("hist-cup", 100, 100)
        buyer = await net.purchaser("market-1", "history-buyer")

        async def points() -> dict[int, tuple[int, int]]:
            result = (
                await op.call("RunCreditEnquiry", member_id="history-buyer")
            ).credit_enquiry_result
            return {item.item: (item.observed_count, item.points) for item in result.items}

        assert set((await points()).values()) == {(0, 1)}
        for _ in range(3):
            bought = await buyer.call("RequestPurchase", commodity_id="hist-cup", quantity=1)
            await buyer.call(
                "CancelOrder",
                transaction_id=bought.transaction.transaction_id,
                reason="no longer needed",
            )
        changed = await buyer.call("RequestPurchase", commodity_id="hist-cup", quantity=1)
        await buyer.call(
            "ChangeOrder",
            transaction_id=changed.transaction.transaction_id,
            quantity=2,
            reason="more",
        )
        after_cancels = await points()
        assert after_cancels[pb.CREDIT_STANDARD_ITEM_ORDER_CANCELS] == (3, -1)
        assert after_cancels[pb.CREDIT_STANDARD_ITEM_ORDER_CHANGES] == (1, 1)
        for defective in (True, False, False):
            bought = await buyer.call("RequestPurchase", commodity_id="hist-cup", quantity=1)
            await op.call(
                "ShipOrder",
                transaction_id=bought.transaction.transaction_id,
                status=pb.SHIPMENT_STATUS_DELIVERED,
            )
            await buyer.call(
                "ReturnGoods",
                transaction_id=bought.transaction.transaction_id,
                defective=defective,
                reason="returned",
            )
        after_returns = await points()
        # The defective return is not held against the purchaser: 2 counted, not 3.
        assert after_returns[pb.CREDIT_STANDARD_ITEM_NON_DEFECTIVE_RETURNS] == (2, -1)
        assert sum(points for _, points in after_returns.values()) == 0

    run(scenario, markets)


def test_credit_refused_with_its_breakdown(markets):
    """Claims 2-4: below the threshold there is no guarantee and no partner is asked."""

    async def scenario(net: Connected) -> None:
        op = net.op["market-1"]
        await op.commodity("refuse-pen", 100, 100)
        await net.op["market-2"].commodity("refuse-ink", 500, 100)
        buyer = await net.purchaser("market-1", "refused-buyer")
        for _ in range(3):
            bought = await buyer.call("RequestPurchase", commodity_id="refuse-pen", quantity=1)
            await buyer.call("CancelOrder", transaction_id=bought.transaction.transaction_id)
        for _ in range(2):
            bought = await buyer.call("RequestPurchase", commodity_id="refuse-pen", quantity=1)
            await op.call(
                "ShipOrder",
                transaction_id=bought.transaction.transaction_id,
                status=pb.SHIPMENT_STATUS_DELIVERED,
            )
            await buyer.call("ReturnGoods", transaction_id=bought.transaction.transaction_id)
        refused = await refusal(
            buyer.call("RequestPurchase", commodity_id="refuse-ink", quantity=1)
        )
        assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
        assert refused.reason == "CREDIT_ENQUIRY_FAILED"
        breakdown = refused.metadata
        assert (breakdown["total_points"], breakdown["threshold_points"]) == ("0", "2")
        assert breakdown["order_cancels"].startswith("3 (at most 2 in 365 days): -1")
        assert breakdown["non_defective_returns"].startswith("2 (at most 1 in 365 days): -1")
        assert breakdown["order_changes"].endswith("+1")
        assert breakdown["payment_delays"].endswith("+1")
        states = {t.state for t in (await buyer.call("ListTransactions")).transactions}
        assert pb.TRANSACTION_STATE_REQUESTED not in states

    run(scenario, markets)


def test_partner_refuses_a_missing_foreign_expired_or_exceeded_guarantee(markets):
    """Claim 1: market-2 checks market-1's guarantee; each failure has its own reason."""

    async def scenario(net: Connected) -> None:
        await net.op["market-2"].commodity("guard-bowl", 1000, 10)
        partner = await net.as_marketplace("market-1", "market-2")
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)

        def guarantee(**changes: Any) -> pb.CreditGuarantee:
            fields: dict[str, Any] = {
                "guarantee_id": "GU-test",
                "guarantor_marketplace_id": "market-1",
                "purchaser_pseudonym": "pp-test",
                "guaranteed_amount": money(3000),
                "issued_at": timestamp(now),
                "expires_at": timestamp(now + datetime.timedelta(minutes=10)),
            }
            fields.update(changes)
            return pb.CreditGuarantee(**fields)

        def request(number: int, attached: pb.CreditGuarantee | None) -> Any:
            return partner.RequestMediatedTransaction(
                pb.RequestMediatedTransactionRequest(
                    request_id=f"guard-{number}",
                    mediated_transaction_id=f"MT-guard-{number}",
                    contract_id="c12",
                    commodity_id="guard-bowl",
                    quantity=3,
                    credit_guarantee=attached,
                ),
                timeout=10,
            )

        cases = [
            (None, grpc.StatusCode.INVALID_ARGUMENT, "GUARANTEE_MISSING"),
            (guarantee(guarantor_marketplace_id="market-3"), None, "GUARANTEE_INVALID"),
            (
                guarantee(expires_at=timestamp(now - datetime.timedelta(seconds=1))),
                None,
                "GUARANTEE_EXPIRED",
            ),
            (guarantee(guaranteed_amount=money(2999)), None, "GUARANTEE_EXCEEDED"),
        ]
        for number, (attached, code, reason) in enumerate(cases):
            refused = await refusal(request(number, attached))
            assert refused.reason == reason
            assert refused.code == (code or grpc.StatusCode.FAILED_PRECONDITION)
        accepted = await request(99, guarantee())
        assert accepted.estimate.total_amount == money(3000)
        # Under a contract it does not hold, market-3 gets nothing from market-2.
        stranger = await net.as_marketplace("market-3", "market-2")
        refused = await refusal(
            stranger.QuoteCommodity(
                pb.QuoteCommodityRequest(commodity_id="guard-bowl", quantity=1), timeout=10
            )
        )
        assert refused.reason == "CONTRACT_NOT_FOUND"

    run(scenario, markets)


def test_fraud_disclosure_reaches_only_the_partner_of_that_transaction(markets):
    """Claim 8: market-2 learns who its pseudonymous purchaser is; market-3 learns nothing."""

    async def scenario(net: Connected) -> None:
        await net.op["market-2"].commodity("fraud-watch", 20000, 5)
        await net.op["market-3"].commodity("fraud-ring", 30000, 5)
        buyer = await net.purchaser("market-1", "fraud-buyer", corporation=True)
        with_2 = await mediated_purchase(net, buyer, "market-1", "fraud-watch", 1)
        with_3 = await mediated_purchase(net, buyer, "market-1", "fraud-ring", 1)
        marked = await net.op["market-1"].call(
            "MarkTransactionUnlawful",
            transaction_id=with_2.transaction_id,
            reason="chargeback fraud confirmed by the card issuer",
        )
        assert marked.transaction.marked_unlawful
        sent = marked.fraud_disclosure
        assert sent.receiving_marketplace_id == "market-2"

        async def received(market: str) -> list[pb.FraudDisclosure]:
            answer = await net.op[market].call(
                "ListFraudDisclosures", direction=pb.DISCLOSURE_DIRECTION_RECEIVED, page_size=500
            )
            return [
                d
                for d in answer.fraud_disclosures
                if d.mediated_transaction_id
                in (with_2.mediated_transaction_id, with_3.mediated_transaction_id)
            ]

        at_2 = await received("market-2")
        assert [d.disclosure_id for d in at_2] == [sent.disclosure_id]
        disclosed = at_2[0]
        assert disclosed.mediated_transaction_id == with_2.mediated_transaction_id
        assert disclosed.reason == "chargeback fraud confirmed by the card issuer"
        assert disclosed.purchaser.display_name == "fraud-buyer (display name)"
        assert disclosed.purchaser.corporate_registration_number == "1234-56-789012"
        supplied = await (await net.as_marketplace("market-1", "market-2")).GetMediatedTransaction(
            pb.GetMediatedTransactionRequest(
                mediated_transaction_id=with_2.mediated_transaction_id
            ),
            timeout=10,
        )
        assert (
            disclosed.purchaser.purchaser_pseudonym
            == supplied.mediated_transaction.credit_guarantee.purchaser_pseudonym
        )
        assert await received("market-3") == []
        again = await refusal(
            net.op["market-1"].call(
                "MarkTransactionUnlawful", transaction_id=with_2.transaction_id, reason="twice"
            )
        )
        assert again.reason == "TRANSACTION_STATE_INVALID"

    run(scenario, markets)
