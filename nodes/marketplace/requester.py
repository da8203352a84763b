"""The purchaser's marketplace in a mediation (claims 1-8): it asks, relays, settles, discloses.

Plain functions over the repository, each inside one transaction. Every step that needs the
partner records its call (``outbox.enqueue``) together with its own state change; the
``apply_*`` functions take the partner's answer into the purchaser's transaction.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from google.protobuf.message import Message
from suretynet.marketplace.v1 import marketplace_pb2 as pb

from nodes.common import metrics
from nodes.common.convert import timestamp
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.identity import entity_uri
from nodes.marketplace import catalog, credit, data_log, members, orders, outbox
from nodes.marketplace.catalog import money
from nodes.marketplace.money import BASIS_POINTS_PER_UNIT, mediation_charge_minor, total_minor
from nodes.marketplace.settings import MarketplaceSettings
from nodes.marketplace.views import invoice_view, payout_view
from storage.marketplace.models import MediationContractRow, TransactionRow
from storage.marketplace.repository import MarketplaceRepository

# The recorded call whose refusal undoes the whole mediated transaction.
REQUEST = "RequestMediatedTransaction"


@dataclass(frozen=True)
class Quote:
    """A partner's answer to QuoteCommodity under one contract."""

    contract: MediationContractRow
    available: bool
    unit_price_minor: int
    currency_code: str
    delivery_days: int
    # The partner's name for the commodity; shown to the purchaser (it names no partner).
    commodity_display_name: str = ""


def choose_partner(quotes: list[Quote], currency_code: str) -> Quote | None:
    """The cheapest partner that can supply, then the fastest, then by contract ID (claim 1)."""
    eligible = [
        quote for quote in quotes if quote.available and quote.currency_code == currency_code
    ]
    if not eligible:
        return None
    return min(
        eligible,
        key=lambda quote: (quote.unit_price_minor, quote.delivery_days, quote.contract.contract_id),
    )


def issue_guarantee(
    repo: MarketplaceRepository,
    *,
    self_id: str,
    member_id: str,
    partner_id: str,
    amount_minor: int,
    currency_code: str,
    settings: MarketplaceSettings,
    now: datetime.datetime,
) -> pb.CreditGuarantee:
    """The credit guarantee attached to a mediated request (claim 1): who, whom, how much."""
    headroom = amount_minor * settings.guarantee_headroom_basis_points // BASIS_POINTS_PER_UNIT
    issued = pb.CreditGuarantee(
        guarantee_id=orders.new_id("GU"),
        guarantor_marketplace_id=self_id,
        purchaser_pseudonym=members.pseudonym(repo, member_id, partner_id),
        guaranteed_amount=money(amount_minor + headroom, currency_code),
        issued_at=timestamp(now),
        expires_at=timestamp(now + settings.guarantee_validity),
    )
    data_log.guarantee(repo, member_id, partner_id, issued)
    return issued


def open_mediation(
    repo: MarketplaceRepository,
    *,
    member_id: str,
    transaction_id: str,
    request_sha256: str,
    commodity_id: str,
    quantity: int,
    enquiry: pb.CreditEnquiryResult,
    quote: Quote,
    self_id: str,
    settings: MarketplaceSettings,
    call_request_id: str,
    now: datetime.datetime,
) -> str:
    """Opens the mediated transaction and records the request to the partner (claim 1)."""
    contract = quote.contract
    partner_id = contract.partner_marketplace_id
    guarantee = issue_guarantee(
        repo,
        self_id=self_id,
        member_id=member_id,
        partner_id=partner_id,
        amount_minor=total_minor(quote.unit_price_minor, quantity),
        currency_code=quote.currency_code,
        settings=settings,
        now=now,
    )
    local = catalog.commodity(repo, commodity_id)
    mediated_id = orders.new_id("MT")
    repo.transactions.create(
        transaction_id=transaction_id,
        member_id=member_id,
        request_sha256=request_sha256,
        kind="MEDIATED",
        commodity_id=commodity_id,
        commodity_display_name=local.display_name
        if local
        else quote.commodity_display_name or commodity_id,
        quantity=quantity,
        state="REQUESTED",
        mediated_transaction_id=mediated_id,
        partner_marketplace_id=partner_id,
        contract_id=contract.contract_id,
        settlement_mode=contract.settlement_mode,
        fee_basis_points=contract.fee_basis_points,
        credit_enquiry_id=enquiry.credit_enquiry_id,
        credit_guarantee=guarantee.SerializeToString(),
        created_at=now,
        updated_at=now,
    )
    outbox.enqueue(
        repo,
        partner_id,
        pb.RequestMediatedTransactionRequest(
            request_id=call_request_id,
            mediated_transaction_id=mediated_id,
            contract_id=contract.contract_id,
            commodity_id=commodity_id,
            quantity=quantity,
            credit_guarantee=guarantee,
        ),
        now,
        settings.resume_after,
        transaction_id=transaction_id,
    )
    return mediated_id


