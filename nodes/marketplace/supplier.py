"""The supplying marketplace in a mediation: it quotes, checks the guarantee, supplies.

It knows the purchaser only by the pseudonym in the credit guarantee, and answers only the
marketplace that asked, under a contract in force with it.
"""

from __future__ import annotations

import datetime

from suretynet.marketplace.v1 import marketplace_pb2 as pb

from nodes.common.convert import timestamp
from nodes.common.errors import DomainError, ErrorKind, invalid, required
from nodes.marketplace import catalog, orders, outbox
from nodes.marketplace.catalog import money
from nodes.marketplace.money import CURRENCY_PATTERN, mediation_charge_minor, total_minor
from nodes.marketplace.settings import MarketplaceSettings
from nodes.marketplace.views import invoice_view, parse, supplied_view
from storage.common import statements
from storage.marketplace.models import SuppliedTransactionRow
from storage.marketplace.repository import MarketplaceRepository


def quote(
    repo: MarketplaceRepository,
    commodity_id: str,
    quantity: int,
    settings: MarketplaceSettings,
    now: datetime.datetime,
) -> pb.QuoteCommodityResponse:
    """Whether and at what price this marketplace can supply; not binding."""
    if not commodity_id:
        raise required("commodity_id")
    orders.check_quantity(quantity)
    row = catalog.commodity(repo, commodity_id)
    if row is None:
        return pb.QuoteCommodityResponse(available=False)
    return pb.QuoteCommodityResponse(
        available=row.stock_quantity >= quantity,
        available_quantity=row.stock_quantity,
        unit_price=money(row.unit_price_minor, row.currency_code),
        delivery_days=row.delivery_days,
        valid_until=timestamp(now + settings.estimate_validity),
        commodity_display_name=row.display_name,
    )


def check_guarantee(
    guarantee: pb.CreditGuarantee | None,
    caller_id: str,
    now: datetime.datetime,
    pseudonym: str | None = None,
) -> None:
    """Refuses a request whose credit guarantee is missing, malformed, foreign or expired."""
    if guarantee is None:
        raise DomainError(
            ErrorKind.INVALID_ARGUMENT,
            "GUARANTEE_MISSING",
            "credit_guarantee: a mediated request needs the requester's credit guarantee",
        )
    problems = []
    if guarantee.guarantor_marketplace_id != caller_id:
        problems.append(f"guarantor {guarantee.guarantor_marketplace_id!r} is not the caller")
    if not guarantee.guarantee_id or not guarantee.purchaser_pseudonym:
        problems.append("guarantee_id and purchaser_pseudonym are required")
    if pseudonym is not None and guarantee.purchaser_pseudonym != pseudonym:
        problems.append("the purchaser pseudonym differs from the transaction's")
    amount = guarantee.guaranteed_amount
    if amount.amount_minor <= 0 or not CURRENCY_PATTERN.match(amount.currency_code):
        problems.append("guaranteed_amount must be a positive amount with a currency code")
    if not guarantee.HasField("expires_at"):
        problems.append("expires_at is required")
    if problems:
        raise DomainError(ErrorKind.FAILED_PRECONDITION, "GUARANTEE_INVALID", "; ".join(problems))
    if guarantee.expires_at.ToDatetime() <= now:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "GUARANTEE_EXPIRED",
            f"credit guarantee {guarantee.guarantee_id} expired at "
            f"{guarantee.expires_at.ToJsonString()}",
        )


def _check_covered(guarantee: pb.CreditGuarantee, estimate: pb.Estimate) -> None:
    total = estimate.total_amount
    covered = guarantee.guaranteed_amount
    if total.currency_code != covered.currency_code or total.amount_minor > covered.amount_minor:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "GUARANTEE_EXCEEDED",
            f"the estimate of {total.amount_minor} {total.currency_code} exceeds the "
            f"guaranteed {covered.amount_minor} {covered.currency_code}",
            metadata={
                "estimate_amount_minor": str(total.amount_minor),
                "guaranteed_amount_minor": str(covered.amount_minor),
            },
        )


