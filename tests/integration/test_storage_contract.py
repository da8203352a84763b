"""The storage contract: what every role's code relies on, proved on SQLite and PostgreSQL.

Each test runs once per engine (the ``engine`` fixture), on a real database: a SQLite file,
or a database of its own in the throwaway PostgreSQL cluster the test session starts.
"""

from __future__ import annotations

import ast
import asyncio
import datetime
import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import peewee
import pytest
from suretynet.approval.v1 import approval_pb2
from suretynet.settlement.v1 import settlement_pb2
from suretynet.type.v1 import types_pb2

from nodes.common.convert import money
from nodes.common.errors import DomainError
from nodes.common.idempotency import run_once
from nodes.common.identity import EntityIdentity
from nodes.settlement import billing, cancellations, members, purchases
from storage.common import migrations, statements
from storage.common.audit_chain import AuditChainTables
from storage.common.database import Store, bind, close_database, open_database
from storage.common.models import IdempotencyRecord, InformationAnnouncement
from storage.settlement.models import MemberRow
from storage.settlement.repository import SettlementRepository
from tests.storage_support import insert, read_back, sample_row

ROLES = ("approval", "verification", "settlement", "retail", "marketplace")
WORKERS = 4


def open_store(url: str, workers: int = WORKERS) -> Store:
    return Store(open_database(url, max_connections=workers), workers=workers)


@pytest.mark.parametrize("role", ROLES)
def test_migrations_build_exactly_the_schema_the_models_declare(engine, new_database, role):
    """A model changed without a migration (or a migration without the model) fails here:
    the migrated schema and the models' own tables have the same columns and indexes."""
    migrated = open_database(new_database("migrated"))
    declared = open_database(new_database("declared"))
    try:
        applied = migrations.migrate(migrated, role)
        assert [step.version for step in applied] == list(
            range(1, migrations.latest_version(role) + 1)
        )
        declared.create_tables([bind(declared, model) for model in migrations.role_models(role)])
        assert migrations.describe_schema(migrated) == migrations.describe_schema(declared)
        assert migrations.migrate(migrated, role) == []  # a second start applies nothing
    finally:
        close_database(migrated)
        close_database(declared)


@pytest.mark.parametrize("role", ROLES)
def test_every_column_of_every_table_round_trips_at_its_limits(engine, new_database, role):
    """Full-length UTF-8 text, 63-bit money, raw bytes and microseconds come back unchanged."""
    store = open_store(new_database())
    try:
        store.transaction(lambda: migrations.migrate(store.database, role))
        for model in migrations.role_models(role):
            table = bind(store.database, model)
            values = sample_row(table)
            store.transaction(functools.partial(insert, table, values))
            stored = store.transaction(functools.partial(read_back, table, values))
            assert stored == values, table._meta.table_name
    finally:
        store.close()


def test_a_failed_unit_of_work_leaves_nothing_behind(engine, new_database):
    store = open_store(new_database())
    table = bind(store.database, IdempotencyRecord)
    store.transaction(lambda: migrations.migrate(store.database, "approval"))

    def half_done() -> None:
        table.create(scope="s", method="m", request_id="r", request_sha256="x", response=b"")
        raise RuntimeError("the effect failed after its first write")

    try:
        with pytest.raises(RuntimeError):
            asyncio.run(store.run(half_done))
        assert store.transaction(lambda: table.select().count()) == 0
    finally:
        store.close()


def test_a_duplicate_key_in_a_savepoint_leaves_the_transaction_usable(engine, new_database):
    """PostgreSQL aborts a whole transaction on an error: code that catches IntegrityError
    and carries on needs a savepoint around the insert. (Idempotency's concurrent duplicate
    does not carry on: its refusal ends the transaction, so it keeps no savepoint.)"""
    store = open_store(new_database())
    table = bind(store.database, IdempotencyRecord)
    store.transaction(lambda: migrations.migrate(store.database, "approval"))
    row = {"scope": "s", "method": "m", "request_sha256": "x", "response": b""}

    def work() -> bool:
        table.create(request_id="first", **row)
        try:
            with store.database.atomic():
                table.create(request_id="first", **row)
        except peewee.IntegrityError:
            caught = True
        table.create(request_id="second", **row)
        return caught

    try:
        assert store.transaction(work)
        assert store.transaction(lambda: table.select().count()) == 2
    finally:
        store.close()


