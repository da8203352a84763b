"""One database per node, reached by URL, with blocking work kept off the event loop.

``sqlite:///path/node.db`` (the default; WAL and synchronous=FULL so a commit survives a
power cut), ``sqlite:///:memory:`` for unit tests, and ``postgresql://user:pass@host/db``
for production. Peewee is synchronous, so every database call of a running node goes
through ``Store.run``, which executes it on a bounded thread pool inside one transaction,
and times it (Prometheus: ``suretynet_db_*``, see docs/OPERATIONS.md).

``Store.run`` is also where database failures become answers a caller can act on, once for
every use case:
- a unique-constraint race between two concurrent duplicates of one request is ABORTED /
  REQUEST_IN_PROGRESS (the retry finds the winner's record and gets its answer);
- a database that cannot be written (disk full, read-only, server gone) is UNAVAILABLE /
  DATABASE_UNAVAILABLE: the transaction rolled back, so nothing is half-written, and the
  store reports itself unhealthy until a probe write succeeds again.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import peewee
from prometheus_client import Counter, Histogram

from nodes.common import failpoints
from nodes.common.errors import DomainError, ErrorKind
from storage.common.models import StoreHeartbeat, utc_now

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=type[peewee.Model])

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    # FULL syncs the WAL on every commit: a committed payment survives a power cut.
    "synchronous": "full",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
}
# While the database cannot be written, a probe write is tried this often.
HEALTH_PROBE_INTERVAL_S = 0.5


# From 1 ms to 10 s, as the RPC histograms (nodes/common/metrics.py).
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TRANSACTION_SECONDS = Histogram(
    "suretynet_db_transaction_seconds",
    "Database transactions (Store.run): time in the transaction, commit included.",
    buckets=LATENCY_BUCKETS_S,
)
QUEUE_WAIT_SECONDS = Histogram(
    "suretynet_db_queue_wait_seconds",
    "Time a database transaction waited for a database worker before it began.",
    buckets=LATENCY_BUCKETS_S,
)
TRANSACTION_FAILURES = Counter(
    "suretynet_db_transaction_failures",
    "Database transactions that raised and were rolled back, by exception class.",
    ["error"],
)


class DatabaseUrlError(ValueError):
    """The database URL names no supported backend or is malformed."""


def open_database(url: str) -> peewee.Database:
    """Opens (lazily) the database a URL names; raises DatabaseUrlError for anything else."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise DatabaseUrlError(f"{url!r}: use sqlite:///relative/path, sqlite:////abs/path")
        if path == ":memory:":
            # One shared connection, so the executor thread and the test see the same data.
            return peewee.SqliteDatabase(
                path, pragmas=SQLITE_PRAGMAS, thread_safe=False, check_same_thread=False
            )
        return peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS)
    if parsed.scheme in ("postgres", "postgresql"):
        if not parsed.path.strip("/"):
            raise DatabaseUrlError(f"{url!r}: the database name is missing")
        return peewee.PostgresqlDatabase(
            parsed.path.lstrip("/"),
            user=urllib.parse.unquote(parsed.username or "") or None,
            password=urllib.parse.unquote(parsed.password or "") or None,
            host=parsed.hostname or None,
            port=parsed.port or None,
        )
    raise DatabaseUrlError(f"{url!r}: the scheme must be sqlite or postgresql")


def bind(database: peewee.Database, model: M) -> M:
    """Returns a subclass of ``model`` bound to ``database``.

    Models are declared once per role without a database; each node binds its own copies,
    so that several nodes of one role (two shops in one test process) never share tables.
    Models therefore refer to each other by plain ID columns, not ForeignKeyField.
    """
    meta = type(
        "Meta",
        (),
        {
            "database": database,
            "table_name": model._meta.table_name,
            # save() writes only the columns that changed: smaller UPDATEs, less SQL to build.
            "only_save_dirty": True,
        },
    )
    bound = type(model.__name__, (model,), {"Meta": meta, "__module__": model.__module__})
    return bound  # type: ignore[return-value]


def locked(query: Any) -> Any:
    """``query`` with FOR UPDATE where the backend has it, so a read-check-write on money
    (a credit check, a billing decision) holds its rows until the transaction ends.

    SQLite has no FOR UPDATE and needs none: a node's writes run one at a time on its
    single writer thread (see Store). PostgreSQL runs several, so the row lock is what
    keeps two concurrent purchases from both fitting under one credit limit.
    """
    return query.for_update() if query.model._meta.database.for_update else query


