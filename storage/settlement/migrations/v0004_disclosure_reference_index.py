"""Version 4 of settlement: an index on the member data disclosures' (reference, kind), which a
purchase looks up once per order: without it the lookup scanned every disclosure ever made,
so each purchase cost more than the last.

This step is frozen: it must never change, whatever the model becomes.
"""

from __future__ import annotations

from storage.common.migrations import Migration


def apply(migration: Migration) -> None:
    migration.run(migration.migrator.add_index("data_disclosure", ("reference", "kind"), False))
