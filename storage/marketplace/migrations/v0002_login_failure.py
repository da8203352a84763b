"""Version 2 of marketplace: login failures by member ID and source address, kept in the database
so that a restart or a second replica shares the login throttle (nodes/common/credentials.py).

This declaration is frozen: it must never change, whatever the model becomes.
"""

from __future__ import annotations

import peewee

from storage.common.migrations import Migration


class LoginFailureRow(peewee.Model):
    key = peewee.CharField(max_length=200, primary_key=True)
    member_id = peewee.CharField(max_length=128, index=True)
    source = peewee.CharField(max_length=64)
    failures = peewee.IntegerField()
    first_failure_at = peewee.DateTimeField(null=True)
    last_failure_at = peewee.DateTimeField(null=True, index=True)
    last_success_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "login_failure"


def apply(migration: Migration) -> None:
    migration.create_tables([LoginFailureRow])
