"""Queries whose SQL is built once per table and reused: the hot path's prepared statements.

Peewee builds a query's SQL text from its expression tree on every execution, and on a
purchase's path that rebuilding was the largest single cost of every node (about a third of
its CPU, docs/PERFORMANCE.md). A ``Statement`` is declared once, as a function of the table
and of named parameters::

    OPEN = Statement(lambda t, p: t.select().where(t.member_id == p.member_id))
    rows = OPEN.rows(repo.orders, member_id="m-1")

The first use on a bound table (each node binds its own, see ``database.bind``) builds the
peewee query with placeholders and keeps its SQL and the order of its parameters; every
later use only converts the values (each column's ``db_value``) and executes. Rows come back
as the table's model instances, as peewee's own queries return them. The commonest query,
one row by equal columns, needs no declaration: ``find(table, column=value, ...)``;
``insert_or_ignore`` is the other shorthand.

``bind`` also gives every bound table a ``save`` (and so ``create``) that reuses the SQL of
its INSERT and UPDATE per set of columns, so the code's ordinary writes take the same path.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import peewee

M = TypeVar("M", bound=peewee.Model)
Converter = Callable[[Any], Any] | None


class _Slot(peewee.ColumnBase):
    """A named placeholder: compiles to the engine's parameter marker and records its name."""

    def __init__(self, name: str, converter: Converter = None) -> None:
        super().__init__()
        self.name = name
        self.to_db = converter

    def __sql__(self, ctx: peewee.Context) -> peewee.Context:
        # Compared with a column, the column's db_value applies (peewee sets the converter).
        converter = self.to_db or ctx.state.converter
        return ctx.value(_Parameter(self.name, converter), converter=False)


class _Parameter:
    """What a compiled statement records where a slot's value goes."""

    __slots__ = ("converter", "name")

    def __init__(self, name: str, converter: Converter) -> None:
        self.name = name
        self.converter = converter


class Params:
    """``p.name`` is the placeholder for the statement's parameter ``name``; compared with a
    column it takes the column's conversion. Where no column is beside it (an UPDATE's new
    value, an INSERT's), ``p.of(column)`` names the parameter after the column and
    converts as the column does."""

    def __getattr__(self, name: str) -> Any:
        return _Slot(name)

    def of(self, field: peewee.Field) -> Any:
        return _Slot(field.name, field.db_value)


PARAMS = Params()


class _Compiled:
    __slots__ = ("parameters", "sql", "whole_rows")

    def __init__(self, query: Any) -> None:
        self.sql, values = query.sql()
        self.parameters: list[_Parameter | Any] = list(values)
        # A plain ``table.select()``: its rows are whole rows of the table, made into model
        # instances directly (``_model_of``) instead of through peewee's cursor wrapper.
        self.whole_rows = isinstance(query, peewee.ModelSelect) and _whole_rows(query)

    def values(self, given: dict[str, Any]) -> list[Any]:
        values = []
        for parameter in self.parameters:
            if isinstance(parameter, _Parameter):
                value = given[parameter.name]
                values.append(parameter.converter(value) if parameter.converter else value)
            else:
                values.append(parameter)
        return values


def _whole_rows(query: Any) -> bool:
    """True when a select returns every column of one table, in declared order."""
    return (
        not query._joins
        and len(query._from_list) == 1
        and list(query._returning) == list(query.model._meta.sorted_fields)
    )


class Statement(Generic[M]):
    """A query built once per bound table from ``build(table, params)``; see the module doc."""

    def __init__(self, build: Callable[[type[M], Params], peewee.Query]) -> None:
        self._build = build
        self._compiled: dict[type[M], _Compiled] = {}

    def _for(self, table: type[M]) -> _Compiled:
        compiled = self._compiled.get(table)
        if compiled is None:
            compiled = self._compiled[table] = _Compiled(self._build(table, PARAMS))
        return compiled

    def execute(self, table: type[M], **values: Any) -> Any:
        """Runs the statement; returns the DB-API cursor."""
        compiled = self._for(table)
        return table._meta.database.execute_sql(compiled.sql, compiled.values(values))

    def rows(self, table: type[M], **values: Any) -> list[M]:
        """Every row the statement selects, as model instances."""
        compiled = self._for(table)
        if not compiled.whole_rows:
            return list(table.raw(compiled.sql, *compiled.values(values)))
        cursor = table._meta.database.execute_sql(compiled.sql, compiled.values(values))
        return [_model_of(table, row) for row in cursor.fetchall()]

    def first(self, table: type[M], **values: Any) -> M | None:
        """The first row the statement selects, as a model instance, or None."""
        compiled = self._for(table)
        if not compiled.whole_rows:
            return next(iter(table.raw(compiled.sql, *compiled.values(values))), None)
        return _first_model(table, compiled, values)

    def scalar(self, table: type[M], **values: Any) -> Any:
        """The first column of the first row, or None."""
        row = self.execute(table, **values).fetchone()
        return row[0] if row else None


