"""Stored rows as protocol messages: the purchaser's view, the operator's, the partner's.

The purchaser's view is built only from columns keyed by this marketplace's own IDs, so a
partner's name or internal IDs have no path to it (claim 5).
"""

from __future__ import annotations

from typing import Any

from suretynet.marketplace.v1 import marketplace_pb2 as pb

from nodes.common.convert import timestamp
from nodes.marketplace.catalog import money
from storage.marketplace.models import (
    FraudDisclosureRow,
    InvoiceRow,
    PayoutRow,
    SuppliedTransactionRow,
    TransactionRow,
)


def state_value(name: str) -> Any:
    return pb.TransactionState.Value("TRANSACTION_STATE_" + name)


def mode_value(name: str) -> Any:
    return pb.SettlementMode.Value("SETTLEMENT_MODE_" + name) if name else 0


def parse(message_type: type[Any], blob: Any) -> Any:
    """A stored message, or None for an empty column."""
    return None if blob is None else message_type.FromString(bytes(blob))


def _transaction_fields(row: TransactionRow) -> dict[str, Any]:
    """What the purchaser's and the operator's views of a transaction share.

    Every one of these is keyed by this marketplace's own IDs (see the module docstring).
    """
    return {
        "transaction_id": row.transaction_id,
        "commodity_id": row.commodity_id,
        "quantity": row.quantity,
        "state": state_value(row.state),
        "estimate": parse(pb.Estimate, row.estimate),
        "total_amount": money(row.total_amount_minor, row.currency_code)
        if row.currency_code
        else None,
        "shipment": parse(pb.Shipment, row.shipment),
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
    }


def purchaser_view(row: TransactionRow) -> pb.PurchaserTransaction:
    return pb.PurchaserTransaction(
        commodity_display_name=row.commodity_display_name, **_transaction_fields(row)
    )


def operator_view(
    row: TransactionRow, enquiry: pb.CreditEnquiryResult | None
) -> pb.MarketplaceTransaction:
    return pb.MarketplaceTransaction(
        member_id=row.member_id,
        kind=pb.TransactionKind.Value("TRANSACTION_KIND_" + row.kind),
        mediated_transaction_id=row.mediated_transaction_id,
        partner_marketplace_id=row.partner_marketplace_id,
        contract_id=row.contract_id,
        settlement_mode=mode_value(row.settlement_mode),
        credit_enquiry_result=enquiry,
        credit_guarantee=parse(pb.CreditGuarantee, row.credit_guarantee),
        marked_unlawful=row.marked_unlawful,
        unlawful_reason=row.unlawful_reason,
        **_transaction_fields(row),
    )


def supplied_view(row: SuppliedTransactionRow, supplier_id: str) -> pb.MediatedTransaction:
    return pb.MediatedTransaction(
        mediated_transaction_id=row.mediated_transaction_id,
        requesting_marketplace_id=row.requesting_marketplace_id,
        supplying_marketplace_id=supplier_id,
        contract_id=row.contract_id,
        commodity_id=row.commodity_id,
        quantity=row.quantity,
        credit_guarantee=parse(pb.CreditGuarantee, row.credit_guarantee),
        estimate=parse(pb.Estimate, row.estimate),
        estimate_reply=parse(pb.EstimateReply, row.estimate_reply),
        state=state_value(row.state),
        shipment=parse(pb.Shipment, row.shipment),
        settlement_mode=mode_value(row.settlement_mode),
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )


def _invoice_fields(row: InvoiceRow) -> dict[str, Any]:
    """What the operator's and the purchaser's views of an invoice share."""
    return {
        "invoice_id": row.invoice_id,
        "transaction_id": row.transaction_id,
        "amount": money(row.amount_minor, row.currency_code),
        "paid_amount": money(row.paid_amount_minor, row.currency_code),
        "status": pb.InvoiceStatus.Value("INVOICE_STATUS_" + row.status),
        "issued_at": timestamp(row.issued_at),
        "due_at": timestamp(row.due_at),
        "paid_at": timestamp(row.paid_at),
    }


def invoice_view(row: InvoiceRow) -> pb.Invoice:
    return pb.Invoice(
        kind=pb.InvoiceKind.Value("INVOICE_KIND_" + row.kind),
        issuer_marketplace_id=row.issuer_marketplace_id,
        drawee_member_id=row.drawee_member_id,
        drawee_purchaser_pseudonym=row.drawee_purchaser_pseudonym,
        drawee_marketplace_id=row.drawee_marketplace_id,
        mediated_transaction_id=row.mediated_transaction_id,
        **_invoice_fields(row),
    )


def purchaser_invoice_view(row: InvoiceRow) -> pb.PurchaserInvoice:
    """The purchaser's invoice: under this marketplace's ID, naming no issuer (claim 5)."""
    return pb.PurchaserInvoice(**_invoice_fields(row))


def payout_view(row: PayoutRow) -> pb.Payout:
    return pb.Payout(
        payout_id=row.payout_id,
        mediated_transaction_id=row.mediated_transaction_id,
        payer_marketplace_id=row.payer_marketplace_id,
        payee_marketplace_id=row.payee_marketplace_id,
        gross_amount=money(row.gross_amount_minor, row.currency_code),
        mediation_charge=money(row.mediation_charge_minor, row.currency_code),
        net_amount=money(row.net_amount_minor, row.currency_code),
        status=pb.PayoutStatus.Value("PAYOUT_STATUS_" + row.status),
        paid_at=timestamp(row.paid_at),
    )


def disclosure_view(row: FraudDisclosureRow) -> pb.FraudDisclosure:
    disclosure: pb.FraudDisclosure = pb.FraudDisclosure.FromString(bytes(row.disclosure))
    return disclosure
