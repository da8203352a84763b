"""Version 2 of approval: every registry change recorded with who made it and from where
(docs/IDENTITY.md, "The authority model").

This declaration is frozen: it must never change, whatever the model becomes.
"""

from __future__ import annotations

import peewee

from storage.common.migrations import Migration


class RegistryChangeRow(peewee.Model):
    id = peewee.AutoField()
    entity_id = peewee.CharField(max_length=64, index=True)
    changed_by = peewee.CharField(max_length=200)
    source_ip = peewee.CharField(max_length=64)
    previous_address = peewee.CharField(max_length=128)
    address = peewee.CharField(max_length=128)
    registry_serial = peewee.BigIntegerField()
    changed_at = peewee.DateTimeField()

    class Meta:
        table_name = "registry_change"


def apply(migration: Migration) -> None:
    migration.create_tables([RegistryChangeRow])