def _estimate(
    commodity_id: str,
    quantity: int,
    revision: int,
    guarantee: pb.CreditGuarantee,
    repo: MarketplaceRepository,
    settings: MarketplaceSettings,
    now: datetime.datetime,
) -> pb.Estimate:
    row = catalog.commodity(repo, commodity_id)
    if row is None:
        raise DomainError(
            ErrorKind.NOT_FOUND, "COMMODITY_NOT_FOUND", f"no commodity {commodity_id!r}"
        )
    if row.stock_quantity < quantity:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "OUT_OF_STOCK",
            f"fewer than {quantity} units of {commodity_id!r} in stock",
        )
    valid_until = min(now + settings.estimate_validity, guarantee.expires_at.ToDatetime())
    estimate = pb.Estimate(
        estimate_id=orders.new_id("EST"),
        commodity_id=commodity_id,
        quantity=quantity,
        unit_price=money(row.unit_price_minor, row.currency_code),
        total_amount=money(total_minor(row.unit_price_minor, quantity), row.currency_code),
        delivery_days=row.delivery_days,
        revision=revision,
        valid_until=timestamp(valid_until),
    )
    _check_covered(guarantee, estimate)
    return estimate


def supplied(
    repo: MarketplaceRepository, caller_id: str, mediated_transaction_id: str
) -> SuppliedTransactionRow:
    """The caller's mediated transaction here; another marketplace's reads as missing."""
    if not mediated_transaction_id:
        raise required("mediated_transaction_id")
    table = repo.supplied
    row: SuppliedTransactionRow | None = table.get_or_none(
        (table.requesting_marketplace_id == caller_id)
        & (table.mediated_transaction_id == mediated_transaction_id)
    )
    if row is None:
        raise DomainError(
            ErrorKind.NOT_FOUND,
            "TRANSACTION_NOT_FOUND",
            f"no mediated transaction {mediated_transaction_id!r} from {caller_id!r}",
        )
    return row


def accept_request(
    repo: MarketplaceRepository,
    caller_id: str,
    request: pb.RequestMediatedTransactionRequest,
    self_id: str,
    settings: MarketplaceSettings,
    now: datetime.datetime,
) -> pb.RequestMediatedTransactionResponse:
    """Takes a mediated request with its credit guarantee and answers with an estimate."""
    if not request.mediated_transaction_id:
        raise required("mediated_transaction_id")
    if not request.commodity_id:
        raise required("commodity_id")
    orders.check_quantity(request.quantity)
    contract = catalog.inbound_contract(repo, request.contract_id, caller_id, now)
    guarantee = request.credit_guarantee if request.HasField("credit_guarantee") else None
    check_guarantee(guarantee, caller_id, now)
    assert guarantee is not None
    table = repo.supplied
    if table.get_or_none(
        (table.requesting_marketplace_id == caller_id)
        & (table.mediated_transaction_id == request.mediated_transaction_id)
    ):
        raise invalid("mediated_transaction_id", "is already in use by another request")
    estimate = _estimate(request.commodity_id, request.quantity, 1, guarantee, repo, settings, now)
    row = table.create(
        mediated_transaction_id=request.mediated_transaction_id,
        requesting_marketplace_id=caller_id,
        contract_id=contract.contract_id,
        commodity_id=request.commodity_id,
        quantity=request.quantity,
        purchaser_pseudonym=guarantee.purchaser_pseudonym,
        credit_guarantee=guarantee.SerializeToString(),
        estimate=estimate.SerializeToString(),
        state="ESTIMATE_PENDING",
        settlement_mode=contract.settlement_mode,
        created_at=now,
        updated_at=now,
    )
    return pb.RequestMediatedTransactionResponse(
        mediated_transaction=supplied_view(row, self_id), estimate=estimate
    )


