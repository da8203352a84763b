"""Replicas of a role run the same resumer over one database: each due flow is driven by
one of them only (nodes/common/resumer.py, ``claim_row``), on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import collections
import datetime
from collections.abc import Callable, Sequence

from nodes.common import resumer
from storage.common import migrations
from storage.common.database import Store, open_database
from storage.common.models import utc_now
from storage.settlement.models import SettlementOrderRow
from storage.settlement.repository import SettlementRepository
from tests.storage_support import sample_row

FLOWS = 12


def test_two_replicas_resumers_drive_each_due_report_once(
    engine: str, new_database: Callable[[str], str]
):
    """Two processes' resumers (two stores, two connection pools) both read every due
    transaction report before either claims one; each report is then delivered once, and
    the replica that came second skips the ones the first took."""
    url = new_database("agency")

    async def scenario() -> tuple[collections.Counter[str], int]:
        stores = [Store(open_database(url), workers=4) for _ in range(2)]
        stores[0].transaction(lambda: migrations.migrate(stores[0].database, "settlement"))
        repos = [SettlementRepository(store.database) for store in stores]
        past = utc_now() - datetime.timedelta(minutes=5)

        def seed() -> None:
            for index in range(FLOWS):
                values = sample_row(SettlementOrderRow, index)
                values.update(
                    order_number=f"order-{index}",
                    reported_at=None,
                    next_report_at=past + datetime.timedelta(seconds=index),
                    created_at=past,
                )
                repos[0].orders.insert(**values).execute()

        stores[0].transaction(seed)
        delivered: collections.Counter[str] = collections.Counter()
        both_listed = asyncio.Barrier(2)
        release = asyncio.Event()

        def make(store: Store, repo: SettlementRepository, name: str) -> resumer.Resumer:
            orders = repo.orders

            async def due(limit: int) -> Sequence[resumer.DueFlow]:
                rows = await store.run(
                    lambda: list(
                        orders.select(orders.order_number, orders.next_report_at)
                        .where(orders.reported_at.is_null() & (orders.next_report_at <= utc_now()))
                        .limit(limit)
                    )
                )
                # Both replicas hold the whole list before either claims: the worst race.
                await both_listed.wait()
                return [
                    resumer.DueFlow(row.order_number, "", due_at=row.next_report_at) for row in rows
                ]

            async def drive(flow: resumer.DueFlow) -> None:
                delivered[flow.key] += 1
                await release.wait()
                await store.run(
                    lambda: (
                        orders.update(reported_at=utc_now())
                        .where(orders.order_number == flow.key)
                        .execute()
                    )
                )

            async def postpone(flow: resumer.DueFlow, wait_s: float | None) -> None:
                raise AssertionError(f"{flow.key} failed")

            def claim(flow: resumer.DueFlow) -> bool:
                return resumer.claim_row(
                    orders,
                    orders.order_number,
                    flow.key,
                    orders.next_report_at,
                    flow.due_at,
                    utc_now(),
                )

            return resumer.Resumer(
                name,
                due=due,
                drive=drive,
                postpone=postpone,
                claim=lambda flow: store.run(lambda: claim(flow)),
                concurrency=FLOWS,
            )

        replicas = [
            make(store, repo, f"replica {n} resumer")
            for n, (store, repo) in enumerate(zip(stores, repos, strict=True))
        ]
        rounds = [asyncio.create_task(replica.run_round()) for replica in replicas]
        # Every flow has been either taken (its drive started) or skipped by each replica.
        while sum(delivered.values()) + sum(r.skipped for r in replicas) < 2 * FLOWS:
            done = [task for task in rounds if task.done()]
            assert not done or all(task.exception() is None for task in done)
            await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(*rounds)
        left = await stores[0].run(
            lambda: repos[0].orders.select().where(repos[0].orders.reported_at.is_null()).count()
        )
        assert left == 0
        return delivered, sum(r.skipped for r in replicas)

    delivered, skipped = asyncio.run(scenario())
    assert sorted(delivered) == sorted(f"order-{index}" for index in range(FLOWS))
    assert set(delivered.values()) == {1}
    assert skipped == FLOWS
