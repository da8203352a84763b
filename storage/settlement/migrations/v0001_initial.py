"""Version 1, the first released schema of settlement: every table as it was then.

These declarations are frozen: they must never change, whatever the models become. Later
steps change the schema from here.
"""

from __future__ import annotations

import peewee

from storage.common.migrations import Migration


class AgencySecret(peewee.Model):
    name = peewee.CharField(max_length=64, primary_key=True)
    key_hex = peewee.CharField(max_length=128)
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "agency_secret"


class Member(peewee.Model):
    member_id = peewee.CharField(max_length=64, primary_key=True)
    display_name = peewee.CharField(max_length=200)
    password_salt_hex = peewee.CharField(max_length=64)
    password_hash_hex = peewee.CharField(max_length=128)
    credit_limit_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    status = peewee.CharField(max_length=16)
    enrolled_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "member"


class Session(peewee.Model):
    token_sha256 = peewee.CharField(max_length=64, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    created_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField()
    ended_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "member_session"


class AnonymousId(peewee.Model):
    value = peewee.CharField(max_length=32, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    retail_entity_id = peewee.CharField(max_length=64)
    issued_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField()
    delivered_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "anonymous_user_id"


class SettlementOrder(peewee.Model):
    order_number = peewee.CharField(max_length=64, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    retail_entity_id = peewee.CharField(max_length=64, index=True)
    anonymous_user_id = peewee.CharField(max_length=32)
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    billing_details = peewee.BlobField()
    request_sha256 = peewee.CharField(max_length=64)
    result = peewee.CharField(max_length=16)
    billing_state = peewee.CharField(max_length=24, index=True)
    completion_notice_id = peewee.CharField(max_length=64)
    retail_entity_display_name = peewee.CharField(max_length=200)
    trace_id = peewee.CharField(max_length=64)
    created_at = peewee.DateTimeField(index=True)
    completed_at = peewee.DateTimeField()
    reported_at = peewee.DateTimeField(null=True)
    report_attempts = peewee.IntegerField()
    next_report_at = peewee.DateTimeField(index=True)
    billed_at = peewee.DateTimeField(null=True)
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "settlement_order"


class MemberNotice(peewee.Model):
    notice_id = peewee.CharField(max_length=64, primary_key=True)
    member_id = peewee.CharField(max_length=64)
    sequence = peewee.BigIntegerField()
    kind = peewee.CharField(max_length=32)
    order_number = peewee.CharField(max_length=64, index=True)
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    message = peewee.CharField(max_length=500)
    payload = peewee.BlobField()
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "member_notice"
        indexes = ((("member_id", "sequence"), True),)


class Cancellation(peewee.Model):
    order_number = peewee.CharField(max_length=64, primary_key=True)
    cancel_request_id = peewee.CharField(max_length=128, unique=True)
    member_id = peewee.CharField(max_length=64, index=True)
    retail_entity_id = peewee.CharField(max_length=64)
    procedure = peewee.CharField(max_length=16)
    requested_by = peewee.CharField(max_length=24)
    reason = peewee.CharField(max_length=500)
    decision = peewee.CharField(max_length=24)
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    status = peewee.CharField(max_length=16)
    request_sha256 = peewee.CharField(max_length=64)
    decided_at = peewee.DateTimeField()
    verification = peewee.BlobField(null=True)
    acknowledged_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "cancellation"


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


class OrderVoid(peewee.Model):
    order_number = peewee.CharField(max_length=64, primary_key=True)
    retail_entity_id = peewee.CharField(max_length=64)
    settlement_agency_id = peewee.CharField(max_length=64)
    reason = peewee.CharField(max_length=64)
    voided_at = peewee.DateTimeField()
    forwarded_at = peewee.DateTimeField(null=True)
    forward_attempts = peewee.IntegerField()
    next_forward_at = peewee.DateTimeField(index=True)

    class Meta:
        table_name = "order_void"


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
    AgencySecret,
    Member,
    Session,
    AnonymousId,
    SettlementOrder,
    MemberNotice,
    Cancellation,
    IdempotencyRecord,
    NodeCredential,
    DataDisclosure,
    OrderVoid,
    StoreHeartbeat,
    NodeEnrollment,
    InformationAnnouncement,
)


def apply(migration: Migration) -> None:
    migration.create_tables(TABLES)
