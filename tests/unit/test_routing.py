"""Routing an anonymous user ID by its agency's prefix: the right agency, at a cost that does
not grow with the number of agencies (approval's directory, claim 1; a push or cache shop's
guarantee table, claims 10 and 19)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from nodes.approval import guarantees
from nodes.common import routing
from nodes.common.errors import DomainError
from nodes.retail import guarantee_cache
from storage.approval.repository import ApprovalRepository
from storage.common.database import Store, open_database
from storage.retail.repository import RetailRepository
from tests.storage_support import registry_entry, sqlite_steps

R = TypeVar("R")

# Prefixes that never nest with the ones the tests look up (4111, 52221, 633311).
FILLER_PREFIXES = [f"7{number:05d}" for number in range(2_000)]


def _approval(prefixes: list[str]) -> tuple[Store, ApprovalRepository]:
    rows = [
        registry_entry(f"agency-{number}", "settlement", number + 1, routing_prefix=prefix)
        for number, prefix in enumerate(prefixes)
    ]
    # A shop has no prefix and is never a candidate.
    rows.append(registry_entry("shop-1", "retail", len(rows) + 1))
    return _filled(ApprovalRepository, lambda repo: repo.entities, rows)


def _shop(prefixes: list[str]) -> tuple[Store, RetailRepository]:
    rows = [
        {
            "settlement_agency_id": f"agency-{number}",
            "display_name": f"Agency {number}",
            "routing_prefix": prefix,
            "address": "127.0.0.1:7000",
            "status": "ACTIVE",
            "registry_serial": number + 1,
        }
        for number, prefix in enumerate(prefixes)
    ]
    return _filled(RetailRepository, lambda repo: repo.guarantees, rows)


def _filled(
    repository: Callable[[Any], R], table: Callable[[R], Any], rows: list[dict[str, Any]]
) -> tuple[Store, R]:
    """An in-memory store of ``repository``'s tables, with ``rows`` in ``table``."""
    store = Store(open_database("sqlite:///:memory:"), workers=1)
    repo = repository(store.database)
    store.database.create_tables(repo.tables)  # type: ignore[attr-defined]
    store.transaction(lambda: table(repo).insert_many(rows).execute())
    return store, repo


def test_approval_routes_an_id_to_the_agency_whose_prefix_starts_it():
    store, repo = _approval(["4111", "52221", "633311"])

    def agency(anonymous_user_id: str) -> str:
        return store.transaction(
            lambda: guarantees.search_settlement_agency(repo, anonymous_user_id)
        ).entity_id

    assert agency("41110000000000000000") == "agency-0"
    assert agency("52221000000000000000") == "agency-1"
    assert agency("63331100000000000000") == "agency-2"
    # An ID sharing only part of a prefix.
    with pytest.raises(DomainError) as unknown:
        agency("52220000000000000000")
    assert unknown.value.reason == "SETTLEMENT_AGENCY_NOT_FOUND"
    # No agency issues these: refused as malformed, with the field at fault.
    for malformed in ("411", "4111abcd00000000", "4111\x000000000000000", "4" * 33):
        with pytest.raises(DomainError) as refused:
            agency(malformed)
        assert refused.value.reason == "FIELD_INVALID"
        assert [v.field for v in refused.value.violations] == ["anonymous_user_id"]


def test_a_shop_routes_by_the_longest_cached_prefix():
    """Between two pushes a shop's cache can hold nested prefixes: the longest wins; and one
    prefix twice (an agency gave it up, another took it): the newer registry entry wins."""
    store, repo = _shop(["4111", "411122", "5222", "7777", "7777"])

    def agency(anonymous_user_id: str) -> str:
        return store.transaction(
            lambda: guarantee_cache.route(repo, anonymous_user_id, None)
        ).settlement_agency_id

    assert agency("41112200000000000000") == "agency-1"
    assert agency("41113300000000000000") == "agency-0"
    assert agency("52220000000000000000") == "agency-2"
    assert agency("77770000000000000000") == "agency-4"
    with pytest.raises(DomainError) as refused:
        agency("99990000000000000000")
    assert refused.value.reason == "SETTLEMENT_AGENCY_NOT_FOUND"


@pytest.mark.parametrize("node", ["approval", "shop"])
def test_routing_an_id_costs_the_same_among_two_thousand_agencies_as_among_three(node):
    """The lookup reads the five candidate prefixes by index, not every agency: it used to
    read them all, on every purchase, so its cost grew with the network."""
    make, lookup = {
        "approval": (_approval, guarantees.search_settlement_agency),
        "shop": (_shop, lambda repo, value: guarantee_cache.route(repo, value, None)),
    }[node]
    few = make(["4111", "52221", "633311"])
    many = make(["4111", "52221", "633311", *FILLER_PREFIXES])
    for store, repo in (few, many):  # Compiled once per table, before counting.
        store.transaction(lambda: lookup(repo, "52221000000000000000"))
    steps_few = sqlite_steps(few[0], lambda: lookup(few[1], "52221000000000000000"))
    steps_many = sqlite_steps(many[0], lambda: lookup(many[1], "52221000000000000000"))
    assert steps_few > 0
    # An index lookup's depth grows by a level or so; a scan would be 600 times the work.
    assert steps_many < 2 * steps_few, (steps_few, steps_many)


def test_candidate_prefixes_are_the_ids_first_four_to_eight_characters():
    assert list(routing.candidate_prefixes("123456789").values()) == [
        "1234",
        "12345",
        "123456",
        "1234567",
        "12345678",
    ]
    assert set(routing.candidate_prefixes("12").values()) == {"12"}
