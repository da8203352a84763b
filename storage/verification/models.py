"""Verification's tables: transaction reports (and, later, cancellation notices)."""

from __future__ import annotations

import peewee

from storage.common.models import utc_now


class TransactionReportRow(peewee.Model):
    """A settlement agency's transaction report (claim 1, step 9), as received."""

    order_number = peewee.CharField(max_length=64, primary_key=True)
    settlement_agency_id = peewee.CharField(max_length=64, index=True)
    retail_entity_id = peewee.CharField(max_length=64, index=True)
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    result = peewee.CharField(max_length=16)
    # Serialized suretynet.verification.v1.TransactionReport, exactly as received.
    report = peewee.BlobField()
    trace_id = peewee.CharField(max_length=64, default="")
    received_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "transaction_report"


MODELS: tuple[type[peewee.Model], ...] = (TransactionReportRow,)
