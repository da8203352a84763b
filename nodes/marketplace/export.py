"""The marketplace's records of flows for ExportFlowRecords: transactions, invoices, payouts.

A requester's transaction and the supplier's side of the same mediation share the mediated
transaction ID, exported as the record's order number, so that reconciliation can pair
them. Partner calls come from the outbox (PartnerCallRow): the calls this marketplace sent,
with their attempts and the partner's refusal, which is what trace and console draw.
"""

from __future__ import annotations

from typing import Any

from suretynet.marketplace.v1 import marketplace_pb2 as pb
from suretynet.type.v1 import types_pb2

from nodes.common import flow_export as fx
from nodes.marketplace.money import mediation_charge_minor
from storage.marketplace.models import (
    InvoiceRow,
    PartnerCallRow,
    PayoutRow,
    SuppliedTransactionRow,
    TransactionRow,
)
from storage.marketplace.repository import MarketplaceRepository

MARKETPLACE_ROLE = types_pb2.ROLE_MARKETPLACE
PURCHASER = "suretynet.marketplace.v1.PurchaserService/"
MEDIATION = "suretynet.marketplace.v1.MediationService/"
# Marketplace states are compared between requester and supplier as they are stored; only
# the intermediate ones are named, so that lifetimes apply to them.
TRANSACTION_STATES = {"REQUESTED": fx.PENDING, "ESTIMATE_PENDING": fx.PENDING}


def sections(repo: MarketplaceRepository, market_id: str) -> list[fx.Section]:
    """The marketplace's exported tables, in a fixed order (page tokens depend on it)."""
    own, supplied, invoices, payouts = (
        repo.transactions,
        repo.supplied,
        repo.invoices,
        repo.payouts,
    )

    def own_rows(number: str) -> Any:
        query = own.select()
        if number:
            query = query.where(
                (own.transaction_id == number) | (own.mediated_transaction_id == number)
            )
        return query

    def supplied_rows(number: str) -> Any:
        query = supplied.select()
        return query.where(supplied.mediated_transaction_id == number) if number else query

    def invoice_rows(number: str) -> Any:
        query = invoices.select()
        if number:
            query = query.where(
                (invoices.transaction_id == number) | (invoices.mediated_transaction_id == number)
            )
        return query

    def payout_rows(number: str) -> Any:
        query = payouts.select()
        return query.where(payouts.mediated_transaction_id == number) if number else query

    def calls_of(*keys: str) -> list[PartnerCallRow]:
        calls = repo.partner_calls
        condition = None
        for key in filter(None, keys):
            clause = (calls.transaction_id == key) | calls.request_id.contains(key)
            condition = clause if condition is None else condition | clause
        if condition is None:
            return []
        return list(calls.select().where(condition).order_by(calls.created_at))

    return [
        fx.Section(
            types_pb2.FLOW_RECORD_KIND_MEDIATED_TRANSACTION,
            own_rows,
            own.transaction_id,
            lambda row: _own(
                row, calls_of(row.transaction_id, row.mediated_transaction_id), market_id
            ),
        ),
        fx.Section(
            types_pb2.FLOW_RECORD_KIND_MEDIATED_TRANSACTION,
            supplied_rows,
            supplied.mediated_transaction_id,
            lambda row: _supplied(row, calls_of(row.mediated_transaction_id), market_id),
        ),
        fx.Section(
            types_pb2.FLOW_RECORD_KIND_INVOICE,
            invoice_rows,
            invoices.invoice_id,
            lambda row: _invoice(row, market_id),
        ),
        fx.Section(
            types_pb2.FLOW_RECORD_KIND_PAYOUT,
            payout_rows,
            payouts.payout_id,
            lambda row: _payout(row, market_id),
        ),
    ]


def _call_events(calls: list[PartnerCallRow], market_id: str) -> list[types_pb2.FlowEvent]:
    events = []
    for call in calls:
        refused = call.status == "REFUSED"
        events.append(
            fx.event(
                f"{call.method} sent",
                call.created_at,
                method=MEDIATION + call.method,
                sender=market_id,
                receiver=call.partner_marketplace_id,
                refusal_reason=_reason(call.last_error) if refused else "",
                detail=call.last_error[:200]
                if refused
                else ("" if call.status == "DONE" else call.status),
                attempts=call.attempts,
            )
        )
    return events


def _reason(last_error: str) -> str:
    # The outbox keeps the refusal as "REASON: message"; the reason is what operators search.
    head = last_error.split(":", 1)[0].strip()
    return head if head.replace("_", "").isalnum() and head.isupper() else "REFUSED"


