"""Version 1, the first released schema of approval: every table as it was then.

These declarations are frozen: they must never change, whatever the models become. Later
steps change the schema from here.
"""

from __future__ import annotations

import peewee

from storage.common.migrations import Migration


class ProgramSerial(peewee.Model):
    serial = peewee.CharField(max_length=64, primary_key=True)
    role = peewee.CharField(max_length=16)
    note = peewee.CharField(max_length=200)
    issued_at = peewee.DateTimeField()
    registered_entity_id = peewee.CharField(max_length=64, null=True)
    registered_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "program_serial"


class Entity(peewee.Model):
    entity_id = peewee.CharField(max_length=64, primary_key=True)
    role = peewee.CharField(max_length=16, index=True)
    display_name = peewee.CharField(max_length=200)
    address = peewee.CharField(max_length=128)
    status = peewee.CharField(max_length=16)
    status_reason = peewee.CharField(max_length=200)
    routing_prefix = peewee.CharField(max_length=16, null=True, unique=True)
    discovery_variant = peewee.CharField(max_length=16)
    payment_methods_json = peewee.TextField()
    currency_codes_json = peewee.TextField()
    private_details_json = peewee.TextField()
    program_serial = peewee.CharField(max_length=64, unique=True)
    program_version = peewee.CharField(max_length=64)
    registry_serial = peewee.BigIntegerField(index=True)
    registered_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "entity"


class LicenseKey(peewee.Model):
    key_id = peewee.CharField(max_length=32, primary_key=True)
    secret_sha256 = peewee.CharField(max_length=64)
    entity_id = peewee.CharField(max_length=64, index=True)
    issued_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField()
    last_seen_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)
    revocation_reason = peewee.CharField(max_length=200)
    superseded_by = peewee.CharField(max_length=32, null=True)
    grace_until = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "license_key"


class Counter(peewee.Model):
    name = peewee.CharField(max_length=32, primary_key=True)
    value = peewee.BigIntegerField()

    class Meta:
        table_name = "counter"


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


class TransactionRecord(peewee.Model):
    order_number = peewee.CharField(max_length=64, primary_key=True)
    retail_entity_id = peewee.CharField(max_length=64, index=True)
    settlement_agency_id = peewee.CharField(max_length=64, index=True)
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    transaction_verification_id = peewee.CharField(max_length=64, unique=True)
    trace_id = peewee.CharField(max_length=64)
    reported_at = peewee.DateTimeField(null=True)
    recorded_at = peewee.DateTimeField()
    cancelled_at = peewee.DateTimeField(null=True)
    cancel_request_id = peewee.CharField(max_length=128)
    cancel_decision = peewee.CharField(max_length=24)
    cancelled_amount_minor = peewee.BigIntegerField()

    class Meta:
        table_name = "transaction_record"


class TransactionMismatch(peewee.Model):
    mismatch_id = peewee.CharField(max_length=32, primary_key=True)
    order_number = peewee.CharField(max_length=64, index=True)
    retail_entity_id = peewee.CharField(max_length=64)
    settlement_agency_id = peewee.CharField(max_length=64)
    requested_amount_minor = peewee.BigIntegerField()
    requested_currency_code = peewee.CharField(max_length=3)
    reported_amount_minor = peewee.BigIntegerField(null=True)
    reported_currency_code = peewee.CharField(max_length=3)
    mismatched_fields = peewee.CharField(max_length=200)
    trace_id = peewee.CharField(max_length=64)
    recorded_at = peewee.DateTimeField(index=True)

    class Meta:
        table_name = "transaction_mismatch"


class GuaranteePush(peewee.Model):
    retail_entity_id = peewee.CharField(max_length=64, primary_key=True)
    acknowledged_serial = peewee.BigIntegerField()
    failures = peewee.IntegerField()
    last_error = peewee.CharField(max_length=200)
    next_attempt_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "guarantee_push"


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
    ProgramSerial,
    Entity,
    LicenseKey,
    Counter,
    IdempotencyRecord,
    NodeCredential,
    TransactionRecord,
    TransactionMismatch,
    GuaranteePush,
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
