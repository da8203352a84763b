"""Settlement's tables: members, sessions, anonymous user IDs, orders and member notices.

Settlement is the only node that knows which member stands behind an anonymous user ID,
so these tables hold the member's identity; nothing here ever leaves the agency except to
its own admin.
"""

from __future__ import annotations

from typing import Any, ClassVar

import peewee

from storage.common.models import utc_now


class AgencySecretRow(peewee.Model):
    """A secret key of this agency (the anonymous user ID MAC key); made on first start."""

    name = peewee.CharField(max_length=64, primary_key=True)
    # Sealed under the node's key (nodes/common/secrets.py), never in clear.
    key_hex = peewee.CharField(max_length=128)
    created_at = peewee.DateTimeField(default=utc_now)
    # The node's SecretBox, set on each node's bound copy; None only in unit tests.
    secret_box: ClassVar[Any] = None

    class Meta:
        table_name = "agency_secret"


class MemberRow(peewee.Model):
    """One member: credentials (salted scrypt hash only), credit limit and standing."""

    member_id = peewee.CharField(max_length=64, primary_key=True)
    display_name = peewee.CharField(max_length=200)
    password_salt_hex = peewee.CharField(max_length=64)
    password_hash_hex = peewee.CharField(max_length=128)
    credit_limit_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    # The sum of the member's open orders (nodes/settlement/members.py OPEN_BILLING_STATES),
    # kept in the transaction that opens or closes each one, so a credit check costs the
    # same at the ten-thousandth order as at the first. Reconciliation checks the sum.
    credit_used_minor = peewee.BigIntegerField(default=0)
    status = peewee.CharField(max_length=16, default="ACTIVE")
    enrolled_at = peewee.DateTimeField(default=utc_now)
    updated_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "member"


class SessionRow(peewee.Model):
    """An open member session; only the token's SHA-256 is stored."""

    token_sha256 = peewee.CharField(max_length=64, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    created_at = peewee.DateTimeField(default=utc_now)
    expires_at = peewee.DateTimeField()
    ended_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "member_session"


class AnonymousIdRow(peewee.Model):
    """An issued anonymous user ID and the member it resolves to (only this agency can)."""

    value = peewee.CharField(max_length=32, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    retail_entity_id = peewee.CharField(max_length=64)
    issued_at = peewee.DateTimeField(default=utc_now)
    expires_at = peewee.DateTimeField()
    delivered_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "anonymous_user_id"


class SettlementOrderRow(peewee.Model):
    """An approved order: the order number and the billing details (claim 1, step 8).

    ``billing_details`` is the serialized suretynet.type.v1.BillingDetails; the columns
    beside it repeat what queries and invariants need.
    """

    order_number = peewee.CharField(max_length=64, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    retail_entity_id = peewee.CharField(max_length=64, index=True)
    anonymous_user_id = peewee.CharField(max_length=32)
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    billing_details = peewee.BlobField()
    # SHA-256 of the billing search that created the order: a different search under the
    # same order number is refused instead of silently answered.
    request_sha256 = peewee.CharField(max_length=64)
    result = peewee.CharField(max_length=16, default="APPROVED")
    billing_state = peewee.CharField(max_length=24, default="NOT_YET_BILLED", index=True)
    completion_notice_id = peewee.CharField(max_length=64)
    retail_entity_display_name = peewee.CharField(max_length=200, default="")
    trace_id = peewee.CharField(max_length=64, default="")
    created_at = peewee.DateTimeField(default=utc_now, index=True)
    completed_at = peewee.DateTimeField(default=utc_now)
    # Set once verification acknowledged the transaction report (step 9).
    reported_at = peewee.DateTimeField(null=True)
    # The agency's resumer files unacknowledged reports itself, with a backoff per order.
    report_attempts = peewee.IntegerField(default=0)
    next_report_at = peewee.DateTimeField(default=utc_now)
    billed_at = peewee.DateTimeField(null=True)
    updated_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "settlement_order"


# The resumer's pass reads the orders whose report is still unacknowledged, by when they are
# due: the index holds only those, so a pass costs the same after a million orders as after
# ten (a whole-table index on next_report_at made it read every order ever made).
SettlementOrderRow.add_index(
    SettlementOrderRow.index(
        SettlementOrderRow.next_report_at, name="settlementorder_next_report_at"
    ).where(SettlementOrderRow.reported_at.is_null())
)


class MemberNoticeRow(peewee.Model):
    """A notice to a member; ``sequence`` increases per member so streams can resume."""

    notice_id = peewee.CharField(max_length=64, primary_key=True)
    member_id = peewee.CharField(max_length=64)
    sequence = peewee.BigIntegerField()
    kind = peewee.CharField(max_length=32)
    order_number = peewee.CharField(max_length=64, default="", index=True)
    amount_minor = peewee.BigIntegerField(default=0)
    currency_code = peewee.CharField(max_length=3, default="")
    message = peewee.CharField(max_length=500, default="")
    # Serialized TransactionCompletionNotice or CancelProcessResult, per kind.
    payload = peewee.BlobField(default=b"")
    created_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "member_notice"
        indexes = ((("member_id", "sequence"), True),)


class CancellationRow(peewee.Model):
    """The agency's decision on a cancelled order, kept with the member (claims 2-3).

    One per order. ``status`` is PENDING while a VERIFIED cancellation waits for the cancel
    verification (the decision is reserved, not applied) and DONE once applied.
    """

    order_number = peewee.CharField(max_length=64, primary_key=True)
    cancel_request_id = peewee.CharField(max_length=128, unique=True)
    member_id = peewee.CharField(max_length=64, index=True)
    retail_entity_id = peewee.CharField(max_length=64)
    procedure = peewee.CharField(max_length=16)
    requested_by = peewee.CharField(max_length=24)
    reason = peewee.CharField(max_length=500, default="")
    decision = peewee.CharField(max_length=24)
    amount_minor = peewee.BigIntegerField()
    currency_code = peewee.CharField(max_length=3)
    status = peewee.CharField(max_length=16, default="PENDING")
    # SHA-256 of the cancel request notice: the same cancellation must carry the same notice.
    request_sha256 = peewee.CharField(max_length=64)
    decided_at = peewee.DateTimeField(default=utc_now)
    # Serialized suretynet.type.v1.CancelVerification (VERIFIED) once received.
    verification = peewee.BlobField(null=True)
    # When verification acknowledged the cancel process notice.
    acknowledged_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "cancellation"


MODELS: tuple[type[peewee.Model], ...] = (
    CancellationRow,
    AgencySecretRow,
    MemberRow,
    SessionRow,
    AnonymousIdRow,
    SettlementOrderRow,
    MemberNoticeRow,
)