def reply(
    repo: MarketplaceRepository,
    caller_id: str,
    request: pb.ReplyToMediatedEstimateRequest,
    self_id: str,
    now: datetime.datetime,
) -> pb.ReplyToMediatedEstimateResponse:
    """The purchaser's reply, relayed (claim 5): acceptance is the order and takes the stock."""
    row = supplied(repo, caller_id, request.mediated_transaction_id)
    orders.require_state(row, ("ESTIMATE_PENDING",), "reply to the estimate of")
    estimate = pb.Estimate.FromString(bytes(row.estimate))
    answer = request.estimate_reply
    if answer.estimate_id != estimate.estimate_id:
        raise invalid("estimate_reply.estimate_id", "is not the current estimate")
    decision = pb.EstimateDecision.Name(answer.decision).removeprefix("ESTIMATE_DECISION_")
    if decision == "ACCEPT":
        if estimate.valid_until.ToDatetime() <= now:
            raise DomainError(
                ErrorKind.FAILED_PRECONDITION,
                "ESTIMATE_EXPIRED",
                f"estimate {estimate.estimate_id} was valid until "
                f"{estimate.valid_until.ToJsonString()}",
            )
        guarantee = pb.CreditGuarantee.FromString(bytes(row.credit_guarantee))
        check_guarantee(guarantee, caller_id, now, row.purchaser_pseudonym)
        catalog.take_stock(repo, row.commodity_id, row.quantity)
        orders.save(row, now, state="ORDERED", reserved_quantity=row.quantity)
    elif decision == "DECLINE":
        orders.save(row, now, state="ESTIMATE_DECLINED")
    else:
        raise invalid("estimate_reply.decision", "must be ACCEPT or DECLINE")
    row.estimate_reply = answer.SerializeToString()
    row.save()
    return pb.ReplyToMediatedEstimateResponse(mediated_transaction=supplied_view(row, self_id))


def amend(
    repo: MarketplaceRepository,
    caller_id: str,
    request: pb.AmendMediatedTransactionRequest,
    self_id: str,
    settings: MarketplaceSettings,
    now: datetime.datetime,
) -> pb.AmendMediatedTransactionResponse:
    """A purchaser's cancel, quantity change or return, relayed by its marketplace."""
    row = supplied(repo, caller_id, request.mediated_transaction_id)
    kind = pb.AmendmentKind.Name(request.kind).removeprefix("AMENDMENT_KIND_")
    response = pb.AmendMediatedTransactionResponse()
    if kind == "CANCEL":
        orders.require_state(row, ("ORDERED",), "cancel")
        _release(repo, row)
        orders.save(row, now, state="CANCELLED")
    elif kind == "CHANGE_QUANTITY":
        orders.require_state(row, ("ORDERED", "ESTIMATE_PENDING"), "change")
        orders.check_quantity(request.quantity)
        guarantee = request.credit_guarantee if request.HasField("credit_guarantee") else None
        check_guarantee(guarantee, caller_id, now, row.purchaser_pseudonym)
        assert guarantee is not None
        previous = pb.Estimate.FromString(bytes(row.estimate))
        # The stock held for the old quantity goes back before the new estimate is priced.
        _release(repo, row)
        estimate = _estimate(
            row.commodity_id,
            request.quantity,
            previous.revision + 1,
            guarantee,
            repo,
            settings,
            now,
        )
        orders.save(
            row,
            now,
            state="ESTIMATE_PENDING",
            quantity=request.quantity,
            estimate=estimate.SerializeToString(),
            credit_guarantee=guarantee.SerializeToString(),
            estimate_reply=None,
        )
        response.estimate.CopyFrom(estimate)
    elif kind == "RETURN_GOODS":
        orders.require_state(row, ("DELIVERED", "SETTLED"), "return the goods of")
        if not request.defective:
            catalog.restock(repo, row.commodity_id, row.quantity)
        invoices = repo.invoices
        invoices.update(status="VOID").where(
            (invoices.mediated_transaction_id == row.mediated_transaction_id)
            & (invoices.issuer_marketplace_id == self_id)
            & (invoices.kind == "PURCHASE")
            & (invoices.status == "OPEN")
            & (invoices.paid_amount_minor == 0)
        ).execute()
        orders.save(row, now, state="RETURNED")
    else:
        raise invalid("kind", "must be CANCEL, CHANGE_QUANTITY or RETURN_GOODS")
    response.mediated_transaction.CopyFrom(supplied_view(row, self_id))
    return response


def _release(repo: MarketplaceRepository, row: SuppliedTransactionRow) -> None:
    if row.reserved_quantity:
        catalog.restock(repo, row.commodity_id, row.reserved_quantity)
        row.reserved_quantity = 0