def _own(row: TransactionRow, calls: list[PartnerCallRow], market_id: str) -> types_pb2.FlowRecord:
    events = [
        fx.event(
            "purchase requested",
            row.created_at,
            method=PURCHASER + "RequestPurchase",
            sender="purchaser",
            receiver=market_id,
            detail=f"{row.quantity} x {row.commodity_id}",
        ),
        *_call_events(calls, market_id),
    ]
    charge = (
        mediation_charge_minor(row.total_amount_minor, row.fee_basis_points)
        if row.kind == "MEDIATED"
        else 0
    )
    return fx.record(
        entity_id=market_id,
        role=MARKETPLACE_ROLE,
        kind=types_pb2.FLOW_RECORD_KIND_MEDIATED_TRANSACTION,
        key=row.transaction_id,
        order_number=row.mediated_transaction_id,
        stored_state=row.state,
        mapping=TRANSACTION_STATES,
        amount_minor=row.total_amount_minor,
        currency_code=row.currency_code,
        created_at=row.created_at,
        updated_at=row.updated_at,
        events=events,
        counterparts=[row.partner_marketplace_id],
        member_id=row.member_id,
        attributes={
            "side": "requester",
            "transaction_kind": row.kind,
            "settlement_mode": row.settlement_mode,
            "mediation_charge_minor": str(charge),
            "contract_id": row.contract_id,
        },
    )


def _supplied(
    row: SuppliedTransactionRow, calls: list[PartnerCallRow], market_id: str
) -> types_pb2.FlowRecord:
    estimate = pb.Estimate.FromString(bytes(row.estimate))
    events = [
        fx.event(
            "mediated transaction accepted",
            row.created_at,
            sender=market_id,
            detail=f"estimate {estimate.estimate_id}",
        ),
        *_call_events(calls, market_id),
    ]
    return fx.record(
        entity_id=market_id,
        role=MARKETPLACE_ROLE,
        kind=types_pb2.FLOW_RECORD_KIND_MEDIATED_TRANSACTION,
        key=row.mediated_transaction_id,
        order_number=row.mediated_transaction_id,
        stored_state=row.state,
        mapping=TRANSACTION_STATES,
        amount_minor=estimate.total_amount.amount_minor,
        currency_code=estimate.total_amount.currency_code,
        created_at=row.created_at,
        updated_at=row.updated_at,
        events=events,
        counterparts=[row.requesting_marketplace_id],
        anonymous_user_id=row.purchaser_pseudonym,
        attributes={
            "side": "supplier",
            "transaction_kind": "MEDIATED",
            "settlement_mode": row.settlement_mode,
            "contract_id": row.contract_id,
        },
    )


def _invoice(row: InvoiceRow, market_id: str) -> types_pb2.FlowRecord:
    drawee = row.drawee_marketplace_id or row.drawee_member_id or row.drawee_purchaser_pseudonym
    return fx.record(
        entity_id=market_id,
        role=MARKETPLACE_ROLE,
        kind=types_pb2.FLOW_RECORD_KIND_INVOICE,
        key=row.invoice_id,
        order_number=row.mediated_transaction_id,
        stored_state=row.status,
        mapping={},
        amount_minor=row.amount_minor,
        currency_code=row.currency_code,
        created_at=row.issued_at,
        updated_at=row.paid_at or row.issued_at,
        events=[
            fx.event(
                "invoice issued",
                row.issued_at,
                sender=row.issuer_marketplace_id,
                receiver=drawee if row.drawee_marketplace_id else "",
                detail=f"{row.kind} {row.amount_minor} {row.currency_code}",
            )
        ],
        counterparts=[row.issuer_marketplace_id, row.drawee_marketplace_id],
        member_id=row.drawee_member_id,
        anonymous_user_id=row.drawee_purchaser_pseudonym,
        attributes={
            "invoice_kind": row.kind,
            "transaction_id": row.transaction_id,
            "issuer_marketplace_id": row.issuer_marketplace_id,
            "paid_amount_minor": str(row.paid_amount_minor),
        },
    )


def _payout(row: PayoutRow, market_id: str) -> types_pb2.FlowRecord:
    return fx.record(
        entity_id=market_id,
        role=MARKETPLACE_ROLE,
        kind=types_pb2.FLOW_RECORD_KIND_PAYOUT,
        key=row.payout_id,
        order_number=row.mediated_transaction_id,
        stored_state=row.status,
        mapping={},
        amount_minor=row.net_amount_minor,
        currency_code=row.currency_code,
        created_at=row.created_at,
        updated_at=row.paid_at or row.created_at,
        events=[
            fx.event(
                "payout",
                row.created_at,
                sender=row.payer_marketplace_id,
                receiver=row.payee_marketplace_id,
                detail=f"gross {row.gross_amount_minor} less charge {row.mediation_charge_minor}",
            )
        ],
        counterparts=[row.payer_marketplace_id, row.payee_marketplace_id],
        attributes={
            "gross_amount_minor": str(row.gross_amount_minor),
            "mediation_charge_minor": str(row.mediation_charge_minor),
            "payer_marketplace_id": row.payer_marketplace_id,
            "payee_marketplace_id": row.payee_marketplace_id,
        },
    )
