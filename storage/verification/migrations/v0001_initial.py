"""Version 1, the first released schema of verification: every table as it was then.

These declarations are frozen: they must never change, whatever the models become. Later
steps change the schema from here.
"""

from __future__ import annotations

import peewee

from storage.common.migrations import Migration


class TransactionReport(peewee.Model):
    order_number = peewee.CharField(max_length=64, primary_key=True)
    settlement_agency_id = peewee.CharField(max_length=64, index=True)
    retail_entity_id = peewee.CharField(max_length=64, index=True)
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    result = peewee.CharField(max_length=16)
    report = peewee.BlobField()
    trace_id = peewee.CharField(max_length=64)
    received_at = peewee.DateTimeField()

    class Meta:
        table_name = "transaction_report"


class CancelRequest(peewee.Model):
    cancel_request_id = peewee.CharField(max_length=128, primary_key=True)
    order_number = peewee.CharField(max_length=64, index=True)
    retail_entity_id = peewee.CharField(max_length=64)
    settlement_agency_id = peewee.CharField(max_length=64)
    procedure = peewee.CharField(max_length=16)
    notice = peewee.BlobField()
    received_at = peewee.DateTimeField()

    class Meta:
        table_name = "cancel_request_notice"


class CancelProcess(peewee.Model):
    cancel_request_id = peewee.CharField(max_length=128, primary_key=True)
    order_number = peewee.CharField(max_length=64, index=True)
    settlement_agency_id = peewee.CharField(max_length=64)
    decision = peewee.CharField(max_length=24)
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    notice = peewee.BlobField()
    received_at = peewee.DateTimeField()
    verification = peewee.BlobField(null=True)

    class Meta:
        table_name = "cancel_process_notice"


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


class AuditChainEntry(peewee.Model):
    sequence = peewee.BigIntegerField(primary_key=True)
    kind = peewee.CharField(max_length=40)
    subject = peewee.CharField(max_length=200, index=True)
    state_json = peewee.TextField()
    recorded_at = peewee.CharField(max_length=40)
    previous_hash = peewee.CharField(max_length=64)
    entry_hash = peewee.CharField(max_length=64)

    class Meta:
        table_name = "audit_chain_entry"


class AuditChainHead(peewee.Model):
    name = peewee.CharField(max_length=16, primary_key=True)
    sequence = peewee.BigIntegerField()
    entry_hash = peewee.CharField(max_length=64)

    class Meta:
        table_name = "audit_chain_head"


class AuditCheckpoint(peewee.Model):
    sequence = peewee.BigIntegerField(primary_key=True)
    entry_hash = peewee.CharField(max_length=64)
    signed_at = peewee.CharField(max_length=40)
    signature = peewee.CharField(max_length=128)

    class Meta:
        table_name = "audit_checkpoint"


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
    TransactionReport,
    CancelRequest,
    CancelProcess,
    IdempotencyRecord,
    NodeCredential,
    AuditChainEntry,
    AuditChainHead,
    AuditCheckpoint,
    OrderVoid,
    StoreHeartbeat,
    NodeEnrollment,
    InformationAnnouncement,
)


def apply(migration: Migration) -> None:
    migration.create_tables(TABLES)
