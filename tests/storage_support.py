"""Rows for storage tests: a value at the edge of every column type, reading rows back, and
the work a query does."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import peewee

from storage.common.database import Store


def sample_value(field: peewee.Field, seed: int) -> Any:
    """A value at the edge of what the column must hold (length, range, bytes, time)."""
    if isinstance(field, peewee.CharField):
        return (f"ü{seed}-" + "x" * field.max_length)[: field.max_length]
    if isinstance(field, peewee.TextField):
        return "long text ü\n" * 1_000
    if isinstance(field, peewee.BigIntegerField):
        return 2**62 + seed
    if isinstance(field, peewee.BooleanField):
        return True
    if isinstance(field, peewee.IntegerField):
        return 2**31 - 1 - seed
    if isinstance(field, peewee.DateTimeField):
        return datetime.datetime(2026, 11, 28, 23, 59, 58, 123_456 + seed)
    if isinstance(field, peewee.BlobField):
        return bytes(range(256)) + bytes([seed % 256])
    raise AssertionError(f"no sample for {type(field).__name__}; add one")


def sample_row(model: type[peewee.Model], seed: int = 0) -> dict[str, Any]:
    return {
        field.name: sample_value(field, seed)
        for field in model._meta.sorted_fields
        if not isinstance(field, peewee.AutoField)
    }


def insert(model: type[peewee.Model], values: dict[str, Any]) -> None:
    model.insert(**values).execute()


def read_back(model: type[peewee.Model], values: dict[str, Any]) -> dict[str, Any]:
    key = next(iter(values))
    row: dict[str, Any] = model.select().where(getattr(model, key) == values[key]).dicts().get()  # type: ignore[assignment]
    return {
        name: bytes(value) if isinstance(value, memoryview) else value
        for name, value in row.items()
        if name in values
    }


def sqlite_steps(store: Store, work: Callable[[], Any]) -> int:
    """SQLite's virtual machine steps while ``work`` runs in one transaction: the work its
    queries do, independent of the machine's speed (a scan grows with the table, an index
    lookup does not)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    connection = store.database.connection()
    connection.set_progress_handler(count, 1)
    try:
        store.transaction(work)
    finally:
        connection.set_progress_handler(None, 1)
    return steps


def sqlite_statements(store: Store, work: Callable[[], Any]) -> list[str]:
    """The SQL statements ``work`` runs in one transaction (its BEGIN and COMMIT left out)."""
    statements: list[str] = []
    connection = store.database.connection()
    connection.set_trace_callback(statements.append)
    try:
        store.transaction(work)
    finally:
        connection.set_trace_callback(None)
    return [sql for sql in statements if sql.split()[0].upper() not in ("BEGIN", "COMMIT")]


def registry_entry(entity_id: str, role: str, serial: int, **values: Any) -> dict[str, Any]:
    """A row of approval's registry (``entity``), as ``insert``/``insert_many`` take it."""
    return {
        "entity_id": entity_id,
        "role": role,
        "display_name": entity_id,
        "address": "127.0.0.1:7000",
        "program_serial": f"serial-{entity_id}",
        "registry_serial": serial,
        **values,
    }
