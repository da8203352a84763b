"""Approval's tables: program serials, the registry of entities, license keys, transactions."""

from __future__ import annotations

import peewee

from storage.common.models import utc_now


class ProgramSerialRow(peewee.Model):
    """A program serial number the institution issued; registered at most once."""

    serial = peewee.CharField(max_length=64, primary_key=True)
    role = peewee.CharField(max_length=16)
    note = peewee.CharField(max_length=200, default="")
    issued_at = peewee.DateTimeField(default=utc_now)
    registered_entity_id = peewee.CharField(max_length=64, null=True)
    registered_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "program_serial"


class EntityRow(peewee.Model):
    """One registered retail entity, settlement agency or marketplace."""

    entity_id = peewee.CharField(max_length=64, primary_key=True)
    role = peewee.CharField(max_length=16, index=True)
    display_name = peewee.CharField(max_length=200)
    address = peewee.CharField(max_length=128)
    # With replicas: every replica's address, comma-separated, ``address`` first; "" for one.
    replica_addresses = peewee.TextField(default="")
    status = peewee.CharField(max_length=16, default="ACTIVE")
    status_reason = peewee.CharField(max_length=200, default="")
    routing_prefix = peewee.CharField(max_length=16, null=True, unique=True)
    discovery_variant = peewee.CharField(max_length=16, default="")
    # Retail only, as JSON: payment methods, currency codes and the shop's private details.
    payment_methods_json = peewee.TextField(default="[]")
    currency_codes_json = peewee.TextField(default="[]")
    private_details_json = peewee.TextField(default="{}")
    program_serial = peewee.CharField(max_length=64, unique=True)
    program_version = peewee.CharField(max_length=64, default="")
    # Bumped on every change; shops under the push and cache variants sync by it.
    registry_serial = peewee.BigIntegerField(index=True)
    registered_at = peewee.DateTimeField(default=utc_now)
    updated_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "entity"


class LicenseKeyRow(peewee.Model):
    """A license key; only its SHA-256 is stored, the key itself leaves once."""

    key_id = peewee.CharField(max_length=32, primary_key=True)
    secret_sha256 = peewee.CharField(max_length=64)
    entity_id = peewee.CharField(max_length=64, index=True)
    issued_at = peewee.DateTimeField(default=utc_now)
    expires_at = peewee.DateTimeField()
    last_seen_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)
    revocation_reason = peewee.CharField(max_length=200, default="")
    superseded_by = peewee.CharField(max_length=32, null=True)
    # After a rotation the old key keeps working until then, so in-flight calls finish.
    grace_until = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "license_key"


class CounterRow(peewee.Model):
    """Monotonic counters (the registry serial), bumped inside the changing transaction."""

    name = peewee.CharField(max_length=32, primary_key=True)
    value = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "counter"


class TransactionRecordRow(peewee.Model):
    """A verified transaction: order number and monies (claim 1, transaction record database)."""

    order_number = peewee.CharField(max_length=64, primary_key=True)
    retail_entity_id = peewee.CharField(max_length=64, index=True)
    settlement_agency_id = peewee.CharField(max_length=64, index=True)
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    transaction_verification_id = peewee.CharField(max_length=64, unique=True)
    trace_id = peewee.CharField(max_length=64, default="")
    reported_at = peewee.DateTimeField(null=True)
    recorded_at = peewee.DateTimeField(default=utc_now)
    # Set once the order's cancellation is confirmed by verification's records.
    cancelled_at = peewee.DateTimeField(null=True)
    cancel_request_id = peewee.CharField(max_length=128, default="")
    cancel_decision = peewee.CharField(max_length=24, default="")
    cancelled_amount_minor = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "transaction_record"


class TransactionMismatchRow(peewee.Model):
    """A verification request refused because it disagreed with the transaction report."""

    mismatch_id = peewee.CharField(max_length=32, primary_key=True)
    order_number = peewee.CharField(max_length=64, index=True)
    retail_entity_id = peewee.CharField(max_length=64)
    settlement_agency_id = peewee.CharField(max_length=64)
    requested_amount_minor = peewee.BigIntegerField()
    requested_currency_code = peewee.CharField(max_length=3)
    reported_amount_minor = peewee.BigIntegerField(null=True)
    reported_currency_code = peewee.CharField(max_length=3, default="")
    mismatched_fields = peewee.CharField(max_length=200)
    trace_id = peewee.CharField(max_length=64, default="")
    recorded_at = peewee.DateTimeField(default=utc_now, index=True)

    class Meta:
        table_name = "transaction_mismatch"


class GuaranteePushRow(peewee.Model):
    """Per push-variant shop: the registry serial it acknowledged (claim 10 delivery state)."""

    retail_entity_id = peewee.CharField(max_length=64, primary_key=True)
    acknowledged_serial = peewee.BigIntegerField(default=0)
    failures = peewee.IntegerField(default=0)
    last_error = peewee.CharField(max_length=200, default="")
    next_attempt_at = peewee.DateTimeField(default=utc_now)
    updated_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "guarantee_push"


class RegistryChangeRow(peewee.Model):
    """Who changed an entity's registry entry, from where, and what its address became."""

    id = peewee.AutoField()
    entity_id = peewee.CharField(max_length=64, index=True)
    # The certificate URI of the caller: the entity itself or an institution operator.
    changed_by = peewee.CharField(max_length=200)
    source_ip = peewee.CharField(max_length=64, default="")
    previous_address = peewee.CharField(max_length=128)
    address = peewee.CharField(max_length=128)
    registry_serial = peewee.BigIntegerField()
    changed_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "registry_change"


MODELS: tuple[type[peewee.Model], ...] = (
    ProgramSerialRow,
    EntityRow,
    LicenseKeyRow,
    CounterRow,
    TransactionRecordRow,
    TransactionMismatchRow,
    GuaranteePushRow,
    RegistryChangeRow,
)