def record_reply(
    repo: MarketplaceRepository,
    row: TransactionRow,
    estimate_id: str,
    decision: str,
    call_request_id: str,
    settings: MarketplaceSettings,
    now: datetime.datetime,
) -> None:
    """Records the purchaser's reply to the partner's estimate for relay (claim 5)."""
    orders.require_state(row, ("ESTIMATE_PENDING",), "reply to the estimate of")
    current = pb.Estimate.FromString(bytes(row.estimate or b""))
    if estimate_id != current.estimate_id:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "TRANSACTION_STATE_INVALID",
            f"estimate {estimate_id!r} is not the current one ({current.estimate_id})",
        )
    _enqueue(
        repo,
        row,
        pb.ReplyToMediatedEstimateRequest(
            request_id=call_request_id,
            mediated_transaction_id=row.mediated_transaction_id,
            estimate_reply=pb.EstimateReply(
                estimate_id=row.partner_estimate_id,
                decision=pb.EstimateDecision.Value("ESTIMATE_DECISION_" + decision),
                replied_at=timestamp(now),
            ),
        ),
        settings,
        now,
    )


def record_amendment(
    repo: MarketplaceRepository,
    row: TransactionRow,
    request: pb.AmendMediatedTransactionRequest,
    settings: MarketplaceSettings,
    self_id: str,
    now: datetime.datetime,
) -> pb.CreditEnquiryResult | None:
    """Records a cancel, change or return of a mediated order for relay to the partner.

    A quantity change needs a fresh guarantee for the new amount, and so a fresh credit
    enquiry (claim 2); its result is returned, and the change is not relayed if it failed.
    """
    kind = pb.AmendmentKind.Name(request.kind).removeprefix("AMENDMENT_KIND_")
    if kind == "CANCEL":
        orders.require_state(row, orders.NOT_SHIPPED, "cancel")
    elif kind == "RETURN_GOODS":
        orders.require_state(row, orders.RETURNABLE, "return the goods of")
    else:
        orders.require_state(row, ("ORDERED", "ESTIMATE_PENDING"), "change")
        orders.check_quantity(request.quantity)
        enquiry = credit.enquire(repo, row.member_id, now)
        data_log.credit_enquiry(
            repo,
            enquiry,
            by=entity_uri("marketplace", self_id),
            purpose="before asking the partner marketplace to change your order",
            reference=row.transaction_id,
        )
        if not enquiry.guaranteed:
            return enquiry
        request.credit_guarantee.CopyFrom(
            issue_guarantee(
                repo,
                self_id=self_id,
                member_id=row.member_id,
                partner_id=row.partner_marketplace_id,
                amount_minor=total_minor(row.unit_price_minor, request.quantity),
                currency_code=row.currency_code,
                settings=settings,
                now=now,
            )
        )
    request.mediated_transaction_id = row.mediated_transaction_id
    _enqueue(repo, row, request, settings, now)
    return None


def _enqueue(
    repo: MarketplaceRepository,
    row: TransactionRow,
    request: Message,
    settings: MarketplaceSettings,
    now: datetime.datetime,
) -> None:
    """Records a relay step of ``row`` for its partner; one step at a time per transaction."""
    outbox.enqueue(
        repo,
        row.partner_marketplace_id,
        request,
        now,
        settings.resume_after,
        transaction_id=row.transaction_id,
    )


def _our_estimate(row: TransactionRow, estimate: pb.Estimate) -> pb.Estimate:
    """The partner's estimate under this marketplace's own ID, for the purchaser (claim 5)."""
    ours = pb.Estimate()
    ours.CopyFrom(estimate)
    ours.estimate_id = f"E-{row.transaction_id}-{estimate.revision}"
    return ours


