"""Version 1, the first released schema of retail: every table as it was then.

These declarations are frozen: they must never change, whatever the models become. Later
steps change the schema from here.
"""

from __future__ import annotations

import peewee

from storage.common.migrations import Migration


class CatalogItem(peewee.Model):
    catalog_item_id = peewee.CharField(max_length=64, primary_key=True)
    display_name = peewee.CharField(max_length=200)
    description = peewee.CharField(max_length=1000)
    unit_price_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    available = peewee.BooleanField()
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "catalog_item"


class ReceivedAnonymousId(peewee.Model):
    value = peewee.CharField(max_length=32, primary_key=True)
    settlement_agency_id = peewee.CharField(max_length=64)
    routing_prefix = peewee.CharField(max_length=16)
    issued_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField()
    received_at = peewee.DateTimeField()

    class Meta:
        table_name = "received_anonymous_id"


class Guarantee(peewee.Model):
    settlement_agency_id = peewee.CharField(max_length=64, primary_key=True)
    display_name = peewee.CharField(max_length=200)
    routing_prefix = peewee.CharField(max_length=16, index=True)
    address = peewee.CharField(max_length=128)
    status = peewee.CharField(max_length=16)
    registry_serial = peewee.BigIntegerField()
    issued_at = peewee.DateTimeField(null=True)
    received_at = peewee.DateTimeField()

    class Meta:
        table_name = "settlement_agency_guarantee"


class GuaranteeCacheState(peewee.Model):
    name = peewee.CharField(max_length=16, primary_key=True)
    registry_serial = peewee.BigIntegerField()
    refreshed_at = peewee.DateTimeField(null=True)
    refresh_interval_s = peewee.BigIntegerField()
    max_staleness_s = peewee.BigIntegerField()

    class Meta:
        table_name = "guarantee_cache_state"


class ShopOrder(peewee.Model):
    order_number = peewee.CharField(max_length=64, primary_key=True)
    request_id = peewee.CharField(max_length=128)
    request_sha256 = peewee.CharField(max_length=64)
    anonymous_user_id = peewee.CharField(max_length=32)
    lines = peewee.BlobField()
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    payment_method = peewee.CharField(max_length=24)
    installment_count = peewee.IntegerField()
    status = peewee.CharField(max_length=16, index=True)
    step = peewee.CharField(max_length=16)
    settlement_agency_id = peewee.CharField(max_length=64)
    settlement_address = peewee.CharField(max_length=128)
    guarantee_registry_serial = peewee.BigIntegerField()
    completion_report = peewee.BlobField(null=True)
    transaction_verification_id = peewee.CharField(max_length=64)
    decline_reason = peewee.CharField(max_length=64)
    decline_code = peewee.CharField(max_length=24)
    response = peewee.BlobField(null=True)
    attempts = peewee.IntegerField()
    next_attempt_at = peewee.DateTimeField(index=True)
    cancel_notice = peewee.BlobField(null=True)
    cancel_step = peewee.CharField(max_length=16)
    cancel_response = peewee.BlobField(null=True)
    trace_id = peewee.CharField(max_length=64)
    ordered_at = peewee.DateTimeField()
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    class Meta:
        table_name = "shop_order"
        indexes = ((("anonymous_user_id", "request_id"), True),)


class SalesRecord(peewee.Model):
    order_number = peewee.CharField(max_length=64, primary_key=True)
    anonymous_user_id = peewee.CharField(max_length=32)
    settlement_agency_id = peewee.CharField(max_length=64)
    guarantee_registry_serial = peewee.BigIntegerField()
    billing_details = peewee.BlobField()
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    transaction_verification_id = peewee.CharField(max_length=64)
    status = peewee.CharField(max_length=16)
    cancel_process_result = peewee.BlobField(null=True)
    cancel_verification = peewee.BlobField(null=True)
    trace_id = peewee.CharField(max_length=64)
    recorded_at = peewee.DateTimeField(index=True)
    cancelled_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "sales_record"


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
    CatalogItem,
    ReceivedAnonymousId,
    Guarantee,
    GuaranteeCacheState,
    ShopOrder,
    SalesRecord,
    IdempotencyRecord,
    NodeCredential,
    StoreHeartbeat,
    NodeEnrollment,
    InformationAnnouncement,
)


def apply(migration: Migration) -> None:
    migration.create_tables(TABLES)