class CompiledWrites:
    """Mixin for bound tables (before the model class): ``save`` reuses its INSERT and UPDATE
    SQL per set of columns.

    Behaves as peewee's ``Model.save`` for the tables here: only dirty columns are updated
    (``only_save_dirty``), an auto-incremented key is read back after an insert. Anything
    else (``only``, composite or no primary key) is left to peewee.
    """

    def save(self: Any, force_insert: bool = False, only: Iterable[Any] | None = None) -> Any:
        meta = self._meta
        if only is not None or meta.composite_key or meta.primary_key is False:
            return super().save(force_insert=force_insert, only=only)  # type: ignore[misc]
        pk_field = meta.primary_key
        pk_value = self._pk
        data = self.__data__
        if pk_value is not None and not force_insert:
            names = tuple(
                field.name
                for field in meta.sorted_fields
                if field.name in self._dirty and field is not pk_field
            )
            if not names:
                self._dirty.clear()
                return False
            compiled = self._compiled_write("update", names)
            assert compiled is not None, "an UPDATE is always compiled"
            values = {name: data[name] for name in names}
            values["__pk"] = pk_value
            cursor = meta.database.execute_sql(compiled.sql, compiled.values(values))
            self._dirty.difference_update(names)
            return meta.database.rows_affected(cursor)
        auto = meta.auto_increment and pk_value is None
        names = tuple(
            field.name
            for field in meta.sorted_fields
            if field.name in data and not (auto and field is pk_field)
        )
        compiled = self._compiled_write("insert", names)
        if compiled is None:
            return super().save(force_insert=force_insert)  # type: ignore[misc]
        cursor = meta.database.execute_sql(compiled.sql, compiled.values(data))
        if auto:
            database = meta.database
            self._pk = cursor.fetchone()[0] if database.returning_clause else cursor.lastrowid
        self._dirty.clear()
        return 1

    def _compiled_write(self: Any, kind: str, names: tuple[str, ...]) -> _Compiled | None:
        cls = type(self)
        cache = cls.__dict__.get("_compiled_writes")
        if cache is None:
            cache = {}
            cls._compiled_writes = cache
        if (kind, names) in cache:
            return cache[(kind, names)]
        compiled: _Compiled | None = None
        fields = cls._meta.fields
        # peewee fills a column left out of an INSERT with its default at build time: with a
        # callable default (a timestamp) such an INSERT cannot be reused; peewee builds it.
        if kind == "update" or not _callable_defaults(cls) - set(names):
            slots = {fields[name]: _Slot(name, fields[name].db_value) for name in names}
            pk_field = cls._meta.primary_key
            query: Any
            if kind == "update":
                query = cls.update(slots).where(pk_field == _Slot("__pk"))
            else:
                query = cls.insert(slots)
                if cls._meta.auto_increment and cls._meta.database.returning_clause:
                    query = query.returning(pk_field)
            compiled = _Compiled(query)
        cache[(kind, names)] = compiled
        return compiled


def _callable_defaults(table: type[peewee.Model]) -> set[str]:
    return {field.name for field, default in table._meta.defaults.items() if callable(default)}


_LOOKUPS: dict[tuple[type[peewee.Model], tuple[str, ...], bool], _Compiled] = {}


def find(table: type[M], *, lock: bool = False, **equal: Any) -> M | None:
    """The first row whose columns equal ``equal`` (peewee's ``get_or_none``), compiled once
    per table and set of columns. ``lock`` adds FOR UPDATE where the engine has it
    (see ``database.locked``)."""
    names = tuple(equal)
    key = (table, names, lock)
    compiled = _LOOKUPS.get(key)
    if compiled is None:
        condition = functools.reduce(
            operator.and_, (getattr(table, name) == _Slot(name) for name in names)
        )
        query = table.select().where(condition).limit(1)
        if lock and table._meta.database.for_update:
            query = query.for_update()
        compiled = _LOOKUPS[key] = _Compiled(query)
    return _first_model(table, compiled, equal)


def _first_model(table: type[M], compiled: _Compiled, values: dict[str, Any]) -> M | None:
    """The first row of a whole-row select, as a model instance, or None."""
    row = table._meta.database.execute_sql(compiled.sql, compiled.values(values)).fetchone()
    return None if row is None else _model_of(table, row)


def _model_of(table: type[M], row: Sequence[Any]) -> M:
    """The model instance of a row of ``table.select()`` (every column, in declared order),
    as peewee's cursor wrapper makes it, without its per-query set-up."""
    instance: Any = table.__new__(table)
    instance.__data__ = {
        field.name: field.python_value(value)
        for field, value in zip(table._meta.sorted_fields, row, strict=True)
    }
    instance._dirty = set()
    instance.__rel__ = {}
    return instance


_INSERTS: dict[tuple[type[peewee.Model], tuple[str, ...]], _Compiled] = {}


def insert_or_ignore(table: type[M], **values: Any) -> int:
    """Inserts one row unless its key exists (peewee's ``on_conflict_ignore``), compiled
    once per table and set of columns; returns the rows inserted (0 or 1). A column left
    out gets its default, which must be a constant: a callable one (a timestamp) would be
    frozen into the compiled SQL, so it is refused."""
    names = tuple(values)
    key = (table, names)
    compiled = _INSERTS.get(key)
    if compiled is None:
        fields = table._meta.fields
        missing = _callable_defaults(table) - set(names)
        if missing:
            raise ValueError(f"insert_or_ignore: give {sorted(missing)} explicitly")
        slots = {fields[name]: _Slot(name, fields[name].db_value) for name in names}
        compiled = _INSERTS[key] = _Compiled(table.insert(slots).on_conflict_ignore())
    cursor = table._meta.database.execute_sql(compiled.sql, compiled.values(values))
    return int(table._meta.database.rows_affected(cursor))