class Store:
    """A node's database plus the executor that runs its blocking work.

    SQLite allows one writer at a time, so a SQLite store uses one worker: writes queue in
    order instead of failing with "database is locked". PostgreSQL gets ``workers`` threads.
    """

    def __init__(self, database: peewee.Database, *, workers: int = 4) -> None:
        self.database = database
        is_sqlite = isinstance(database, peewee.SqliteDatabase)
        self._executor = ThreadPoolExecutor(
            max_workers=1 if is_sqlite else workers, thread_name_prefix="db"
        )
        self._heartbeat = bind(database, StoreHeartbeat)
        self.healthy = True
        # Called with the new health whenever it changes (the node's health service).
        self.health_listeners: list[Callable[[bool], Awaitable[None]]] = []
        self._probe: asyncio.Task[None] | None = None

    def create_tables(self, models: Iterable[type[peewee.Model]]) -> None:
        """Creates missing tables and indexes; safe to call on every start."""
        tables: list[type[peewee.Model]] = [*models, self._heartbeat]
        self._executor.submit(
            self._in_transaction, lambda: self.database.create_tables(tables)
        ).result()

    def transaction(self, work: Callable[[], T]) -> T:
        """Runs ``work`` in one transaction on the calling thread (for unit tests and CLIs)."""
        with self.database.atomic():
            return work()

    async def run(self, work: Callable[[], T]) -> T:
        """Runs ``work`` in one transaction on the database executor.

        The caller's context (trace ID) travels with it, so log lines from the worker
        thread carry the flow's trace ID too. Raises DomainError for the failures a caller
        can act on (see the module docstring); the transaction is rolled back first.
        """
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        call = functools.partial(context.run, self._timed, work, time.perf_counter())
        try:
            return await loop.run_in_executor(self._executor, call)
        except peewee.IntegrityError as error:
            if not is_unique_violation(error):
                raise
            raise DomainError(
                ErrorKind.ABORTED,
                "REQUEST_IN_PROGRESS",
                "a concurrent request with the same key is being processed; retry with the "
                "same request_id",
            ) from error
        except (peewee.OperationalError, peewee.InterfaceError) as error:
            await self._set_health(False, error)
            raise DomainError(
                ErrorKind.UNAVAILABLE,
                "DATABASE_UNAVAILABLE",
                "the node cannot write to its database right now; nothing was changed; retry "
                "with the same request_id",
            ) from error

    async def _set_health(self, healthy: bool, error: BaseException | None = None) -> None:
        if healthy == self.healthy:
            return
        self.healthy = healthy
        if healthy:
            log.warning("database writable again; serving")
        else:
            log.error("database unavailable (%s); NOT_SERVING until a write succeeds", error)
            if self._probe is None or self._probe.done():
                self._probe = asyncio.create_task(self._probe_until_writable())
        for listener in self.health_listeners:
            await listener(healthy)

    async def _probe_until_writable(self) -> None:
        loop = asyncio.get_running_loop()
        heartbeat = self._heartbeat

        def beat() -> None:
            heartbeat.replace(name="store", beat_at=utc_now()).execute()

        while not self.healthy:
            await asyncio.sleep(HEALTH_PROBE_INTERVAL_S)
            try:
                await loop.run_in_executor(
                    self._executor, functools.partial(self._in_transaction, beat)
                )
            except (peewee.OperationalError, peewee.InterfaceError):
                continue
            await self._set_health(True)

    def _timed(self, work: Callable[[], T], queued: float) -> T:
        began = time.perf_counter()
        QUEUE_WAIT_SECONDS.observe(began - queued)
        try:
            return self._in_transaction(work)
        except Exception as error:
            # Refusals raised inside a transaction (a DomainError) count too: they roll back.
            TRANSACTION_FAILURES.labels(error=type(error).__name__).inc()
            raise
        finally:
            TRANSACTION_SECONDS.observe(time.perf_counter() - began)

    def _in_transaction(self, work: Callable[[], T]) -> T:
        self.database.connect(reuse_if_open=True)
        points = failpoints.transaction_points()
        with self.database.atomic():
            result = work()
            if points is not None:
                failpoints.reach(points[0])
        if points is not None:
            failpoints.reach(points[1])
        return result

    def close(self) -> None:
        """Waits for queued work, then closes the executor's connections."""
        if self._probe is not None:
            self._probe.cancel()
        self._executor.submit(self._close_connection).result()
        self._executor.shutdown(wait=True)

    def _close_connection(self) -> None:
        if not self.database.is_closed():
            self.database.close()


def is_unique_violation(error: peewee.IntegrityError) -> bool:
    """True for a duplicate key (SQLite "UNIQUE constraint failed", PostgreSQL 23505)."""
    cause = error.__cause__ or (error.args[0] if error.args else None)
    if getattr(cause, "pgcode", None) == "23505":
        return True
    return "UNIQUE constraint failed" in str(error) or "duplicate key" in str(error)