def test_idempotency_gives_one_effect_and_one_answer(engine, new_database):
    store = open_store(new_database())
    table = bind(store.database, IdempotencyRecord)
    store.transaction(lambda: migrations.migrate(store.database, "approval"))
    effects: list[int] = []

    def effect() -> approval_pb2.IssueProgramSerialResponse:
        effects.append(1)
        return approval_pb2.IssueProgramSerialResponse(
            program_serial=approval_pb2.ProgramSerial(serial=f"S{len(effects)}")
        )

    def once(note: str = "n") -> approval_pb2.IssueProgramSerialResponse:
        request = approval_pb2.IssueProgramSerialRequest(request_id="r1", note=note)
        return store.transaction(
            lambda: run_once(
                table,
                scope="operator",
                method="/m",
                request=request,
                response_type=approval_pb2.IssueProgramSerialResponse,
                effect=effect,
            )
        )

    try:
        assert once() == once()
        assert len(effects) == 1
        with pytest.raises(DomainError) as reused:
            once("other")
        assert reused.value.reason == "IDEMPOTENCY_KEY_REUSED"
    finally:
        store.close()


def search(
    order_number: str, amount_minor: int
) -> settlement_pb2.BillingAgencyIdentificationSearch:
    return settlement_pb2.BillingAgencyIdentificationSearch(
        retail_entity=types_pb2.RetailEntityIdentification(retail_entity_id="shop-1"),
        anonymous_user_id="41110000000000000001",
        lines=[
            types_pb2.OrderLine(
                catalog_item_id="tea",
                quantity=1,
                unit_price=money(amount_minor, "USD"),
                line_amount=money(amount_minor, "USD"),
            )
        ],
        amount=money(amount_minor, "USD"),
        order_number=order_number,
        payment_method=types_pb2.PAYMENT_METHOD_SINGLE_PAYMENT,
    )


def agency_with_member(
    url: str, member_id: str, limit_minor: int
) -> tuple[Store, SettlementRepository]:
    """A migrated settlement store with one enrolled member of ``limit_minor`` USD credit."""
    store = open_store(url)
    repo = SettlementRepository(store.database)
    store.transaction(lambda: migrations.migrate(store.database, "settlement"))
    store.transaction(
        lambda: members.enroll_member(
            repo,
            member_id=member_id,
            display_name=member_id.title(),
            password=f"{member_id} password",
            credit_limit_minor=limit_minor,
            currency_code="USD",
        )
    )
    return store, repo


def test_concurrent_credit_checks_with_several_writers_never_exceed_the_limit(engine, new_database):
    """Sixteen orders of 1,000 race on four database workers against a 4,500 limit: the
    member row lock (FOR UPDATE on PostgreSQL, the single writer on SQLite) admits four."""
    store, repo = agency_with_member(new_database(), "racer", 4_500)

    def order(number: int) -> Callable[[], Any]:
        purchase = purchases.Purchase(
            search(f"ON-{number}", 1_000), "racer", "agency-1", "Shop One", "race"
        )
        return lambda: purchases.record_order(repo, purchase)

    async def race() -> list[Any]:
        return await asyncio.gather(
            *(store.run(order(number)) for number in range(16)), return_exceptions=True
        )

    try:
        outcomes = asyncio.run(race())
        refused = [o for o in outcomes if isinstance(o, DomainError)]
        assert len(refused) == 12, outcomes
        assert {error.reason for error in refused} == {"CREDIT_LIMIT_EXCEEDED"}
        assert store.transaction(lambda: members.credit_used(repo, "racer")) == 4_000
        assert store.transaction(lambda: repo.orders.select().count()) == 4
    finally:
        store.close()


