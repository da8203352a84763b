"""Version 3 of approval: the registry holds a set of addresses per entity, one per replica
of an entity run as several processes over one database (docs/DEPLOYMENT.md, "Replicas").

This declaration is frozen: it must never change, whatever the model becomes.
"""

from __future__ import annotations

import peewee

from storage.common.migrations import Migration


def apply(migration: Migration) -> None:
    migration.run(
        migration.migrator.add_column("entity", "replica_addresses", peewee.TextField(default=""))
    )