def ship(
    repo: MarketplaceRepository,
    row: SuppliedTransactionRow,
    update: orders.ShipmentInput,
    settings: MarketplaceSettings,
    now: datetime.datetime,
) -> pb.Shipment:
    """Records a shipment update and the call that reports it to the requester (claim 5)."""
    current = parse(pb.Shipment, row.shipment)
    shipment = orders.next_shipment(current, row.state, update, orders.new_id("SH"), now)
    state = orders.SHIPMENT_STATES[update.status]
    orders.save(row, now, shipment=shipment.SerializeToString(), state=state)
    outbox.enqueue(
        repo,
        row.requesting_marketplace_id,
        pb.ReportShipmentRequest(
            request_id=f"{row.mediated_transaction_id}:shipment:{update.status}",
            mediated_transaction_id=row.mediated_transaction_id,
            shipment_update=pb.ShipmentUpdate(
                shipment=shipment, note=update.note, updated_at=timestamp(now)
            ),
        ),
        now,
        settings.resume_after,
    )
    return shipment


def find_for_shipping(
    repo: MarketplaceRepository, mediated_transaction_id: str
) -> SuppliedTransactionRow | None:
    table = repo.supplied
    rows = list(
        table.select().where(table.mediated_transaction_id == mediated_transaction_id).limit(2)
    )
    if len(rows) > 1:
        raise invalid("transaction_id", "names mediated transactions of two requesters")
    return rows[0] if rows else None


def settle(
    repo: MarketplaceRepository,
    caller_id: str,
    request: pb.SettleMediatedTransactionRequest,
    self_id: str,
    now: datetime.datetime,
) -> pb.SettleMediatedTransactionResponse:
    """Records the requester's settlement records and issues ours (claims 6-7)."""
    row = supplied(repo, caller_id, request.mediated_transaction_id)
    orders.require_state(row, ("DELIVERED",), "settle")
    contract = repo.contracts.get_by_id(row.contract_id)
    estimate = pb.Estimate.FromString(bytes(row.estimate))
    gross = estimate.total_amount
    currency = gross.currency_code
    if (
        request.gross_amount.amount_minor != gross.amount_minor
        or request.gross_amount.currency_code != currency
        or request.mediation_charge.currency_code != currency
    ):
        raise invalid("gross_amount", f"must be the estimate's {gross.amount_minor} {currency}")
    mode = pb.SettlementMode.Name(request.settlement_mode).removeprefix("SETTLEMENT_MODE_")
    charge = request.mediation_charge.amount_minor
    catalog.check_terms(contract, mode, charge, gross.amount_minor)
    assert charge == mediation_charge_minor(gross.amount_minor, contract.fee_basis_points)
    response = pb.SettleMediatedTransactionResponse(settled_at=timestamp(now))
    if mode == "PURCHASER_MARKETPLACE_BILLS":
        payout = request.payout
        if (
            payout.net_amount.amount_minor != gross.amount_minor - charge
            or payout.gross_amount.amount_minor != gross.amount_minor
            or payout.mediation_charge.amount_minor != charge
            or payout.payer_marketplace_id != caller_id
            or payout.payee_marketplace_id != self_id
            or not payout.payout_id
        ):
            raise invalid("payout", "must pay this marketplace the gross amount less the charge")
        repo.payouts.create(
            payout_id=payout.payout_id,
            mediated_transaction_id=row.mediated_transaction_id,
            payer_marketplace_id=caller_id,
            payee_marketplace_id=self_id,
            gross_amount_minor=gross.amount_minor,
            mediation_charge_minor=charge,
            net_amount_minor=gross.amount_minor - charge,
            currency_code=currency,
            status="PAID",
            created_at=now,
            paid_at=now,
        )
    else:
        theirs = request.mediation_charge_invoice
        if (
            theirs.amount.amount_minor != charge
            or theirs.drawee_marketplace_id != self_id
            or theirs.issuer_marketplace_id != caller_id
            or not theirs.invoice_id
        ):
            raise invalid(
                "mediation_charge_invoice", "must bill this marketplace the mediation charge"
            )
        orders.issue_invoice(
            repo,
            kind="MEDIATION_CHARGE",
            issuer_id=caller_id,
            issuer_invoice_id=theirs.invoice_id,
            drawee_marketplace_id=self_id,
            mediated_transaction_id=row.mediated_transaction_id,
            amount_minor=charge,
            currency_code=currency,
            terms_days=contract.payment_terms_days,
            now=now,
        )
        invoice = orders.issue_invoice(
            repo,
            kind="PURCHASE",
            issuer_id=self_id,
            drawee_purchaser_pseudonym=row.purchaser_pseudonym,
            mediated_transaction_id=row.mediated_transaction_id,
            amount_minor=gross.amount_minor,
            currency_code=currency,
            terms_days=contract.payment_terms_days,
            now=now,
        )
        response.purchaser_invoice.CopyFrom(invoice_view(invoice))
    orders.save(row, now, state="SETTLED")
    response.mediated_transaction.CopyFrom(supplied_view(row, self_id))
    return response


