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
    license_key = peewee.CharField(max_length=128)
    license_key_id = peewee.CharField(max_length=64)
    expires_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField(default=utc_now)
    secret_box: ClassVar[Any] = None

    class Meta:
        table_name = "node_credential"


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
