"""Retail's tables: catalog, anonymous IDs received, guarantee cache, orders, sales records.

Nothing here names a member: the shop knows its buyers only by anonymous user IDs.
"""

from __future__ import annotations

import peewee

from storage.common.models import utc_now


class CatalogItemRow(peewee.Model):
    """One item on sale, priced in integer minor units."""

    catalog_item_id = peewee.CharField(max_length=64, primary_key=True)
    display_name = peewee.CharField(max_length=200)
    description = peewee.CharField(max_length=1000, default="")
    unit_price_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    available = peewee.BooleanField(default=True)
    updated_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "catalog_item"


class ReceivedAnonymousIdRow(peewee.Model):
    """An anonymous user ID a settlement agency delivered to this shop (claim 1)."""

    value = peewee.CharField(max_length=32, primary_key=True)
    settlement_agency_id = peewee.CharField(max_length=64)
    routing_prefix = peewee.CharField(max_length=16)
    issued_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField()
    received_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "received_anonymous_id"


class GuaranteeRow(peewee.Model):
    """A cached settlement agency identification guarantee (claims 10 and 19)."""

    settlement_agency_id = peewee.CharField(max_length=64, primary_key=True)
    display_name = peewee.CharField(max_length=200)
    routing_prefix = peewee.CharField(max_length=16, index=True)
    address = peewee.CharField(max_length=128)
    status = peewee.CharField(max_length=16)
    registry_serial = peewee.BigIntegerField()
    issued_at = peewee.DateTimeField(null=True)
    received_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "settlement_agency_guarantee"


class GuaranteeCacheStateRow(peewee.Model):
    """The cache's position: the registry serial it is complete up to, and its freshness."""

    name = peewee.CharField(max_length=16, primary_key=True)
    registry_serial = peewee.BigIntegerField(default=0)
    refreshed_at = peewee.DateTimeField(null=True)
    # Cache variant: the bounds the agencies announced on the last pull.
    refresh_interval_s = peewee.BigIntegerField(default=0)
    max_staleness_s = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "guarantee_cache_state"


class ShopOrderRow(peewee.Model):
    """The shop's order and its purchase flow state, written before every outgoing call.

    ``step`` is where a resumed flow picks up: ``discover``, ``bill`` (billing search to
    settlement next), ``verify`` (transaction verification at approval next), ``void`` (the
    compensation to approval and the agency next) or ``done``. A row is never deleted. Serialized
    protos (lines, completion report, response) keep every field the claims list.
    """

    order_number = peewee.CharField(max_length=64, primary_key=True)
    # Unique per buyer: two shoppers choosing the same request_id never collide.
    request_id = peewee.CharField(max_length=128)
    request_sha256 = peewee.CharField(max_length=64)
    anonymous_user_id = peewee.CharField(max_length=32)
    lines = peewee.BlobField()
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    payment_method = peewee.CharField(max_length=24)
    installment_count = peewee.IntegerField(default=0)
    status = peewee.CharField(max_length=16, default="PENDING", index=True)
    step = peewee.CharField(max_length=16, default="discover")
    settlement_agency_id = peewee.CharField(max_length=64)
    settlement_address = peewee.CharField(max_length=128)
    guarantee_registry_serial = peewee.BigIntegerField(default=0)
    completion_report = peewee.BlobField(null=True)
    transaction_verification_id = peewee.CharField(max_length=64, default="")
    decline_reason = peewee.CharField(max_length=64, default="")
    # The gRPC status of the refusal, so that a retry repeats the first answer exactly.
    decline_code = peewee.CharField(max_length=24, default="")
    response = peewee.BlobField(null=True)
    # The resumer's schedule: failed attempts in a row, and when the flow is next due.
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = peewee.DateTimeField(default=utc_now, index=True)
    # Cancellation flow (claims 2-3): the notice sent, the next step, and the final answer.
    cancel_notice = peewee.BlobField(null=True)
    cancel_step = peewee.CharField(max_length=16, default="")
    cancel_response = peewee.BlobField(null=True)
    trace_id = peewee.CharField(max_length=64, default="")
    ordered_at = peewee.DateTimeField(default=utc_now)
    created_at = peewee.DateTimeField(default=utc_now)
    updated_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "shop_order"
        indexes = ((("anonymous_user_id", "request_id"), True),)


class SalesRecordRow(peewee.Model):
    """A verified sale (claim 1, sales record database); written only after step 10."""

    order_number = peewee.CharField(max_length=64, primary_key=True)
    anonymous_user_id = peewee.CharField(max_length=32)
    settlement_agency_id = peewee.CharField(max_length=64)
    guarantee_registry_serial = peewee.BigIntegerField()
    billing_details = peewee.BlobField()
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    transaction_verification_id = peewee.CharField(max_length=64)
    status = peewee.CharField(max_length=16, default="COMPLETED")
    cancel_process_result = peewee.BlobField(null=True)
    cancel_verification = peewee.BlobField(null=True)
    trace_id = peewee.CharField(max_length=64, default="")
    recorded_at = peewee.DateTimeField(default=utc_now, index=True)
    cancelled_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "sales_record"


MODELS: tuple[type[peewee.Model], ...] = (
    CatalogItemRow,
    ReceivedAnonymousIdRow,
    GuaranteeRow,
    GuaranteeCacheStateRow,
    ShopOrderRow,
    SalesRecordRow,
)
