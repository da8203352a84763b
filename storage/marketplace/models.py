"""Marketplace tables: commodities, contract members, history, contracts, transactions, money.

Money columns are integer minor units with a currency code beside them. Nested records that
are only ever read whole (estimates, shipments, credit enquiries, guarantees) are stored as
their serialized protobuf message, so the wire record and the stored record cannot drift.
"""

from __future__ import annotations

import peewee

from storage.common.models import utc_now


class SettingRow(peewee.Model):
    """Node-wide settings and secrets (the pseudonym key, the credit threshold)."""

    name = peewee.CharField(max_length=64, primary_key=True)
    value = peewee.TextField()
    updated_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "setting"


class CommodityRow(peewee.Model):
    """A commodity this marketplace sells from its own stock."""

    commodity_id = peewee.CharField(max_length=64, primary_key=True)
    display_name = peewee.CharField(max_length=200)
    description = peewee.TextField(default="")
    unit_price_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    stock_quantity = peewee.BigIntegerField()
    delivery_days = peewee.IntegerField()
    updated_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "commodity"


class ContractMemberRow(peewee.Model):
    """A purchaser holding a contract with this marketplace: a corporation or an individual."""

    member_id = peewee.CharField(max_length=64, primary_key=True)
    kind = peewee.CharField(max_length=16)
    display_name = peewee.CharField(max_length=200)
    contact_email = peewee.CharField(max_length=200, default="")
    postal_address = peewee.TextField(default="")
    contact_telephone = peewee.CharField(max_length=32, default="")
    corporate_registration_number = peewee.CharField(max_length=64, default="")
    status = peewee.CharField(max_length=16, default="ACTIVE")
    # scrypt hash of the password with its per-member salt; the password is never stored.
    password_salt = peewee.BlobField()
    password_hash = peewee.BlobField()
    enrolled_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "contract_member"