def apply_estimate(
    row: TransactionRow, estimate: pb.Estimate, now: datetime.datetime
) -> TransactionRow:
    guarantee = pb.CreditGuarantee.FromString(bytes(row.credit_guarantee or b""))
    # The partner refuses an estimate above the guarantee; never relay one that slipped by.
    assert estimate.total_amount.amount_minor <= guarantee.guaranteed_amount.amount_minor
    assert estimate.total_amount.amount_minor == total_minor(
        estimate.unit_price.amount_minor, estimate.quantity
    )
    return orders.save(
        row,
        now,
        state="ESTIMATE_PENDING",
        quantity=estimate.quantity,
        estimate=_our_estimate(row, estimate).SerializeToString(),
        partner_estimate_id=estimate.estimate_id,
        unit_price_minor=estimate.unit_price.amount_minor,
        total_amount_minor=estimate.total_amount.amount_minor,
        currency_code=estimate.total_amount.currency_code,
    )


def apply_answer(
    repo: MarketplaceRepository,
    row: TransactionRow,
    method: str,
    request: Message,
    response: Message,
    self_id: str,
    now: datetime.datetime,
) -> None:
    """Takes a partner's answer into the purchaser's transaction (relay, claim 5)."""
    if isinstance(response, pb.RequestMediatedTransactionResponse):
        apply_estimate(row, response.estimate, now)
    elif isinstance(response, pb.ReplyToMediatedEstimateResponse):
        state = pb.TransactionState.Name(response.mediated_transaction.state)
        orders.save(row, now, state=state.removeprefix("TRANSACTION_STATE_"))
    elif isinstance(response, pb.AmendMediatedTransactionResponse):
        assert isinstance(request, pb.AmendMediatedTransactionRequest)
        _apply_amendment(repo, row, request, response, now)
    elif isinstance(response, pb.SettleMediatedTransactionResponse):
        _apply_settlement(repo, row, response, self_id, now)


def _apply_amendment(
    repo: MarketplaceRepository,
    row: TransactionRow,
    request: pb.AmendMediatedTransactionRequest,
    response: pb.AmendMediatedTransactionResponse,
    now: datetime.datetime,
) -> None:
    kind = pb.AmendmentKind.Name(request.kind).removeprefix("AMENDMENT_KIND_")
    if kind == "CANCEL":
        credit.record_event(
            repo, row.member_id, "ORDER_CANCELS", row.transaction_id, request.reason, now
        )
        orders.save(row, now, state="CANCELLED")
    elif kind == "RETURN_GOODS":
        orders.record_return(repo, row, request.defective, request.reason, now)
        orders.save(row, now, state="RETURNED")
    else:
        detail = f"quantity {row.quantity} -> {request.quantity}: {request.reason}"
        credit.record_event(repo, row.member_id, "ORDER_CHANGES", row.transaction_id, detail, now)
        row.credit_guarantee = request.credit_guarantee.SerializeToString()
        apply_estimate(row, response.estimate, now)


def relay_shipment(
    repo: MarketplaceRepository,
    caller_id: str,
    request: pb.ReportShipmentRequest,
    settings: MarketplaceSettings,
    self_id: str,
    now: datetime.datetime,
) -> None:
    """Shows the partner's shipment update as this marketplace's own (claim 5).

    Delivery completes the transaction and starts settlement per the contract (claims 6-7).
    """
    table = repo.transactions
    row: TransactionRow | None = table.get_or_none(
        (table.mediated_transaction_id == request.mediated_transaction_id)
        & (table.partner_marketplace_id == caller_id)
    )
    if row is None:
        raise DomainError(
            ErrorKind.NOT_FOUND,
            "TRANSACTION_NOT_FOUND",
            f"no mediated transaction {request.mediated_transaction_id!r} with {caller_id!r}",
        )
    update = request.shipment_update.shipment
    status = pb.ShipmentStatus.Name(update.status).removeprefix("SHIPMENT_STATUS_")
    state = orders.SHIPMENT_STATES.get(status)
    if state is None:
        raise DomainError(
            ErrorKind.INVALID_ARGUMENT,
            "FIELD_INVALID",
            "shipment_update.shipment.status: must be PREPARING, SHIPPED or DELIVERED",
        )
    if row.state not in ("ORDERED", "SHIPPED"):
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "TRANSACTION_STATE_INVALID",
            f"the mediated transaction is {row.state} here",
        )
    ours = pb.Shipment()
    ours.CopyFrom(update)
    ours.shipment_id = f"SH-{row.transaction_id}"
    orders.save(row, now, shipment=ours.SerializeToString(), state=state)
    if state == "DELIVERED":
        start_settlement(repo, row, settings, self_id, now)


