"""Versioned schema migrations: one Python file per step and role, applied when a node starts.

A role's steps live in ``storage/<role>/migrations/vNNNN_<what>.py`` (``v0001_initial.py``
is the first released schema). Each file defines::

    def apply(migration: Migration) -> None: ...

and uses ``migration.create_tables``, ``migration.run(migration.migrator.add_column(...))``
(peewee's ``playhouse.migrate``) or ``migration.execute``. A step declares any table it
creates as it is at that version, inside the step's own file, and never imports the role's
current models, which move on; ``python -m storage.common.migrations freeze ROLE TABLE``
prints such a declaration from today's model. docs/DEPLOYMENT.md walks through adding one.

``migrate`` applies every step not yet applied, in order, in one transaction, and records
each in ``schema_migration``. PostgreSQL holds an advisory lock meanwhile, so replicas
starting together apply each step once. A database whose schema is newer than the code
raises SchemaTooNewError: an older release must never write to a schema it does not know.
A database made before migrations existed (tables, no ``schema_migration``) is taken to be
at version 1 when every table of version 1 is there.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import peewee
from playhouse import migrate as playhouse_migrate

from storage.common.database import bind
from storage.common.models import (
    InformationAnnouncement,
    NodeEnrollment,
    StoreHeartbeat,
    utc_now,
)

SCHEMA_TABLE = "schema_migration"
# Tables of every node whatever its role: the store's health probe, the node's enrollment
# and its information announcements (nodes/common/node.py).
NODE_MODELS: tuple[type[peewee.Model], ...] = (
    StoreHeartbeat,
    NodeEnrollment,
    InformationAnnouncement,
)
STEP_FILE = re.compile(r"^v(\d{4})_([a-z0-9_]+)$")
# Any constant both engines agree on; it names the lock every migrating process waits for.
ADVISORY_LOCK_KEY = 0x5E7E_0001


class MigrationError(RuntimeError):
    """The migration files or the database's record of them are inconsistent."""


class SchemaTooNewError(MigrationError):
    """The database was migrated by a newer release than this code."""


class SchemaMigrationRow(peewee.Model):
    """One applied migration step."""

    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField(max_length=200)
    applied_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        table_name = SCHEMA_TABLE


@dataclass(frozen=True)
class Step:
    """One migration file of a role."""

    version: int
    name: str
    apply: Callable[[Migration], None]
    # Version 1 lists its tables, so that a database made before migrations is adopted.
    tables: tuple[type[peewee.Model], ...] = ()


class Migration:
    """What a step gets: the database and peewee's schema migrator for its engine."""

    def __init__(self, database: peewee.Database) -> None:
        self.database = database
        self.migrator = playhouse_migrate.SchemaMigrator.from_database(database)

    def create_tables(self, models: Iterable[type[peewee.Model]]) -> None:
        """Creates these (frozen) tables and their indexes; fails if one exists already."""
        self.database.create_tables([bind(self.database, model) for model in models], safe=False)

    def run(self, *operations: Any) -> None:
        """Runs ``playhouse.migrate`` operations, e.g. ``self.migrator.add_column(...)``."""
        playhouse_migrate.migrate(*operations)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Runs SQL as it is; for data moves that the migrator has no operation for."""
        self.database.execute_sql(sql, params)

    def replace_index(self, table: str, name: str, column: str, where: str) -> None:
        """Makes index ``name`` again, on ``column`` of ``table`` and only for the rows where
        the SQL condition ``where`` holds (a partial index; both engines know the form).

        Every other plain index on that column alone goes too, whatever its name: a
        database adopted from before migrations has peewee's names of the live models then
        (``settlementorderrow_...``), not those of the frozen version 1."""
        self.execute(f'DROP INDEX IF EXISTS "{name}"')
        for index in self.database.get_indexes(table):
            if list(index.columns) == [column] and not index.unique:
                self.execute(f'DROP INDEX "{index.name}"')
        self.execute(f'CREATE INDEX "{name}" ON "{table}" ("{column}") WHERE {where}')

    @property
    def is_postgresql(self) -> bool:
        return isinstance(self.database, peewee.PostgresqlDatabase)


def steps_of(role: str) -> list[Step]:
    """The role's steps in version order; versions must run 1, 2, 3... without a gap."""
    package = importlib.import_module(f"storage.{role}.migrations")
    steps = []
    for info in pkgutil.iter_modules(package.__path__):
        match = STEP_FILE.match(info.name)
        if match is None:
            raise MigrationError(f"storage/{role}/migrations/{info.name}.py: name it vNNNN_what")
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        steps.append(
            Step(
                int(match.group(1)),
                match.group(2),
                module.apply,
                tuple(getattr(module, "TABLES", ())),
            )
        )
    steps.sort(key=lambda step: step.version)
    versions = [step.version for step in steps]
    if versions != list(range(1, len(steps) + 1)):
        raise MigrationError(f"storage/{role}/migrations: versions {versions} must be 1..N")
    return steps


