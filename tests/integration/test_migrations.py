"""Schema migrations on SQLite and PostgreSQL: upgrades keep every row, versions are
recorded, concurrent starts migrate once, and a schema newer than the code is refused."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import peewee
import pytest

from nodes.common.node import Node
from storage.common import migrations
from storage.common.database import bind, close_database, open_database
from tests.storage_support import insert, read_back, sample_row
from tests.support import Pki, node_config

ROLES = ("approval", "verification", "settlement", "retail", "marketplace")
ROWS_PER_TABLE = 3


@pytest.mark.parametrize("role", ROLES)
def test_an_upgrade_from_the_first_released_schema_loses_nothing(engine, new_database, role):
    """Version 1 is filled in every table, then migrated to the latest version: every row
    and every version-1 column reads back as it was written."""
    database = open_database(new_database())
    first = migrations.steps_of(role)[0]
    try:
        with database.atomic():
            assert [step.version for step in migrations.migrate(database, role, target=1)] == [1]
        written = {}
        for frozen in first.tables:
            table = bind(database, frozen)
            rows = [sample_row(table, seed) for seed in range(ROWS_PER_TABLE)]
            with database.atomic():
                for row in rows:
                    insert(table, row)
            written[table] = rows
        migrations.migrate(database, role)
        assert migrations.current_version(database) == migrations.latest_version(role)
        for table, rows in written.items():
            with database.atomic():
                assert table.select().count() == ROWS_PER_TABLE, table._meta.table_name
                assert [read_back(table, row) for row in rows] == rows, table._meta.table_name
    finally:
        close_database(database)


def test_version_3_sets_each_members_running_credit_to_their_open_orders(engine, new_database):
    """Members enrolled before the running sum existed start with the sum of their open
    orders (billed or not), and closed orders (cancelled, voided) count for nothing."""
    database = open_database(new_database())
    tables = {
        model._meta.table_name: bind(database, model)
        for model in migrations.steps_of("settlement")[0].tables
    }
    member_table, order_table = tables["member"], tables["settlement_order"]
    try:
        with database.atomic():
            migrations.migrate(database, "settlement", target=2)
        orders = {
            "alice": [
                (100, "NOT_YET_BILLED"),
                (200, "BILLED"),
                (400, "VOIDED"),
                (800, "CREDITED_BACK"),
            ],
            "bob": [(1_600, "BILLING_STOPPED")],
        }
        with database.atomic():
            for member_id, placed in orders.items():
                insert(member_table, {**sample_row(member_table), "member_id": member_id})
                for number, (amount, state) in enumerate(placed):
                    row = sample_row(order_table, number)
                    row.update(
                        order_number=f"{member_id}-{number}",
                        member_id=member_id,
                        amount_minor=amount,
                        billing_state=state,
                    )
                    insert(order_table, row)
        migrations.migrate(database, "settlement")
        with database.atomic():
            used = dict(database.execute_sql("SELECT member_id, credit_used_minor FROM member"))
        assert used == {"alice": 300, "bob": 0}
    finally:
        close_database(database)


def test_a_database_made_before_migrations_is_adopted_as_version_1(engine, new_database):
    """Tables made by the old create_tables, without schema_migration: recorded as version 1
    (nothing re-created), their rows kept, later steps applied."""
    database = open_database(new_database())
    first = migrations.steps_of("settlement")[0]
    tables = [bind(database, frozen) for frozen in first.tables]
    try:
        database.create_tables(tables)
        member = next(table for table in tables if table._meta.table_name == "member")
        row = sample_row(member)
        insert(member, row)
        migrations.migrate(database, "settlement")
        assert migrations.applied_versions(database)[1] == "initial (adopted)"
        assert migrations.current_version(database) == migrations.latest_version("settlement")
        assert read_back(member, row) == row
    finally:
        close_database(database)


def test_a_partial_schema_without_a_version_is_refused(engine, new_database):
    database = open_database(new_database())
    first = migrations.steps_of("retail")[0]
    try:
        database.create_tables([bind(database, first.tables[0])])
        with pytest.raises(migrations.MigrationError, match="partial schema"):
            migrations.migrate(database, "retail")
        assert not database.table_exists(migrations.SCHEMA_TABLE)
    finally:
        close_database(database)


def test_processes_starting_together_apply_each_step_once(engine, new_database):
    """Replicas start at the same moment on one database: one migrates, the other waits
    for it and then finds nothing to do (PostgreSQL advisory lock, SQLite write lock)."""
    url = new_database()
    databases = [open_database(url), open_database(url)]
    barrier = threading.Barrier(len(databases))
    results: list[object] = [None] * len(databases)

    def start(index: int) -> None:
        barrier.wait()
        try:
            results[index] = len(migrations.migrate(databases[index], "marketplace"))
        except Exception as error:  # the test reports it below
            results[index] = error
        finally:
            databases[index].close()

    threads = [threading.Thread(target=start, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latest = migrations.latest_version("marketplace")
    assert sorted(results, key=str) == [0, latest], results
    check = open_database(url)
    try:
        assert sorted(migrations.applied_versions(check)) == list(range(1, latest + 1))
    finally:
        close_database(check)
        for database in databases:
            close_database(database)


def make_too_new(url: str, role: str) -> int:
    database = open_database(url)
    try:
        migrations.migrate(database, role)
        newer = migrations.latest_version(role) + 1
        table = bind(database, migrations.SchemaMigrationRow)
        table.create(version=newer, name="from_a_newer_release")
        return newer
    finally:
        close_database(database)


def test_a_schema_newer_than_the_code_is_refused(engine, new_database):
    url = new_database()
    newer = make_too_new(url, "verification")
    database = open_database(url)
    try:
        with pytest.raises(migrations.SchemaTooNewError, match=f"version {newer}"):
            migrations.migrate(database, "verification")
    finally:
        close_database(database)


def test_a_node_refuses_to_start_on_a_newer_schema(engine, new_database, tmp_path: Path, ca: Pki):
    """The node stops at its first step: no port bound, nothing written."""
    url = new_database()
    make_too_new(url, "approval")
    config = node_config(tmp_path, ca, "approval", "institution", database_url=url)

    async def start() -> int:
        node = Node(config)
        try:
            with pytest.raises(migrations.SchemaTooNewError, match="newer than this release"):
                await node.start()
            return node.server.port
        finally:
            node.store.close()

    assert asyncio.run(start()) == 0  # refused before binding its port


def test_the_migration_files_are_numbered_one_to_n():
    for role in ROLES:
        steps = migrations.steps_of(role)
        assert [step.version for step in steps] == list(range(1, len(steps) + 1))
        assert steps[0].name == "initial" and steps[0].tables


def test_freeze_prints_a_declaration_that_builds_the_same_table():
    """``python -m storage.common.migrations freeze`` output, executed, gives the table the
    model declares: what a new migration file pastes in."""
    for model in migrations.role_models("marketplace"):
        namespace: dict[str, object] = {"peewee": peewee}
        exec(migrations.freeze(model, "Frozen"), namespace)
        frozen: type[peewee.Model] = namespace["Frozen"]  # type: ignore[assignment]
        built = peewee.SqliteDatabase(":memory:")
        declared = peewee.SqliteDatabase(":memory:")
        built.create_tables([bind(built, frozen)])
        declared.create_tables([bind(declared, model)])
        assert migrations.describe_schema(built) == migrations.describe_schema(declared)


def test_freeze_command_prints_the_named_table(capsys):
    assert migrations.main(["freeze", "settlement", "member"]) == 0
    printed = capsys.readouterr().out
    assert "class MemberRow(peewee.Model):" in printed
    assert 'table_name = "member"' in printed or "table_name = 'member'" in printed
    assert printed.count("(peewee.Model):") == 1


def test_the_migrate_command_checks_applies_and_refuses(tmp_path: Path, capsys):
    """``suretynet node migrate ROLE --config F [--check]``: what an operator runs on upgrade."""
    from nodes.cli import main

    url = f"sqlite:///{tmp_path / 'agency.db'}"
    config = tmp_path / "node.toml"
    config.write_text(
        f'role = "settlement"\nentity_id = "agency-1"\ndatabase_url = "{url}"\n'
        'insecure_dev = true\nprogram_serial = "PS-1"\napproval_address = "127.0.0.1:1"\n'
        '[options]\nrouting_prefix = "4111"\n'
    )
    command = ["node", "migrate", "settlement", "--config", str(config)]
    latest = migrations.latest_version("settlement")
    assert main([*command, "--check"]) == 1
    assert f"schema version 0, latest {latest}" in capsys.readouterr().out
    assert main(command) == 0
    assert "applied 1 initial" in capsys.readouterr().out
    assert main([*command, "--check"]) == 0
    make_too_new(url, "settlement")
    assert main(command) == 2
    assert "newer than this release" in capsys.readouterr().err
    assert main(["node", "migrate", "retail", "--config", str(config)]) == 2


def test_a_new_connection_waits_to_switch_a_fresh_sqlite_file_to_wal(tmp_path: Path):
    """While another connection writes to a file still in its rollback journal (a second
    process migrating the same new database), SQLite refuses the switch to WAL at once with
    "database is locked": the node's connection waits for that transaction instead (the
    cause of test_processes_starting_together_apply_each_step_once failing now and then)."""
    path = tmp_path / "fresh.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE first_writer (x INTEGER)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO first_writer VALUES (1)")
    finishing = threading.Timer(0.2, lambda: other.execute("COMMIT"))
    finishing.start()
    database = open_database(f"sqlite:///{path}")
    try:
        database.connect()
        assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert database.execute_sql("SELECT x FROM first_writer").fetchall() == [(1,)]
    finally:
        finishing.join()
        database.close()
        other.close()


def test_an_adopted_database_ends_with_the_indexes_the_models_declare(engine, new_database):
    """A database made before migrations by the old create_tables of the live models: their
    classes were named ...Row, so peewee named the settlement orders' indexes
    ``settlementorderrow_*``, not ``settlementorder_*`` as the frozen version 1 does. Version
    5 must still leave only the partial index on next_report_at, not the old full one beside
    it (which the resumer's pass could keep reading, with every order ever made)."""
    database = open_database(new_database("adopted"))
    declared = open_database(new_database("declared"))
    first = migrations.steps_of("settlement")[0]

    def as_made_then(frozen: type[peewee.Model]) -> type[peewee.Model]:
        if frozen.__name__ != "SettlementOrder":
            return frozen
        meta = type("Meta", (), {"table_name": frozen._meta.table_name})
        return type("SettlementOrderRow", (frozen,), {"Meta": meta, "__module__": __name__})

    try:
        database.create_tables([bind(database, as_made_then(frozen)) for frozen in first.tables])
        migrations.migrate(database, "settlement")
        migrations.migrate(declared, "settlement")
        adopted = migrations.describe_schema(database)["settlement_order"]["indexes"]
        fresh = migrations.describe_schema(declared)["settlement_order"]["indexes"]
        assert adopted == fresh
    finally:
        close_database(database)
        close_database(declared)


def test_the_schema_description_tells_partial_indexes_of_different_conditions_apart(
    engine, new_database
):
    """The schema-match test compares describe_schema of the migrated and the declared
    databases: a migration whose partial index holds the wrong rows (the delivered reports
    instead of the undelivered) must not describe as the model's index does."""
    described = []
    for label, where in (("undelivered", "IS NULL"), ("delivered", "IS NOT NULL")):
        database = open_database(new_database(label))
        try:
            migration = migrations.Migration(database)
            migration.execute('CREATE TABLE "report" ("due_at" TIMESTAMP, "reported_at" TIMESTAMP)')
            migration.replace_index("report", "report_due_at", "due_at", f'"reported_at" {where}')
            described.append(migrations.describe_schema(database)["report"]["indexes"])
        finally:
            close_database(database)
    assert described[0] != described[1]