def start_settlement(
    repo: MarketplaceRepository,
    row: TransactionRow,
    settings: MarketplaceSettings,
    self_id: str,
    now: datetime.datetime,
) -> None:
    """Issues this side's settlement records and records the call that sends them."""
    contract = repo.contracts.get_by_id(row.contract_id)
    gross = row.total_amount_minor
    charge = mediation_charge_minor(gross, row.fee_basis_points)
    currency = row.currency_code
    request = pb.SettleMediatedTransactionRequest(
        request_id=f"{row.transaction_id}:settle",
        mediated_transaction_id=row.mediated_transaction_id,
        settlement_mode=pb.SettlementMode.Value("SETTLEMENT_MODE_" + row.settlement_mode),
        gross_amount=money(gross, currency),
        mediation_charge=money(charge, currency),
    )
    if row.settlement_mode == "PURCHASER_MARKETPLACE_BILLS":
        # Claim 6: we bill the purchaser and pay the partner the amount less our charge.
        orders.issue_invoice(
            repo,
            kind="PURCHASE",
            issuer_id=self_id,
            drawee_member_id=row.member_id,
            transaction_id=row.transaction_id,
            mediated_transaction_id=row.mediated_transaction_id,
            amount_minor=gross,
            currency_code=currency,
            terms_days=contract.payment_terms_days,
            now=now,
        )
        payout = repo.payouts.create(
            payout_id=orders.new_id("PO"),
            mediated_transaction_id=row.mediated_transaction_id,
            payer_marketplace_id=self_id,
            payee_marketplace_id=row.partner_marketplace_id,
            gross_amount_minor=gross,
            mediation_charge_minor=charge,
            net_amount_minor=gross - charge,
            currency_code=currency,
            status="PENDING",
            created_at=now,
        )
        request.payout.CopyFrom(payout_view(payout))
    else:
        # Claim 7: the partner bills the purchaser; we bill the partner our charge.
        invoice = orders.issue_invoice(
            repo,
            kind="MEDIATION_CHARGE",
            issuer_id=self_id,
            drawee_marketplace_id=row.partner_marketplace_id,
            transaction_id=row.transaction_id,
            mediated_transaction_id=row.mediated_transaction_id,
            amount_minor=charge,
            currency_code=currency,
            terms_days=contract.payment_terms_days,
            now=now,
        )
        request.mediation_charge_invoice.CopyFrom(invoice_view(invoice))
        # The partner's copy must not point at our purchaser-side transaction.
        request.mediation_charge_invoice.transaction_id = ""
    _enqueue(repo, row, request, settings, now)


def _apply_settlement(
    repo: MarketplaceRepository,
    row: TransactionRow,
    response: pb.SettleMediatedTransactionResponse,
    self_id: str,
    now: datetime.datetime,
) -> None:
    if row.settlement_mode == "PURCHASER_MARKETPLACE_BILLS":
        payouts = repo.payouts
        payouts.update(status="PAID", paid_at=now).where(
            (payouts.mediated_transaction_id == row.mediated_transaction_id)
            & (payouts.payer_marketplace_id == self_id)
        ).execute()
    else:
        # The partner's invoice to the purchaser, mirrored under our own invoice ID so the
        # purchaser sees an invoice from its own marketplace (claims 5, 7).
        theirs = response.purchaser_invoice
        mirror = orders.issue_invoice(
            repo,
            kind="PURCHASE",
            issuer_id=row.partner_marketplace_id,
            issuer_invoice_id=theirs.invoice_id,
            drawee_member_id=row.member_id,
            drawee_purchaser_pseudonym=theirs.drawee_purchaser_pseudonym,
            transaction_id=row.transaction_id,
            mediated_transaction_id=row.mediated_transaction_id,
            amount_minor=theirs.amount.amount_minor,
            currency_code=theirs.amount.currency_code,
            terms_days=0,
            now=now,
        )
        mirror.issued_at = theirs.issued_at.ToDatetime()
        mirror.due_at = theirs.due_at.ToDatetime()
        mirror.save()
    orders.save(row, now, state="SETTLED")
    metrics.flow_outcome("mediation", "completed")


