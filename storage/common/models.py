"""Runtime tables every node has in its own database: idempotency keys and its license key.

These are declared once and bound per node (see ``bind``); no node ever reads
another node's copy.
"""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

import peewee


def utc_now() -> datetime.datetime:
    """Naive UTC timestamp, the form every table stores (SQLite has no time zones)."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class SealedCharField(peewee.CharField):
    """A short secret kept sealed under the node's key (nodes/common/secrets.py).

    Sealing happens on the way in and opening on the way out, through the ``secret_box``
    the node sets on its bound copy of the model, so code reading and writing the column
    never sees the sealed form. A value written before sealing (no prefix) reads as is.
    Never compare this column in a query: each sealing is different.
    """

    def _sealing(self) -> tuple[Any, str]:
        box = getattr(self.model, "secret_box", None)
        return box, f"{self.model._meta.table_name}.{self.name}"

    def db_value(self, value: Any) -> Any:
        box, context = self._sealing()
        if value is not None and box is not None:
            value = box.seal_text(str(value), context)
        return super().db_value(value)

    def python_value(self, value: Any) -> Any:
        value = super().python_value(value)
        box, context = self._sealing()
        if value is not None and box is not None:
            value = box.open_text(str(value), context)
        return value


class IdempotencyRecord(peewee.Model):
    """The first answer to a mutating request, stored in the same transaction as its effect."""

    scope = peewee.CharField(max_length=200)
    method = peewee.CharField(max_length=200)
    request_id = peewee.CharField(max_length=128)
    request_sha256 = peewee.CharField(max_length=64)
    # Sealed under the node's key (nodes/common/secrets.py): some answers carry secrets.
    response = peewee.BlobField()
    created_at = peewee.DateTimeField(default=utc_now)
    # The node's SecretBox, set on each node's bound copy; None only in unit tests.
    secret_box: ClassVar[Any] = None

    class Meta:
        table_name = "idempotency_record"
        indexes = ((("scope", "method", "request_id"), True),)


class NodeCredential(peewee.Model):
    """The license key this node received from approval at enrollment (one row)."""

    entity_id = peewee.CharField(max_length=64, primary_key=True)
    # Sealed under the node's key (nodes/common/secrets.py), never in clear.
    license_key = SealedCharField(max_length=128)
    license_key_id = peewee.CharField(max_length=64)
    expires_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField(default=utc_now)
    secret_box: ClassVar[Any] = None

    class Meta:
        table_name = "node_credential"


class OrderVoid(peewee.Model):
    """A void recorded for an order number: the purchase's compensating step.

    Kept whether or not this node holds the order, so that a request for the order that
    arrives after its void (a late retry, a delayed duplicate) can never bring it back.
    """

    order_number = peewee.CharField(max_length=64, primary_key=True)
    retail_entity_id = peewee.CharField(max_length=64)
    settlement_agency_id = peewee.CharField(max_length=64, default="")
    reason = peewee.CharField(max_length=64)
    voided_at = peewee.DateTimeField(default=utc_now)
    # Agency: when verification acknowledged the void (its own resumer delivers it).
    forwarded_at = peewee.DateTimeField(null=True)
    forward_attempts = peewee.IntegerField(default=0)
    next_forward_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "order_void"


# The agency's resumer reads the voids not yet forwarded, by when they are due: the index
# holds only those, so its pass does not grow with every void ever recorded.
OrderVoid.add_index(
    OrderVoid.index(OrderVoid.next_forward_at, name="ordervoid_next_forward_at").where(
        OrderVoid.forwarded_at.is_null()
    )
)


class StoreHeartbeat(peewee.Model):
    """One row the store rewrites to probe whether its database can be written again."""

    name = peewee.CharField(max_length=16, primary_key=True)
    beat_at = peewee.DateTimeField()

    class Meta:
        table_name = "store_heartbeat"


class NodeEnrollment(peewee.Model):
    """The program serial this node registered with: a new one in its config re-registers it."""

    entity_id = peewee.CharField(max_length=64, primary_key=True)
    program_serial = peewee.CharField(max_length=64)
    enrolled_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "node_enrollment"


class InformationAnnouncement(peewee.Model):
    """Each time the node compared its installation info with approval's registry entry.

    ``outcome`` is MATCHED (nothing differed), CHANGED (the change request was accepted),
    REFUSED (approval refused it) or FAILED (approval could not be asked).
    """

    id = peewee.AutoField()
    entity_id = peewee.CharField(max_length=64)
    outcome = peewee.CharField(max_length=16)
    # Comma-separated names of the fields that differed ("" when none).
    fields = peewee.CharField(max_length=200, default="")
    registry_serial = peewee.BigIntegerField(default=0)
    detail = peewee.CharField(max_length=500, default="")
    announced_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = "information_announcement"


class LoginFailureRow(peewee.Model):
    """Failed logins of one member ID from one source address (nodes/common/credentials.py).

    Kept in the node's database so that a restart or a second replica does not reset it.
    """

    # "<member_id> <source>": one row per member ID and source address.
    key = peewee.CharField(max_length=200, primary_key=True)
    member_id = peewee.CharField(max_length=128, index=True)
    source = peewee.CharField(max_length=64)
    failures = peewee.IntegerField(default=0)
    first_failure_at = peewee.DateTimeField(null=True)
    last_failure_at = peewee.DateTimeField(null=True, index=True)
    # A source this member logged in from is not slowed by other sources' failures.
    last_success_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "login_failure"


RUNTIME_MODELS: tuple[type[peewee.Model], ...] = (IdempotencyRecord, NodeCredential)


class AuditChainEntryRow(peewee.Model):
    """One entry of the node's audit chain (append-only; see nodes/common/audit_chain.py).

    Columns hold exactly what the entry hash covers, as text, so that re-reading a row
    gives the bytes that were hashed on any backend.
    """

    sequence = peewee.BigIntegerField(primary_key=True)
    kind = peewee.CharField(max_length=40)
    subject = peewee.CharField(max_length=200, index=True)
    state_json = peewee.TextField()
    recorded_at = peewee.CharField(max_length=40)
    previous_hash = peewee.CharField(max_length=64)
    entry_hash = peewee.CharField(max_length=64)

    class Meta:
        table_name = "audit_chain_entry"


class AuditChainHeadRow(peewee.Model):
    """The chain's last sequence and hash (one row); updating it first serializes appends."""

    name = peewee.CharField(max_length=16, primary_key=True)
    sequence = peewee.BigIntegerField(default=0)
    entry_hash = peewee.CharField(max_length=64)

    class Meta:
        table_name = "audit_chain_head"


class AuditCheckpointRow(peewee.Model):
    """A signed checkpoint of the audit chain, published at intervals."""

    sequence = peewee.BigIntegerField(primary_key=True)
    entry_hash = peewee.CharField(max_length=64)
    signed_at = peewee.CharField(max_length=40)
    signature = peewee.CharField(max_length=128)

    class Meta:
        table_name = "audit_checkpoint"


class DataDisclosureRow(peewee.Model):
    """One disclosure of a member's data (agencies and marketplaces): who, what, when, why."""

    # Time-ordered, so that listing newest first is listing by ID.
    disclosure_id = peewee.CharField(max_length=40, primary_key=True)
    member_id = peewee.CharField(max_length=64, index=True)
    kind = peewee.CharField(max_length=32)
    recipient = peewee.CharField(max_length=200)
    data = peewee.CharField(max_length=500)
    purpose = peewee.CharField(max_length=300)
    reference = peewee.CharField(max_length=128, default="")
    disclosed_at = peewee.DateTimeField(default=utc_now, index=True)

    class Meta:
        table_name = "data_disclosure"
        # A purchase asks whether its order's disclosure is recorded: a lookup by reference
        # that must not scan every disclosure ever made.
        indexes = ((("reference", "kind"), False),)
