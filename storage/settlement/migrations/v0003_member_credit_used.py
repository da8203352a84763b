"""Version 3 of settlement: each member's credit in use kept as a running sum
(``member.credit_used_minor``), so that a credit check no longer sums the member's whole
order history. Existing members get the sum of their open orders.

This step is frozen: it must never change, whatever the model becomes.
"""

from __future__ import annotations

import peewee

from storage.common.migrations import Migration

# The open billing states of version 3 (nodes/settlement/members.py OPEN_BILLING_STATES).
OPEN_STATES = ("NOT_YET_BILLED", "BILLED")


def apply(migration: Migration) -> None:
    migration.run(
        migration.migrator.add_column(
            "member", "credit_used_minor", peewee.BigIntegerField(default=0)
        )
    )
    param = migration.database.param
    migration.execute(
        "UPDATE member SET credit_used_minor = ("
        " SELECT COALESCE(SUM(o.amount_minor), 0) FROM settlement_order o"
        f" WHERE o.member_id = member.member_id AND o.billing_state IN ({param}, {param}))",
        OPEN_STATES,
    )