def relay_payment(
    repo: MarketplaceRepository,
    invoice_id: str,
    amount_minor: int,
    currency_code: str,
    paid_at: datetime.datetime,
    self_id: str,
    settings: MarketplaceSettings,
    now: datetime.datetime,
) -> pb.Invoice:
    """Records a payment; on a partner's invoice (claim 7) it is relayed to the partner."""
    invoice = orders.get_invoice(repo, invoice_id)
    orders.apply_payment(repo, invoice, amount_minor, currency_code, paid_at, now)
    if invoice.issuer_marketplace_id != self_id:
        row = orders.owned(repo, None, invoice.transaction_id)
        call_id = f"{invoice.invoice_id}:payment:{invoice.paid_amount_minor}"
        # A payment never waits for a relay step of its transaction, nor blocks one.
        outbox.enqueue(
            repo,
            row.partner_marketplace_id,
            pb.RecordPurchaserPaymentRequest(
                request_id=call_id,
                mediated_transaction_id=invoice.mediated_transaction_id,
                invoice_id=invoice.issuer_invoice_id,
                amount=money(amount_minor, currency_code),
                paid_at=timestamp(paid_at),
            ),
            now,
            settings.resume_after,
        )
    return invoice_view(invoice)


def mark_unlawful(
    repo: MarketplaceRepository,
    row: TransactionRow,
    reason: str,
    self_id: str,
    settings: MarketplaceSettings,
    now: datetime.datetime,
) -> pb.FraudDisclosure | None:
    """Marks the transaction unlawful; a mediated one discloses the purchaser (claim 8).

    The disclosure goes to the partner of this transaction and to no other: the partner
    already knows the purchaser by the pseudonym it was given, and learns who it is.
    """
    if row.marked_unlawful:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "TRANSACTION_STATE_INVALID",
            f"transaction {row.transaction_id} is marked unlawful already",
        )
    orders.save(row, now, marked_unlawful=True, unlawful_reason=reason)
    if row.kind != "MEDIATED":
        return None
    member = members.get_member(repo, row.member_id)
    partner_id = row.partner_marketplace_id
    disclosure = pb.FraudDisclosure(
        disclosure_id=orders.new_id("FD"),
        disclosing_marketplace_id=self_id,
        receiving_marketplace_id=partner_id,
        mediated_transaction_id=row.mediated_transaction_id,
        purchaser=pb.DisclosedPurchaser(
            purchaser_pseudonym=members.pseudonym(repo, row.member_id, partner_id),
            kind=pb.ContractMemberKind.Value("CONTRACT_MEMBER_KIND_" + member.kind),
            display_name=member.display_name,
            contact_email=member.contact_email,
            postal_address=member.postal_address,
            contact_telephone=member.contact_telephone,
            corporate_registration_number=member.corporate_registration_number,
        ),
        reason=reason,
        disclosed_at=timestamp(now),
    )
    data_log.fraud(repo, row.member_id, disclosure)
    repo.disclosures.create(
        disclosure_id=disclosure.disclosure_id,
        direction="SENT",
        disclosing_marketplace_id=self_id,
        receiving_marketplace_id=partner_id,
        mediated_transaction_id=row.mediated_transaction_id,
        purchaser_pseudonym=disclosure.purchaser.purchaser_pseudonym,
        disclosure=disclosure.SerializeToString(),
        recorded_at=now,
    )
    # Not tied to the transaction's step lock: a disclosure never waits for a relay.
    outbox.enqueue(
        repo,
        partner_id,
        pb.DiscloseFraudRequest(
            request_id=f"{row.transaction_id}:disclose", fraud_disclosure=disclosure
        ),
        now,
        settings.resume_after,
    )
    return disclosure


def mediated_view(row: TransactionRow, self_id: str) -> pb.MediatedTransaction:
    """The requester's copy of the shared record, keyed by the partner's estimate ID."""
    estimate = pb.Estimate.FromString(bytes(row.estimate or b"")) if row.estimate else None
    if estimate is not None:
        estimate.estimate_id = row.partner_estimate_id
    shipment = pb.Shipment.FromString(bytes(row.shipment)) if row.shipment else None
    return pb.MediatedTransaction(
        mediated_transaction_id=row.mediated_transaction_id,
        requesting_marketplace_id=self_id,
        supplying_marketplace_id=row.partner_marketplace_id,
        contract_id=row.contract_id,
        commodity_id=row.commodity_id,
        quantity=row.quantity,
        credit_guarantee=pb.CreditGuarantee.FromString(bytes(row.credit_guarantee or b"")),
        estimate=estimate,
        state=pb.TransactionState.Value("TRANSACTION_STATE_" + row.state),
        shipment=shipment,
        settlement_mode=pb.SettlementMode.Value("SETTLEMENT_MODE_" + row.settlement_mode),
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )
