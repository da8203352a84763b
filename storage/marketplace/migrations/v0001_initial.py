"""Version 1, the first released schema of marketplace: every table as it was then.

These declarations are frozen: they must never change, whatever the models become. Later
steps change the schema from here.
"""

from __future__ import annotations

import peewee

from storage.common.migrations import Migration


class Setting(peewee.Model):
    name = peewee.CharField(max_length=64, primary_key=True)
    value = peewee.TextField()
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "setting"


class Commodity(peewee.Model):
    commodity_id = peewee.CharField(max_length=64, primary_key=True)
    display_name = peewee.CharField(max_length=200)
    description = peewee.TextField()
    unit_price_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    stock_quantity = peewee.BigIntegerField()
    delivery_days = peewee.IntegerField()
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "commodity"


class ContractMember(peewee.Model):
    member_id = peewee.CharField(max_length=64, primary_key=True)
    kind = peewee.CharField(max_length=16)
    display_name = peewee.CharField(max_length=200)
    contact_email = peewee.CharField(max_length=200)
    postal_address = peewee.TextField()
    contact_telephone = peewee.CharField(max_length=32)
    corporate_registration_number = peewee.CharField(max_length=64)
    status = peewee.CharField(max_length=16)
    password_salt = peewee.BlobField()
    password_hash = peewee.BlobField()
    enrolled_at = peewee.DateTimeField()

    class Meta:
        table_name = "contract_member"


class Session(peewee.Model):
    token_sha256 = peewee.CharField(max_length=64, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    issued_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField()

    class Meta:
        table_name = "session"


class MediationContract(peewee.Model):
    contract_id = peewee.CharField(max_length=64, primary_key=True)
    partner_marketplace_id = peewee.CharField(max_length=64, index=True)
    fee_basis_points = peewee.IntegerField()
    settlement_mode = peewee.CharField(max_length=40)
    direction = peewee.CharField(max_length=16)
    payment_terms_days = peewee.IntegerField()
    active = peewee.BooleanField()
    effective_from = peewee.DateTimeField()
    effective_until = peewee.DateTimeField(null=True)
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "mediation_contract"


class CreditStandard(peewee.Model):
    item = peewee.CharField(max_length=32, primary_key=True)
    max_count = peewee.IntegerField()
    window_days = peewee.IntegerField()

    class Meta:
        table_name = "credit_standard"


class HistoryEvent(peewee.Model):
    id = peewee.AutoField()
    member_id = peewee.CharField(max_length=64)
    item = peewee.CharField(max_length=32)
    transaction_id = peewee.CharField(max_length=64)
    detail = peewee.CharField(max_length=500)
    occurred_at = peewee.DateTimeField()

    class Meta:
        table_name = "history_event"
        indexes = ((("member_id", "item", "occurred_at"), False),)


class CreditEnquiry(peewee.Model):
    credit_enquiry_id = peewee.CharField(max_length=64, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    guaranteed = peewee.BooleanField()
    result = peewee.BlobField()
    enquired_at = peewee.DateTimeField()

    class Meta:
        table_name = "credit_enquiry"


class Transaction(peewee.Model):
    transaction_id = peewee.CharField(max_length=64, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    request_sha256 = peewee.CharField(max_length=64)
    kind = peewee.CharField(max_length=16)
    commodity_id = peewee.CharField(max_length=64)
    commodity_display_name = peewee.CharField(max_length=200)
    quantity = peewee.BigIntegerField()
    state = peewee.CharField(max_length=24)
    unit_price_minor = peewee.BigIntegerField()
    total_amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    estimate = peewee.BlobField(null=True)
    partner_estimate_id = peewee.CharField(max_length=64)
    shipment = peewee.BlobField(null=True)
    mediated_transaction_id = peewee.CharField(max_length=64, index=True)
    partner_marketplace_id = peewee.CharField(max_length=64)
    contract_id = peewee.CharField(max_length=64)
    settlement_mode = peewee.CharField(max_length=40)
    fee_basis_points = peewee.IntegerField()
    credit_enquiry_id = peewee.CharField(max_length=64)
    credit_guarantee = peewee.BlobField(null=True)
    marked_unlawful = peewee.BooleanField()
    unlawful_reason = peewee.CharField(max_length=500)
    created_at = peewee.DateTimeField(index=True)
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "marketplace_transaction"


class SuppliedTransaction(peewee.Model):
    mediated_transaction_id = peewee.CharField(max_length=64)
    requesting_marketplace_id = peewee.CharField(max_length=64)
    contract_id = peewee.CharField(max_length=64)
    commodity_id = peewee.CharField(max_length=64)
    quantity = peewee.BigIntegerField()
    purchaser_pseudonym = peewee.CharField(max_length=64, index=True)
    credit_guarantee = peewee.BlobField()
    estimate = peewee.BlobField()
    estimate_reply = peewee.BlobField(null=True)
    state = peewee.CharField(max_length=24)
    shipment = peewee.BlobField(null=True)
    settlement_mode = peewee.CharField(max_length=40)
    reserved_quantity = peewee.BigIntegerField()
    created_at = peewee.DateTimeField(index=True)
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "supplied_transaction"
        primary_key = peewee.CompositeKey("requesting_marketplace_id", "mediated_transaction_id")


class Invoice(peewee.Model):
    invoice_id = peewee.CharField(max_length=64, primary_key=True)
    kind = peewee.CharField(max_length=24)
    issuer_marketplace_id = peewee.CharField(max_length=64)
    issuer_invoice_id = peewee.CharField(max_length=64)
    drawee_member_id = peewee.CharField(max_length=64, index=True)
    drawee_purchaser_pseudonym = peewee.CharField(max_length=64)
    drawee_marketplace_id = peewee.CharField(max_length=64)
    transaction_id = peewee.CharField(max_length=64, index=True)
    mediated_transaction_id = peewee.CharField(max_length=64, index=True)
    amount_minor = peewee.BigIntegerField()
    paid_amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    status = peewee.CharField(max_length=8)
    issued_at = peewee.DateTimeField(index=True)
    due_at = peewee.DateTimeField()
    paid_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "invoice"


class Payout(peewee.Model):
    payout_id = peewee.CharField(max_length=64, primary_key=True)
    mediated_transaction_id = peewee.CharField(max_length=64, index=True)
    payer_marketplace_id = peewee.CharField(max_length=64)
    payee_marketplace_id = peewee.CharField(max_length=64)
    gross_amount_minor = peewee.BigIntegerField()
    mediation_charge_minor = peewee.BigIntegerField()
    net_amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    status = peewee.CharField(max_length=8)
    created_at = peewee.DateTimeField(index=True)
    paid_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "payout"


class FraudDisclosure(peewee.Model):
    disclosure_id = peewee.CharField(max_length=64)
    direction = peewee.CharField(max_length=8)
    disclosing_marketplace_id = peewee.CharField(max_length=64)
    receiving_marketplace_id = peewee.CharField(max_length=64)
    mediated_transaction_id = peewee.CharField(max_length=64)
    purchaser_pseudonym = peewee.CharField(max_length=64, index=True)
    disclosure = peewee.BlobField()
    recorded_at = peewee.DateTimeField(index=True)

    class Meta:
        table_name = "fraud_disclosure"
        primary_key = peewee.CompositeKey("disclosing_marketplace_id", "disclosure_id")


class PartnerCall(peewee.Model):
    request_id = peewee.CharField(max_length=128, primary_key=True)
    partner_marketplace_id = peewee.CharField(max_length=64)
    method = peewee.CharField(max_length=64)
    request = peewee.BlobField()
    transaction_id = peewee.CharField(max_length=64)
    status = peewee.CharField(max_length=8, index=True)
    attempts = peewee.IntegerField()
    last_error = peewee.CharField(max_length=500)
    next_attempt_at = peewee.DateTimeField()
    created_at = peewee.DateTimeField()
    completed_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "partner_call"


class IdempotencyRecord(peewee.Model):
    id = peewee.AutoField()
    scope = peewee.CharField(max_length=200)
    method = peewee.CharField(max_length=200)
    request_id = peewee.CharField(max_length=128)
    request_sha256 = peewee.CharField(max_length=64)
    response = peewee.BlobField()
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "idempotency_record"
        indexes = ((("scope", "method", "request_id"), True),)


class NodeCredential(peewee.Model):
    entity_id = peewee.CharField(max_length=64, primary_key=True)
    license_key = peewee.CharField(max_length=128)
    license_key_id = peewee.CharField(max_length=64)
    expires_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "node_credential"


class DataDisclosure(peewee.Model):
    disclosure_id = peewee.CharField(max_length=40, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    kind = peewee.CharField(max_length=32)
    recipient = peewee.CharField(max_length=200)
    data = peewee.CharField(max_length=500)
    purpose = peewee.CharField(max_length=300)
    reference = peewee.CharField(max_length=128)
    disclosed_at = peewee.DateTimeField(index=True)

    class Meta:
        table_name = "data_disclosure"


class StoreHeartbeat(peewee.Model):
    name = peewee.CharField(max_length=16, primary_key=True)
    beat_at = peewee.DateTimeField()

    class Meta:
        table_name = "store_heartbeat"


class NodeEnrollment(peewee.Model):
    entity_id = peewee.CharField(max_length=64, primary_key=True)
    program_serial = peewee.CharField(max_length=64)
    enrolled_at = peewee.DateTimeField()

    class Meta:
        table_name = "node_enrollment"


class InformationAnnouncement(peewee.Model):
    id = peewee.AutoField()
    entity_id = peewee.CharField(max_length=64)
    outcome = peewee.CharField(max_length=16)
    fields = peewee.CharField(max_length=200)
    registry_serial = peewee.BigIntegerField()
    detail = peewee.CharField(max_length=500)
    announced_at = peewee.DateTimeField()

    class Meta:
        table_name = "information_announcement"


TABLES: tuple[type[peewee.Model], ...] = (
    Setting,
    Commodity,
    ContractMember,
    Session,
    MediationContract,
    CreditStandard,
    HistoryEvent,
    CreditEnquiry,
    Transaction,
    SuppliedTransaction,
    Invoice,
    Payout,
    FraudDisclosure,
    PartnerCall,
    IdempotencyRecord,
    NodeCredential,
    DataDisclosure,
    StoreHeartbeat,
    NodeEnrollment,
    InformationAnnouncement,
)


def apply(migration: Migration) -> None:
    migration.create_tables(TABLES)
