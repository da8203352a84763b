"""Claim 10's push rounds at approval: which shops a round pushes to, and what a round
costs when every shop is current (twice a second, for as long as approval runs)."""

from __future__ import annotations

import datetime
import functools

from nodes.approval import guarantee_push
from storage.approval.repository import ApprovalRepository
from storage.common.database import Store, open_database
from tests.storage_support import registry_entry, sqlite_statements

NOW = datetime.datetime(2030, 5, 1, 12, 0, 0)
PUSH_SHOPS = 200


def _registry() -> tuple[Store, ApprovalRepository]:
    """One agency (serial 1), PUSH_SHOPS active push shops, a suspended push shop and a
    directory shop."""
    store = Store(open_database("sqlite:///:memory:"), workers=1)
    repo = ApprovalRepository(store.database)
    store.database.create_tables(repo.tables)
    rows = [registry_entry("agency-1", "settlement", 1, routing_prefix="4111")]
    rows += [
        registry_entry(f"push-{n}", "retail", 10 + n, discovery_variant="push")
        for n in range(PUSH_SHOPS)
    ]
    rows.append(
        registry_entry("suspended", "retail", 5, discovery_variant="push", status="SUSPENDED")
    )
    rows.append(registry_entry("directory", "retail", 6, discovery_variant="directory"))
    store.transaction(lambda: repo.entities.insert_many(rows).execute())
    return store, repo


def _round(store: Store, repo: ApprovalRepository, now: datetime.datetime) -> dict[str, list[str]]:
    pending = store.transaction(lambda: guarantee_push.pending_pushes(repo, now))
    return {push.retail_entity_id: [row.entity_id for row in push.changes] for push in pending}


def test_a_round_pushes_what_each_active_push_shop_lacks_and_claims_it():
    store, repo = _registry()
    first = _round(store, repo, NOW)
    assert set(first) == {f"push-{n}" for n in range(PUSH_SHOPS)}
    assert set(map(tuple, first.values())) == {("agency-1",)}
    # Claimed: another replica's round at the same moment finds nothing to take.
    assert _round(store, repo, NOW) == {}
    for shop in first:
        store.transaction(functools.partial(guarantee_push.acknowledge, repo, shop, 1))
        store.transaction(functools.partial(guarantee_push.release, repo, shop))
    later = NOW + datetime.timedelta(minutes=5)
    assert _round(store, repo, later) == {}
    # A new agency: every push shop is behind again, and gets that change only.
    store.transaction(
        lambda: repo.entities.insert(
            **registry_entry("agency-2", "settlement", 1_000, routing_prefix="5222")
        ).execute()
    )
    again = _round(store, repo, later)
    assert set(again) == set(first)
    assert set(map(tuple, again.values())) == {("agency-2",)}


def test_a_postponed_shop_waits_for_its_next_attempt():
    store, repo = _registry()
    _round(store, repo, NOW)
    store.transaction(
        lambda: guarantee_push.postpone(repo, "push-0", "unreachable", base_s=60, max_s=600)
    )
    store.transaction(lambda: guarantee_push.release(repo, "push-1"))
    due = _round(store, repo, datetime.datetime.now(datetime.UTC).replace(tzinfo=None))
    assert "push-0" not in due and "push-1" in due


def test_a_round_with_every_shop_current_is_one_query():
    """Two hundred push shops that acknowledged the newest change: the round reads them in
    one query, where it ran three per shop (600 statements, twice a second)."""
    store, repo = _registry()
    for shop in _round(store, repo, NOW):
        store.transaction(functools.partial(guarantee_push.acknowledge, repo, shop, 1))
    later = NOW + datetime.timedelta(minutes=5)
    ran = sqlite_statements(store, lambda: guarantee_push.pending_pushes(repo, later))
    assert len(ran) == 1, ran