def receive_payment(
    repo: MarketplaceRepository,
    caller_id: str,
    request: pb.RecordPurchaserPaymentRequest,
    self_id: str,
    now: datetime.datetime,
) -> pb.RecordPurchaserPaymentResponse:
    """A purchaser's payment of our invoice, relayed by its marketplace (claim 7)."""
    row = supplied(repo, caller_id, request.mediated_transaction_id)
    invoice = orders.get_invoice(repo, request.invoice_id)
    if (
        invoice.mediated_transaction_id != row.mediated_transaction_id
        or invoice.issuer_marketplace_id != self_id
        or invoice.drawee_purchaser_pseudonym != row.purchaser_pseudonym
    ):
        raise DomainError(
            ErrorKind.NOT_FOUND, "INVOICE_NOT_FOUND", f"no invoice {request.invoice_id!r} here"
        )
    paid_at = request.paid_at.ToDatetime() if request.HasField("paid_at") else now
    orders.apply_payment(
        repo, invoice, request.amount.amount_minor, request.amount.currency_code, paid_at, now
    )
    return pb.RecordPurchaserPaymentResponse(invoice=invoice_view(invoice))


def receive_disclosure(
    repo: MarketplaceRepository,
    caller_id: str,
    disclosure: pb.FraudDisclosure,
    self_id: str,
    now: datetime.datetime,
) -> None:
    """Records a partner's disclosure of one of its purchasers (claim 8)."""
    if disclosure.disclosing_marketplace_id != caller_id:
        raise invalid("fraud_disclosure.disclosing_marketplace_id", "must be the caller")
    if disclosure.receiving_marketplace_id != self_id:
        raise invalid("fraud_disclosure.receiving_marketplace_id", "must be this marketplace")
    if not disclosure.disclosure_id or not disclosure.reason:
        raise invalid("fraud_disclosure", "needs a disclosure_id and a reason")
    row = supplied(repo, caller_id, disclosure.mediated_transaction_id)
    if disclosure.purchaser.purchaser_pseudonym != row.purchaser_pseudonym:
        raise invalid(
            "fraud_disclosure.purchaser.purchaser_pseudonym",
            "is not the purchaser of that mediated transaction",
        )
    repo.disclosures.create(
        disclosure_id=disclosure.disclosure_id,
        direction="RECEIVED",
        disclosing_marketplace_id=caller_id,
        receiving_marketplace_id=self_id,
        mediated_transaction_id=row.mediated_transaction_id,
        purchaser_pseudonym=row.purchaser_pseudonym,
        disclosure=disclosure.SerializeToString(),
        recorded_at=now,
    )


def ship_order(
    repo: MarketplaceRepository,
    transaction_id: str,
    update: orders.ShipmentInput,
    *,
    self_id: str,
    settings: MarketplaceSettings,
    now: datetime.datetime,
) -> pb.Shipment:
    """The operator ships an order this marketplace supplies: its own local sale, or one it
    supplies as the partner of a mediation. A mediated order of its own purchasers is
    shipped by the partner that supplies it, never here.
    """
    table = repo.transactions
    own = statements.find(table, transaction_id=transaction_id)
    if own is not None:
        if own.kind != "LOCAL":
            raise DomainError(
                ErrorKind.FAILED_PRECONDITION,
                "TRANSACTION_STATE_INVALID",
                "a mediated order is shipped by the supplying partner",
            )
        return orders.ship_local(repo, own, update, self_id, settings.payment_terms_days, now)
    supplied = find_for_shipping(repo, transaction_id)
    if supplied is None:
        raise DomainError(
            ErrorKind.NOT_FOUND, "TRANSACTION_NOT_FOUND", f"no transaction {transaction_id!r}"
        )
    return ship(repo, supplied, update, settings, now)
