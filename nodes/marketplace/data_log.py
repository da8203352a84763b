"""What the marketplace records of each disclosure of a purchaser's data (the purchaser
lists them with PurchaserService/ListDataDisclosures; see nodes/common/disclosures.py)."""

from __future__ import annotations

from suretynet.marketplace.v1 import marketplace_pb2 as pb

from nodes.common import disclosures
from nodes.common.identity import entity_uri
from storage.marketplace.repository import MarketplaceRepository


def credit_enquiry(
    repo: MarketplaceRepository,
    enquiry: pb.CreditEnquiryResult,
    *,
    by: str,
    purpose: str,
    reference: str = "",
) -> None:
    """A credit enquiry read the purchaser's history (seed 000 claims 2-4)."""
    outcome = "guarantee given" if enquiry.guaranteed else "guarantee refused"
    disclosures.record(
        repo.data_disclosures,
        member_id=enquiry.member_id,
        kind="CREDIT_ENQUIRY",
        recipient=by,
        data=(
            "your purchase history here (order cancels, order changes, non-defective returns, "
            f"payment delays): {enquiry.total_points} points against a threshold of "
            f"{enquiry.threshold_points}, {outcome}"
        ),
        purpose=purpose,
        reference=reference or enquiry.credit_enquiry_id,
    )


def guarantee(
    repo: MarketplaceRepository, member_id: str, partner_id: str, issued: pb.CreditGuarantee
) -> None:
    """A credit guarantee for the purchaser, under a pseudonym, went to a partner (claim 1)."""
    amount = issued.guaranteed_amount
    disclosures.record(
        repo.data_disclosures,
        member_id=member_id,
        kind="CREDIT_GUARANTEE",
        recipient=entity_uri("marketplace", partner_id),
        data=(
            f"credit guarantee {issued.guarantee_id} for you under the pseudonym "
            f"{issued.purchaser_pseudonym}, up to {amount.amount_minor} {amount.currency_code} "
            "(never your name or member ID)"
        ),
        purpose="attached to a request to a partner marketplace for a commodity not in stock here",
        reference=issued.guarantee_id,
    )


def fraud(repo: MarketplaceRepository, member_id: str, disclosure: pb.FraudDisclosure) -> None:
    """The purchaser's identity went to the partner of an unlawful transaction (claim 8)."""
    disclosures.record(
        repo.data_disclosures,
        member_id=member_id,
        kind="FRAUD_DISCLOSURE",
        recipient=entity_uri("marketplace", disclosure.receiving_marketplace_id),
        data=(
            "your name, kind, contact e-mail, postal address, telephone and registration "
            f"number, linked to the pseudonym {disclosure.purchaser.purchaser_pseudonym}"
        ),
        purpose=f"transaction marked unlawful: {disclosure.reason}",
        reference=disclosure.mediated_transaction_id,
    )
