"""Demo flows for marketplace mediation (seed 000 claims 1-11) on `up`'s seeded network.

market-1 and market-2 start with stock, contract members and a contract each way
(``nodes/network/local.py``): market-1 asks market-2 under claim 6, market-2 asks market-1
under claim 7. Each flow logs in as a purchaser on the member port and, as the operator,
ships and inspects over mutual TLS with the admin certificate.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from suretynet.marketplace.v1 import marketplace_pb2 as pb

from nodes.marketplace.client import Operator, Purchaser, member_channel
from nodes.network.demo import DemoFlow, FlowContext, expect_refusal

TEA = "tea-sencha-100g"
COFFEE = "coffee-beans-1kg"


@dataclass
class Desk:
    """The purchaser's app and both operators' consoles, all under the flow's trace ID."""

    context: FlowContext
    purchaser: Purchaser
    operators: dict[str, Operator]


@contextlib.asynccontextmanager
async def desk(context: FlowContext, market: str, member_id: str | None) -> AsyncIterator[Desk]:
    """Opens the consoles and, for ``member_id``, logs the purchaser in (seeded password)."""
    network = context.network
    trace = context.metadata()
    async with contextlib.AsyncExitStack() as stack:
        operators = {}
        for entity in ("market-1", "market-2"):
            channel = await stack.enter_async_context(
                network.admin_channel(network.node(entity).address)
            )
            operators[entity] = Operator(channel, trace)
        channel = await stack.enter_async_context(
            member_channel(network.node(market).member_address, network.ca)
        )
        purchaser = Purchaser(channel, trace)
        if member_id is not None:
            await purchaser.login(member_id, f"{member_id}-pass")
        yield Desk(context, purchaser, operators)


def _yen(money: object) -> str:
    return f"{getattr(money, 'amount_minor', 0)} {getattr(money, 'currency_code', '')}".strip()


async def _mediate(
    desk: Desk, market: str, commodity_id: str, quantity: int
) -> pb.MarketplaceTransaction:
    """Request, accept, ship and deliver a mediated purchase; returns the operator's view."""
    requested = await desk.purchaser.call(
        "RequestPurchase", commodity_id=commodity_id, quantity=quantity
    )
    estimate = requested.transaction.estimate
    desk.context.note(
        f"purchaser sees estimate {estimate.estimate_id}: {quantity} x {_yen(estimate.unit_price)}"
        f" = {_yen(estimate.total_amount)} from its own marketplace"
    )
    await desk.purchaser.call(
        "ReplyToEstimate",
        transaction_id=requested.transaction.transaction_id,
        estimate_id=estimate.estimate_id,
        decision=pb.ESTIMATE_DECISION_ACCEPT,
    )
    detail = await desk.operators[market].call(
        "GetTransactionDetail", transaction_id=requested.transaction.transaction_id
    )
    transaction = detail.transaction
    desk.context.note(
        f"{market} chose {transaction.partner_marketplace_id} under {transaction.contract_id}; "
        f"guarantee {_yen(transaction.credit_guarantee.guaranteed_amount)} for "
        f"{transaction.credit_guarantee.purchaser_pseudonym}, credit enquiry "
        f"{transaction.credit_enquiry_result.total_points} points"
    )
    supplier = desk.operators[transaction.partner_marketplace_id]
    for status in (pb.SHIPMENT_STATUS_SHIPPED, pb.SHIPMENT_STATUS_DELIVERED):
        await supplier.call(
            "ShipOrder",
            transaction_id=transaction.mediated_transaction_id,
            status=status,
            carrier="Kuroneko Yamato",
            tracking_number="4321-0000-1111",
        )
    seen = await desk.purchaser.call("GetTransaction", transaction_id=transaction.transaction_id)
    assert seen.transaction.state == pb.TRANSACTION_STATE_SETTLED, seen
    final = await desk.operators[market].call(
        "GetTransactionDetail", transaction_id=transaction.transaction_id
    )
    return final.transaction