class SessionRow(peewee.Model):
    """A purchaser session; only the token's SHA-256 is stored."""

    token_sha256 = peewee.CharField(max_length=64, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    issued_at = peewee.DateTimeField(default=utc_now)
    expires_at = peewee.DateTimeField()

    class Meta:
        table_name = "session"


class MediationContractRow(peewee.Model):
    """A mediation contract with a partner marketplace (claim 1)."""

    contract_id = peewee.CharField(max_length=64, primary_key=True)
    partner_marketplace_id = peewee.CharField(max_length=64, index=True)
    fee_basis_points = peewee.IntegerField()
    settlement_mode = peewee.CharField(max_length=40)
    direction = peewee.CharField(max_length=16)
    payment_terms_days = peewee.IntegerField()
    active = peewee.BooleanField(default=True)
    effective_from = peewee.DateTimeField()
    effective_until = peewee.DateTimeField(null=True)
    updated_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "mediation_contract"


class CreditStandardRow(peewee.Model):
    """The estimation standard of one credit enquiry item (claim 4)."""

    item = peewee.CharField(max_length=32, primary_key=True)
    max_count = peewee.IntegerField()
    window_days = peewee.IntegerField()

    class Meta:
        table_name = "credit_standard"


class HistoryEventRow(peewee.Model):
    """One event of a purchaser's purchase history, recorded by the RPC that caused it."""

    id = peewee.AutoField()
    member_id = peewee.CharField(max_length=64)
    item = peewee.CharField(max_length=32)
    transaction_id = peewee.CharField(max_length=64)
    detail = peewee.CharField(max_length=500, default="")
    occurred_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "history_event"
        indexes = ((("member_id", "item", "occurred_at"), False),)


class CreditEnquiryRow(peewee.Model):
    """A credit enquiry as it ran, kept so that a refusal can be explained later."""

    credit_enquiry_id = peewee.CharField(max_length=64, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    guaranteed = peewee.BooleanField()
    result = peewee.BlobField()  # CreditEnquiryResult
    enquired_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "credit_enquiry"


class TransactionRow(peewee.Model):
    """A purchaser's transaction with this marketplace, local or mediated."""

    transaction_id = peewee.CharField(max_length=64, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    # SHA-256 of the RequestPurchase that opened it: a retry must be the same request.
    request_sha256 = peewee.CharField(max_length=64)
    kind = peewee.CharField(max_length=16)
    commodity_id = peewee.CharField(max_length=64)
    commodity_display_name = peewee.CharField(max_length=200, default="")
    quantity = peewee.BigIntegerField()
    state = peewee.CharField(max_length=24)
    unit_price_minor = peewee.BigIntegerField(default=0)
    total_amount_minor = peewee.BigIntegerField(default=0)
    currency_code = peewee.CharField(max_length=3, default="")
    estimate = peewee.BlobField(null=True)  # Estimate, keyed by this marketplace's IDs
    partner_estimate_id = peewee.CharField(max_length=64, default="")
    shipment = peewee.BlobField(null=True)  # Shipment, keyed by this marketplace's IDs
    mediated_transaction_id = peewee.CharField(max_length=64, default="", index=True)
    partner_marketplace_id = peewee.CharField(max_length=64, default="")
    contract_id = peewee.CharField(max_length=64, default="")
    settlement_mode = peewee.CharField(max_length=40, default="")
    fee_basis_points = peewee.IntegerField(default=0)
    credit_enquiry_id = peewee.CharField(max_length=64, default="")
    credit_guarantee = peewee.BlobField(null=True)  # CreditGuarantee
    marked_unlawful = peewee.BooleanField(default=False)
    unlawful_reason = peewee.CharField(max_length=500, default="")
    created_at = peewee.DateTimeField(default=utc_now, index=True)
    updated_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "marketplace_transaction"


class SuppliedTransactionRow(peewee.Model):
    """A mediated transaction this marketplace supplies for a partner's purchaser."""

    mediated_transaction_id = peewee.CharField(max_length=64)
    requesting_marketplace_id = peewee.CharField(max_length=64)
    contract_id = peewee.CharField(max_length=64)
    commodity_id = peewee.CharField(max_length=64)
    quantity = peewee.BigIntegerField()
    purchaser_pseudonym = peewee.CharField(max_length=64, index=True)
    credit_guarantee = peewee.BlobField()  # CreditGuarantee
    estimate = peewee.BlobField()  # Estimate
    estimate_reply = peewee.BlobField(null=True)  # EstimateReply
    state = peewee.CharField(max_length=24)
    shipment = peewee.BlobField(null=True)  # Shipment
    settlement_mode = peewee.CharField(max_length=40)
    reserved_quantity = peewee.BigIntegerField(default=0)
    created_at = peewee.DateTimeField(default=utc_now, index=True)
    updated_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "supplied_transaction"
        primary_key = peewee.CompositeKey("requesting_marketplace_id", "mediated_transaction_id")


class InvoiceRow(peewee.Model):
    """An invoice this marketplace issued, or a partner's invoice it mirrors (claims 6-7)."""

    invoice_id = peewee.CharField(max_length=64, primary_key=True)
    kind = peewee.CharField(max_length=24)
    issuer_marketplace_id = peewee.CharField(max_length=64)
    # The issuer's own ID when this row mirrors a partner's invoice; "" when we issued it.
    issuer_invoice_id = peewee.CharField(max_length=64, default="")
    drawee_member_id = peewee.CharField(max_length=64, default="", index=True)
    drawee_purchaser_pseudonym = peewee.CharField(max_length=64, default="")
    drawee_marketplace_id = peewee.CharField(max_length=64, default="")
    transaction_id = peewee.CharField(max_length=64, default="", index=True)
    mediated_transaction_id = peewee.CharField(max_length=64, default="", index=True)
    amount_minor = peewee.BigIntegerField()
    paid_amount_minor = peewee.BigIntegerField(default=0)
    currency_code = peewee.CharField(max_length=3)
    status = peewee.CharField(max_length=8, default="OPEN")
    issued_at = peewee.DateTimeField(default=utc_now, index=True)
    due_at = peewee.DateTimeField()
    paid_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "invoice"


class PayoutRow(peewee.Model):
    """A payout of a purchase amount less the mediation charge, paid or received (claim 6)."""

    payout_id = peewee.CharField(max_length=64, primary_key=True)
    mediated_transaction_id = peewee.CharField(max_length=64, index=True)
    payer_marketplace_id = peewee.CharField(max_length=64)
    payee_marketplace_id = peewee.CharField(max_length=64)
    gross_amount_minor = peewee.BigIntegerField()
    mediation_charge_minor = peewee.BigIntegerField()
    net_amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    status = peewee.CharField(max_length=8)
    created_at = peewee.DateTimeField(default=utc_now, index=True)
    paid_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "payout"


class FraudDisclosureRow(peewee.Model):
    """A purchaser disclosure sent to, or received from, a partner (claim 8)."""

    disclosure_id = peewee.CharField(max_length=64)
    direction = peewee.CharField(max_length=8)
    disclosing_marketplace_id = peewee.CharField(max_length=64)
    receiving_marketplace_id = peewee.CharField(max_length=64)
    mediated_transaction_id = peewee.CharField(max_length=64)
    purchaser_pseudonym = peewee.CharField(max_length=64, index=True)
    disclosure = peewee.BlobField()  # FraudDisclosure
    recorded_at = peewee.DateTimeField(default=utc_now, index=True)

    class Meta:
        table_name = "fraud_disclosure"
        primary_key = peewee.CompositeKey("disclosing_marketplace_id", "disclosure_id")


class PartnerCallRow(peewee.Model):
    """An outgoing call to a partner, recorded before it is sent (resumable flows).

    The row is written in the same transaction as the state change that needs the call, so
    after a crash the node finds it and sends it again with the same request_id; the
    partner's idempotency turns the resend into the first answer.
    """

    request_id = peewee.CharField(max_length=128, primary_key=True)
    partner_marketplace_id = peewee.CharField(max_length=64)
    method = peewee.CharField(max_length=64)
    request = peewee.BlobField()
    transaction_id = peewee.CharField(max_length=64, default="")
    status = peewee.CharField(max_length=8, default="PENDING", index=True)
    attempts = peewee.IntegerField(default=0)
    last_error = peewee.CharField(max_length=500, default="")
    next_attempt_at = peewee.DateTimeField(default=utc_now)
    created_at = peewee.DateTimeField(default=utc_now)
    completed_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "partner_call"


MODELS: tuple[type[peewee.Model], ...] = (
    SettingRow,
    CommodityRow,
    ContractMemberRow,
    SessionRow,
    MediationContractRow,
    CreditStandardRow,
    HistoryEventRow,
    CreditEnquiryRow,
    TransactionRow,
    SuppliedTransactionRow,
    InvoiceRow,
    PayoutRow,
    FraudDisclosureRow,
    PartnerCallRow,
)