def latest_version(role: str) -> int:
    return len(steps_of(role))


def applied_versions(database: peewee.Database) -> dict[int, str]:
    """Version -> name of every step recorded in the database (empty if none)."""
    if not database.table_exists(SCHEMA_TABLE):
        return {}
    table = bind(database, SchemaMigrationRow)
    return {row.version: row.name for row in table.select()}


def current_version(database: peewee.Database) -> int:
    return max(applied_versions(database), default=0)


def migrate(database: peewee.Database, role: str, *, target: int | None = None) -> list[Step]:
    """Brings the database to ``target`` (default: the latest step); returns the steps run.

    Runs in one transaction (nested in the caller's, if any): a failing step leaves the
    schema as it was. Raises SchemaTooNewError if the database is past this code's steps.
    """
    steps = steps_of(role)
    latest = len(steps)
    goal = latest if target is None else target
    if not 0 <= goal <= latest:
        raise MigrationError(f"{role}: no schema version {goal} (latest is {latest})")
    with database.atomic(**_write_lock(database)):
        _lock(database)
        table = bind(database, SchemaMigrationRow)
        database.create_tables([table])
        applied = applied_versions(database)
        newest = max(applied, default=0)
        if newest > latest:
            raise SchemaTooNewError(
                f"{role}: the database's schema is at version {newest} ({applied[newest]}), "
                f"newer than this release's {latest}; run a release that knows it"
            )
        if not applied and steps and _adopt(database, steps[0]):
            table.create(version=1, name=f"{steps[0].name} (adopted)")
            applied = {1: steps[0].name}
        done = []
        for step in steps:
            if step.version in applied or step.version > goal:
                continue
            with database.atomic():
                step.apply(Migration(database))
                table.create(version=step.version, name=step.name)
            done.append(step)
        return done


def _write_lock(database: peewee.Database) -> dict[str, str]:
    """SQLite: take the write lock at BEGIN, so a second migrating process waits instead of
    failing on a stale snapshot (ignored when nested in the caller's transaction)."""
    return {"lock_type": "IMMEDIATE"} if isinstance(database, peewee.SqliteDatabase) else {}


def _lock(database: peewee.Database) -> None:
    """Serialises migrating processes on one database until the transaction ends."""
    if isinstance(database, peewee.PostgresqlDatabase):
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))


def _adopt(database: peewee.Database, first: Step) -> bool:
    """True for a database made by create_tables before migrations: version 1 is there."""
    names = [model._meta.table_name for model in first.tables]
    present = [name for name in names if database.table_exists(name)]
    if not present:
        return False
    if len(present) != len(names):
        missing = sorted(set(names) - set(present))
        raise MigrationError(f"a partial schema without {SCHEMA_TABLE}: missing {missing}")
    return True