async def _books(desk: Desk, market: str, mediated_id: str) -> None:
    invoices = await desk.operators[market].call("ListInvoices", page_size=500)
    for invoice in invoices.invoices:
        if invoice.mediated_transaction_id == mediated_id:
            kind = pb.InvoiceKind.Name(invoice.kind).removeprefix("INVOICE_KIND_")
            drawee = (
                invoice.drawee_member_id
                or invoice.drawee_marketplace_id
                or invoice.drawee_purchaser_pseudonym
            )
            desk.context.note(
                f"{market} holds {kind} invoice by {invoice.issuer_marketplace_id} to {drawee}: "
                f"{_yen(invoice.amount)}"
            )
    payouts = await desk.operators[market].call("ListPayouts", page_size=500)
    for payout in payouts.payouts:
        if payout.mediated_transaction_id == mediated_id:
            desk.context.note(
                f"{market} payout {payout.payer_marketplace_id} -> {payout.payee_marketplace_id}: "
                f"{_yen(payout.gross_amount)} - charge {_yen(payout.mediation_charge)} = "
                f"{_yen(payout.net_amount)}"
            )
    books = await desk.operators[market].call("Reconcile")
    assert not books.discrepancies, books.discrepancies
    desk.context.note(
        f"{market} reconciles {books.checked_transaction_count} transactions with no discrepancy"
    )


async def local_purchase(context: FlowContext) -> None:
    """Claim 1: market-1 has the tea, so it supplies it and bills on delivery."""
    async with desk(context, "market-1", "sato-hanako") as here:
        bought = await here.purchaser.call("RequestPurchase", commodity_id=TEA, quantity=2)
        transaction = bought.transaction
        context.note(f"ordered locally: {_yen(transaction.total_amount)}")
        await here.operators["market-1"].call(
            "ShipOrder",
            transaction_id=transaction.transaction_id,
            status=pb.SHIPMENT_STATUS_DELIVERED,
        )
        invoices = (await here.purchaser.call("ListInvoices")).invoices
        context.note(f"invoice to the purchaser: {_yen(invoices[0].amount)}")


async def mediated_claim_6(context: FlowContext) -> None:
    """Claims 1-6: market-1 lacks coffee; market-2 supplies; market-1 bills and pays out."""
    async with desk(context, "market-1", "tanaka-trading") as here:
        transaction = await _mediate(here, "market-1", COFFEE, 2)
        await _books(here, "market-1", transaction.mediated_transaction_id)
        await _books(here, "market-2", transaction.mediated_transaction_id)


async def mediated_claim_7(context: FlowContext) -> None:
    """Claims 1-5, 7: market-2's purchaser buys market-1's tea; market-1 bills it."""
    async with desk(context, "market-2", "suzuki-ichiro") as here:
        transaction = await _mediate(here, "market-2", TEA, 3)
        await _books(here, "market-2", transaction.mediated_transaction_id)
        await _books(here, "market-1", transaction.mediated_transaction_id)
        invoices = (await here.purchaser.call("ListInvoices")).invoices
        await here.operators["market-2"].call(
            "RecordPayment", invoice_id=invoices[0].invoice_id, amount=invoices[0].amount
        )
        context.note("the purchaser paid at market-2; market-2 relayed the payment to market-1")


