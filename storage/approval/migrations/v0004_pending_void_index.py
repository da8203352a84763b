"""Version 4 of approval: the index on the voids' next forwarding time holds only the voids
not yet forwarded, as the model now declares it (settlement v0005, where the agency's
resumer reads it).

This step is frozen: it must never change, whatever the model becomes.
"""

from __future__ import annotations

from storage.common.migrations import Migration


def apply(migration: Migration) -> None:
    migration.replace_index(
        "order_void", "ordervoid_next_forward_at", "next_forward_at", '"forwarded_at" IS NULL'
    )