def test_the_running_credit_in_use_follows_every_billing_transition(engine, new_database):
    """The credit check reads one running sum (no sum over history); every way an order opens
    or closes (approval, billing, a cancellation of each kind, a void) moves it, so it always
    equals the sum of the open orders that reconciliation recomputes."""
    store, repo = agency_with_member(new_database(), "ledger", 10_000)
    shop = EntityIdentity("retail", "shop-1")

    def buy(number: int, amount: int) -> None:
        purchase = purchases.Purchase(
            search(f"ON-{number}", amount), "ledger", "agency-1", "Shop One", "ledger"
        )
        store.transaction(lambda: purchases.record_order(repo, purchase))

    def cancel(number: int) -> None:
        notice = types_pb2.CancelRequestNotice(
            cancel_request_id=f"cancel-{number}",
            order_number=f"ON-{number}",
            procedure=types_pb2.CANCEL_PROCEDURE_NOTIFIED,
            requested_by=types_pb2.CANCEL_REQUESTER_MEMBER,
        )
        store.transaction(lambda: cancellations.begin(repo, notice, shop))

    def in_use() -> tuple[int, int]:
        return store.transaction(
            lambda: (members.credit_used(repo, "ledger"), members.open_orders_sum(repo, "ledger"))
        )

    try:
        for number, amount in enumerate((1_000, 2_000, 3_000, 1_500)):
            buy(number, amount)
        buy(0, 1_000)  # a retried search: the same order, no second hold
        assert in_use() == (7_500, 7_500)
        cancel(0)  # not yet billed: billing stops
        assert in_use() == (6_500, 6_500)
        store.transaction(lambda: billing.run_billing(repo, None, 0))
        assert in_use() == (6_500, 6_500)  # billed orders still use credit
        cancel(1)  # billed: credited back
        assert in_use() == (4_500, 4_500)
        store.transaction(
            lambda: purchases.void_order(repo, purchases.get_order(repo, "ON-2"), "test")
        )
        assert in_use() == (1_500, 1_500)
        with pytest.raises(DomainError, match="credit limit"):
            buy(9, 8_501)
        buy(10, 8_500)
        assert in_use() == (10_000, 10_000)
    finally:
        store.close()


@pytest.mark.parametrize("role", ["settlement", "marketplace"])
def test_every_lookup_a_purchase_makes_by_order_history_is_indexed(engine, new_database, role):
    """A purchase asks whether its disclosure is recorded by (reference, kind): without an
    index that scanned every disclosure ever made, so each purchase cost more than the last
    (fails before settlement v0004 and marketplace v0003)."""
    database = open_database(new_database())
    try:
        migrations.migrate(database, role)
        indexes = migrations.describe_schema(database)["data_disclosure"]["indexes"]
        assert (("reference", "kind"), False, "") in indexes
    finally:
        close_database(database)


def test_the_pool_holds_at_most_one_connection_per_worker(engine, new_database):
    """A PostgreSQL node never opens more connections than its database workers, however
    many calls wait; SQLite has one writer connection."""
    store = open_store(new_database(), workers=2)
    lock = threading.Lock()
    seen: set[int] = set()

    def who() -> int:
        if engine == "postgresql":
            backend = store.database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
        else:
            backend = id(store.database.connection())
        with lock:
            seen.add(backend)
        return int(backend)

    async def many() -> None:
        await asyncio.gather(*(store.run(who) for _ in range(40)))

    try:
        asyncio.run(many())
        assert 1 <= len(seen) <= (2 if engine == "postgresql" else 1)
    finally:
        store.close()