async def credit_refusal(context: FlowContext) -> None:
    """Claims 2-4: real cancels and returns sink a purchaser's score; mediation is refused."""
    async with desk(context, "market-1", None) as here:
        await here.operators["market-1"].member("demo-risky", "demo-risky-pass")
    async with desk(context, "market-1", "demo-risky") as here:
        market_1 = here.operators["market-1"]
        for _ in range(3):
            bought = await here.purchaser.call("RequestPurchase", commodity_id=TEA, quantity=1)
            await here.purchaser.call(
                "CancelOrder",
                transaction_id=bought.transaction.transaction_id,
                reason="changed mind",
            )
        for _ in range(2):
            bought = await here.purchaser.call("RequestPurchase", commodity_id=TEA, quantity=1)
            await market_1.call(
                "ShipOrder",
                transaction_id=bought.transaction.transaction_id,
                status=pb.SHIPMENT_STATUS_DELIVERED,
            )
            await here.purchaser.call(
                "ReturnGoods", transaction_id=bought.transaction.transaction_id, reason="not needed"
            )
        context.note("history: 3 order cancels and 2 non-defective returns, from real RPCs")
        refused = await expect_refusal(
            here.purchaser.stub.RequestPurchase(
                pb.RequestPurchaseRequest(
                    request_id="risky-coffee", commodity_id=COFFEE, quantity=1
                ),
                metadata=here.purchaser.metadata(),
                timeout=15,
            ),
            "CREDIT_ENQUIRY_FAILED",
        )
        context.note(f"coffee (only at market-2) refused: {refused}")
        result = (
            await market_1.call("RunCreditEnquiry", member_id="demo-risky")
        ).credit_enquiry_result
        for item in result.items:
            name = pb.CreditStandardItem.Name(item.item).removeprefix("CREDIT_STANDARD_ITEM_")
            context.note(
                f"  {name}: {item.observed_count} (at most {item.standard.max_count}) "
                f"-> {item.points:+d}"
            )
        context.note(f"  total {result.total_points} < threshold {result.threshold_points}")


async def fraud_disclosure(context: FlowContext) -> None:
    """Claim 8: an unlawful mediated purchase; market-1 discloses the purchaser to market-2."""
    async with desk(context, "market-1", "tanaka-trading") as here:
        transaction = await _mediate(here, "market-1", COFFEE, 1)
        marked = await here.operators["market-1"].call(
            "MarkTransactionUnlawful",
            transaction_id=transaction.transaction_id,
            reason="goods resold in breach of the export licence",
        )
        sent = marked.fraud_disclosure
        context.note(
            f"market-1 disclosed {sent.purchaser.purchaser_pseudonym} to {sent.receiving_marketplace_id}"
        )
        received = await here.operators["market-2"].call(
            "ListFraudDisclosures", direction=pb.DISCLOSURE_DIRECTION_RECEIVED
        )
        found = next(d for d in received.fraud_disclosures if d.disclosure_id == sent.disclosure_id)
        context.note(
            f"market-2 now knows {found.purchaser.purchaser_pseudonym} is "
            f"{found.purchaser.display_name} ({found.purchaser.corporate_registration_number}): "
            f"{found.reason}"
        )


FLOWS = [
    DemoFlow(
        "Marketplace: a local purchase from own stock (seed 000 claim 1)",
        local_purchase,
        what=(
            "A purchaser buys at their marketplace from its own stock; no other marketplace is "
            "involved."
        ),
    ),
    DemoFlow(
        "Marketplace: mediated purchase, purchaser's marketplace bills (seed 000 claims 1-6)",
        mediated_claim_6,
        what=(
            "market-1 cannot supply coffee, so it checks the purchaser's history, vouches for "
            "their credit to market-2 and relays the estimate; market-1 bills the purchaser and "
            "pays market-2 less its charge."
        ),
    ),
    DemoFlow(
        "Marketplace: mediated purchase, partner bills (seed 000 claims 1-5, 7)",
        mediated_claim_7,
        what=(
            "A mediated purchase where the supplying marketplace bills the purchaser and pays the "
            "mediating one its charge."
        ),
    ),
    DemoFlow(
        "Marketplace: credit enquiry refuses mediation (seed 000 claims 2-4)",
        credit_refusal,
        what=(
            "A purchaser whose history falls short of the credit standards is refused mediation: "
            "no partner is asked."
        ),
    ),
    DemoFlow(
        "Marketplace: fraud disclosure to the partner (seed 000 claim 8)",
        fraud_disclosure,
        what=(
            "After an unlawful transaction, the mediating marketplace discloses the purchaser's "
            "identity to the partner, with the reason."
        ),
    ),
]