def describe_schema(database: peewee.Database) -> dict[str, Any]:
    """Every table's columns and indexes, engine-neutral enough to compare two databases."""
    schema: dict[str, Any] = {}
    for table in sorted(database.get_tables()):
        if table == SCHEMA_TABLE:
            continue
        columns = {
            column.name: (column.data_type.lower(), column.null, column.primary_key)
            for column in database.get_columns(table)
        }
        # (columns, unique, condition): a partial index (CREATE INDEX ... WHERE) holds only
        # the rows its condition selects; "" for a whole-table index.
        indexes = sorted(
            (tuple(index.columns), index.unique, _index_condition(index.sql or ""))
            for index in database.get_indexes(table)
            if not index.name.endswith("_pkey") and not index.name.startswith("sqlite_autoindex")
        )
        schema[table] = {"columns": columns, "indexes": indexes}
    return schema


def _index_condition(sql: str) -> str:
    """A partial index's condition as both engines can be compared by: SQLite keeps the
    text it was given (``"reported_at" IS NULL``), PostgreSQL its own form
    (``(reported_at IS NULL)``); lowercased, without quotes or parentheses, both read
    ``reported_at is null``."""
    _, found, condition = sql.upper().partition(" WHERE ")
    if not found:
        return ""
    return " ".join(condition.lower().replace('"', " ").replace("(", " ").replace(")", " ").split())


def freeze(model: type[peewee.Model], class_name: str | None = None) -> str:
    """Python source declaring ``model``'s table as it is now, for a migration file."""
    lines = [f"class {class_name or model.__name__}(peewee.Model):"]
    meta = model._meta
    for field in meta.sorted_fields:
        # A project field (SealedCharField) stores as the peewee field it extends.
        kind = next(base for base in type(field).__mro__ if base.__module__ == "peewee")
        if kind.__module__ != "peewee":
            raise MigrationError(f"{meta.table_name}.{field.name}: freeze knows peewee fields")
        arguments = []
        if isinstance(field, peewee.CharField):
            arguments.append(f"max_length={field.max_length}")
        if field.primary_key and not isinstance(field, peewee.AutoField | peewee.CompositeKey):
            arguments.append("primary_key=True")
        if field.null:
            arguments.append("null=True")
        if field.unique:
            arguments.append("unique=True")
        elif field.index:
            arguments.append("index=True")
        if field.column_name != field.name:
            arguments.append(f"column_name={field.column_name!r}")
        lines.append(f"    {field.name} = peewee.{kind.__name__}({', '.join(arguments)})")
    lines += ["", "    class Meta:", f"        table_name = {meta.table_name!r}"]
    if isinstance(meta.primary_key, peewee.CompositeKey):
        names = ", ".join(repr(name) for name in meta.primary_key.field_names)
        lines.append(f"        primary_key = peewee.CompositeKey({names})")
    if meta.indexes:
        lines.append(f"        indexes = {tuple(meta.indexes)!r}")
    return "\n".join(lines)


def role_models(role: str) -> tuple[type[peewee.Model], ...]:
    """The role's current models: its repository's tables, then those every node has."""
    module = importlib.import_module(f"storage.{role}.repository")
    repository_class = next(
        value
        for name, value in vars(module).items()
        if name.endswith("Repository") and isinstance(value, type)
    )
    tables: tuple[type[peewee.Model], ...] = repository_class(
        peewee.SqliteDatabase(":memory:")
    ).tables
    names = {model._meta.table_name for model in tables}
    return tables + tuple(model for model in NODE_MODELS if model._meta.table_name not in names)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m storage.common.migrations",
        description="Print a table's declaration as it is now, for a new migration file.",
    )
    parser.add_argument("command", choices=["freeze"])
    parser.add_argument("role", help="approval, verification, settlement, retail, marketplace")
    parser.add_argument("tables", nargs="*", help="table names (default: every table)")
    args = parser.parse_args(argv)
    for model in role_models(args.role):
        if not args.tables or model._meta.table_name in args.tables:
            print(freeze(model) + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
