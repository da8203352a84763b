"""Verification's tables: transaction reports, cancel request and process notices."""

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


class CancelRequestRow(peewee.Model):
    """A shop's cancel request notice (claims 2-3), as received."""

    cancel_request_id = peewee.CharField(max_length=128, primary_key=True)
    order_number = peewee.CharField(max_length=64, index=True)
    retail_entity_id = peewee.CharField(max_length=64)
    settlement_agency_id = peewee.CharField(max_length=64)
    procedure = peewee.CharField(max_length=16)
    # Serialized suretynet.type.v1.CancelRequestNotice.
    notice = peewee.BlobField()
    received_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "cancel_request_notice"


class CancelProcessRow(peewee.Model):
    """A settlement agency's cancel process notice, and (claim 3) the cancel verification."""

    cancel_request_id = peewee.CharField(max_length=128, primary_key=True)
    order_number = peewee.CharField(max_length=64, index=True)
    settlement_agency_id = peewee.CharField(max_length=64)
    decision = peewee.CharField(max_length=24)
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    # Serialized suretynet.verification.v1.CancelProcessNotice.
    notice = peewee.BlobField()
    received_at = peewee.DateTimeField(default=utc_now)
    # Serialized suretynet.type.v1.CancelVerification; VERIFIED procedure only.
    verification = peewee.BlobField(null=True)

    class Meta:
        table_name = "cancel_process_notice"


MODELS: tuple[type[peewee.Model], ...] = (TransactionReportRow, CancelRequestRow, CancelProcessRow)