def test_no_upsert_that_only_sqlite_knows():
    """INSERT OR REPLACE (peewee's on_conflict_replace, replace, replace_many) fails on
    PostgreSQL; upserts use on_conflict(conflict_target=..., update=...), which both run."""
    root = Path(__file__).resolve().parents[2]
    datetime_fields = {"tzinfo", "year", "month", "day", "hour", "minute", "second", "microsecond"}
    found = []
    for path in [*(root / "nodes").rglob("*.py"), *(root / "storage").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            name = node.func.attr
            keywords = {keyword.arg for keyword in node.keywords}
            model_replace = name == "replace" and keywords and not node.args
            if name in ("on_conflict_replace", "replace_many") or (
                model_replace and not keywords <= datetime_fields
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert found == []


def test_compiled_statements_behave_as_peewees_own_queries(engine, new_database):
    """The hot path's compiled SQL (storage/common/statements.py) reads and writes exactly
    what peewee's own queries do: conversions both ways, dirty-column updates, an
    auto-incremented key read back, FOR UPDATE lookups, insert-or-ignore, and a callable
    default never frozen into reused SQL."""
    store = open_store(new_database())
    repo = SettlementRepository(store.database)
    store.transaction(lambda: migrations.migrate(store.database, "settlement"))
    approval = open_store(new_database("approval"))
    chain = AuditChainTables(approval.database)
    approval.transaction(lambda: migrations.migrate(approval.database, "approval"))

    def enrol(member_id: str) -> Any:
        return members.enroll_member(
            repo,
            member_id=member_id,
            display_name="Ünïcode name",
            password="a long password",
            credit_limit_minor=10**12,
            currency_code="USD",
        )

    try:
        store.transaction(lambda: (enrol("m-1"), enrol("m-2")))
        read = store.transaction(lambda: statements.find(repo.members, member_id="m-1"))
        expected = store.transaction(lambda: repo.members.get(repo.members.member_id == "m-1"))
        assert read is not None and read.__data__ == expected.__data__
        assert isinstance(read.enrolled_at, datetime.datetime)

        def update() -> None:
            row = statements.find(repo.members, lock=True, member_id="m-2")
            assert row is not None
            row.display_name = "Renamed"
            assert row.save() == 1
            assert row.save() is False  # nothing dirty: no write at all

        store.transaction(update)
        renamed = store.transaction(lambda: repo.members.get(repo.members.member_id == "m-2"))
        assert (renamed.display_name, renamed.credit_limit_minor) == ("Renamed", 10**12)
        assert store.transaction(lambda: statements.find(repo.members, member_id="nobody")) is None

        # Whole rows are made into models directly; any other select goes through peewee.
        whole: statements.Statement[MemberRow] = statements.Statement(
            lambda t, p: t.select().where(t.credit_limit_minor == p.limit).order_by(t.member_id)
        )
        names: statements.Statement[MemberRow] = statements.Statement(
            lambda t, p: (
                t.select(t.member_id).where(t.credit_limit_minor == p.limit).order_by(t.member_id)
            )
        )
        table = repo.members
        expected_rows = store.transaction(lambda: list(table.select().order_by(table.member_id)))
        rows = store.transaction(lambda: whole.rows(table, limit=10**12))
        assert [row.__data__ for row in rows] == [row.__data__ for row in expected_rows]
        first = store.transaction(lambda: whole.first(table, limit=10**12))
        assert first is not None and first.__data__ == expected_rows[0].__data__
        assert store.transaction(lambda: whole.first(table, limit=1)) is None
        partial = store.transaction(lambda: names.rows(table, limit=10**12))
        assert [row.__data__ for row in partial] == [{"member_id": "m-1"}, {"member_id": "m-2"}]
        named = store.transaction(lambda: names.first(table, limit=10**12))
        assert named is not None and named.member_id == "m-1"

        # An auto-incremented key comes back from the compiled INSERT.
        announcements = bind(store.database, InformationAnnouncement)
        made = store.transaction(
            lambda: [announcements.create(entity_id="e", outcome=o) for o in ("A", "B")]
        )
        assert [row.id for row in made] == [1, 2]
        assert store.transaction(lambda: announcements.get_by_id(2).outcome) == "B"
        entries = approval.transaction(
            lambda: [chain.append("KIND", f"subject-{n}", {"n": n}) for n in range(3)]
        )
        assert [entry.sequence for entry in entries] == [1, 2, 3]
        assert approval.transaction(chain.head_state)[0] == 3

        void = {"order_number": "ON-9", "retail_entity_id": "shop-1", "reason": "r"}
        now = datetime.datetime(2026, 11, 29, 1, 2, 3, 456_789)
        values = {**void, "voided_at": now, "next_forward_at": now, "forwarded_at": None}
        inserted = store.transaction(
            lambda: [statements.insert_or_ignore(repo.voids, **values) for _ in range(2)]
        )
        assert inserted == [1, 0]
        stored = store.transaction(
            lambda: statements.find(repo.voids, order_number="ON-9", retail_entity_id="shop-1")
        )
        assert stored is not None and stored.voided_at == now
        with pytest.raises(ValueError, match="voided_at"):
            store.transaction(lambda: statements.insert_or_ignore(repo.voids, order_number="x"))
    finally:
        store.close()
        approval.close()
