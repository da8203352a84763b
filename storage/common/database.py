"""One database per node, reached by URL, with blocking work kept off the event loop.

``sqlite:///path/node.db`` (the default; WAL and synchronous=FULL so a commit survives a
power cut), ``sqlite:///:memory:`` for unit tests, and ``postgresql://user:pass@host/db``
for production, through a bounded pool of connections (one per database worker). Peewee is
synchronous, so every database call of a running node goes through ``Store.run``, which
executes it on the store's database threads (``DatabaseWorkers``) inside one transaction,
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
import contextlib
import contextvars
import functools
import logging
import queue
import re
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

import peewee
from prometheus_client import Counter, Histogram

from nodes.common import failpoints
from nodes.common.errors import DomainError, ErrorKind
from storage.common import statements
from storage.common.models import StoreHeartbeat, utc_now

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=type[peewee.Model])

BUSY_TIMEOUT_MS = 10_000
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    # FULL syncs the WAL on every commit: a committed payment survives a power cut.
    "synchronous": "full",
    "foreign_keys": 1,
    "busy_timeout": BUSY_TIMEOUT_MS,
}
# How long a new SQLite connection waits for another's write transaction to end before it
# can switch a fresh database file to WAL (``_SqliteDatabase``): the busy timeout.
PRAGMA_WAIT_S = BUSY_TIMEOUT_MS / 1000
PRAGMA_RETRY_S = 0.01
# While the database cannot be written, a probe write is tried this often.
HEALTH_PROBE_INTERVAL_S = 0.5


CONNECT_TIMEOUT_S = 10
HOST_PORT = re.compile(
    r"^(?:\[(?P<ipv6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]]*))(?::(?P<port>\d{1,5}))?$"
)
POOL_STALE_TIMEOUT_S = 300
POOL_WAIT_TIMEOUT_S = 30
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


def open_database(url: str, *, max_connections: int = 4) -> peewee.Database:
    """Opens (lazily) the database a URL names; raises DatabaseUrlError for anything else.

    A PostgreSQL database is a pool of at most ``max_connections`` connections; query
    parameters of the URL (``sslmode``, ``connect_timeout``, ``application_name``,
    ``target_session_attrs``...) go to libpq as they are. Several hosts,
    ``postgresql://u:p@primary:5432,standby:5432/db?target_session_attrs=read-write``,
    are tried in order (libpq's multi-host connection strings).
    """
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
        return _SqliteDatabase(path, pragmas=SQLITE_PRAGMAS)
    if parsed.scheme in ("postgres", "postgresql"):
        return _open_postgresql(url, parsed, max_connections)
    raise DatabaseUrlError(f"{url!r}: the scheme must be sqlite or postgresql")


class _SqliteDatabase(peewee.SqliteDatabase):
    """A SQLite file whose new connections wait to switch it to WAL.

    Switching a fresh file from its rollback journal to WAL needs the file to itself: while
    another connection is in a write transaction (a second process migrating the same new
    database), SQLite refuses at once with "database is locked", without its busy handler.
    The pragmas are tried again until the other transaction ends, for at most the busy
    timeout; a file already in WAL never waits here.
    """

    def _set_pragmas(self, conn: sqlite3.Connection) -> None:
        deadline = time.monotonic() + PRAGMA_WAIT_S
        while True:
            try:
                super()._set_pragmas(conn)  # type: ignore[misc]
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
            time.sleep(PRAGMA_RETRY_S)


def _open_postgresql(
    url: str, parsed: urllib.parse.SplitResult, max_connections: int
) -> peewee.Database:
    from playhouse.pool import PooledPostgresqlDatabase

    if not parsed.path.strip("/"):
        raise DatabaseUrlError(f"{url!r}: the database name is missing")
    if max_connections < 1:
        raise DatabaseUrlError(f"{url!r}: the pool needs at least one connection")
    options = dict(urllib.parse.parse_qsl(parsed.query))
    options.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
    userinfo, _, hostlist = parsed.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    hosts, ports = [], []
    for entry in hostlist.split(","):
        match = HOST_PORT.match(entry)
        if match is None:
            raise DatabaseUrlError(f"{url!r}: {entry!r} is not host[:port]")
        hosts.append(match.group("host") or match.group("ipv6") or "")
        ports.append(match.group("port") or "")
    if len(hosts) == 1:
        host: str | None = hosts[0] or None
        port: int | str | None = int(ports[0]) if ports[0] else None
    else:
        # libpq tries the hosts in order; with target_session_attrs=read-write it settles
        # on the one that accepts writes, which is how nodes follow a promoted standby.
        if not all(hosts):
            raise DatabaseUrlError(f"{url!r}: every host of a list needs a name")
        host, port = ",".join(hosts), ",".join(port or "5432" for port in ports)
    return PooledPostgresqlDatabase(
        urllib.parse.unquote(parsed.path.lstrip("/")),
        max_connections=max_connections,
        # A connection idle this long is closed rather than reused (server restarts, NAT).
        stale_timeout=POOL_STALE_TIMEOUT_S,
        # How long a caller outside the node's executor waits for a free connection.
        timeout=POOL_WAIT_TIMEOUT_S,
        user=urllib.parse.unquote(user) or None,
        password=urllib.parse.unquote(password) or None,
        host=host,
        port=port,
        **options,
    )


def is_pooled(database: peewee.Database) -> bool:
    """True for a PostgreSQL pool, whose connections go back to the pool after each use."""
    return not isinstance(database, peewee.SqliteDatabase)


def is_unavailable(error: BaseException) -> bool:
    """True when the database could not be reached or dropped the connection (a restart,
    a failover), a pool had no free connection in time, or another process holds a SQLite
    file locked: the same call may succeed when retried."""
    if isinstance(error, peewee.InterfaceError) or type(error).__name__ == "MaxConnectionsExceeded":
        return True
    if not isinstance(error, peewee.OperationalError):
        return False
    original = error.__context__
    if original is not None and type(original).__module__.startswith("psycopg2"):
        # No SQLSTATE: the client lost or never had the connection. 08: connection
        # exception; 57P: the server is shutting down, crashed or is still starting.
        code: str | None = getattr(original, "pgcode", None)
        return code is None or code.startswith(("08", "57P"))
    message = str(error).lower()
    return "locked" in message or "busy" in message


def close_database(database: peewee.Database) -> None:
    """Closes every connection of the database (all of a pool's, or the one of SQLite)."""
    if is_pooled(database):
        database.close_all()  # type: ignore[attr-defined]
    elif not database.is_closed():
        database.close()


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
    # CompiledWrites first: save() (and so create()) reuse their SQL (storage/common/statements.py).
    mixins = () if issubclass(model, statements.CompiledWrites) else (statements.CompiledWrites,)
    bound = type(
        model.__name__,
        (*mixins, model),
        {"Meta": meta, "__module__": model.__module__},
    )
    return bound  # type: ignore[return-value]


def locked(query: Any) -> Any:
    """``query`` with FOR UPDATE where the backend has it, so a read-check-write on money
    (a credit check, a billing decision) holds its rows until the transaction ends.

    SQLite has no FOR UPDATE and needs none: a node's writes run one at a time on its
    single writer thread (see Store). PostgreSQL runs several, so the row lock is what
    keeps two concurrent purchases from both fitting under one credit limit.
    """
    return query.for_update() if query.model._meta.database.for_update else query


# What a database thread is handed: the work, and where its outcome goes.
_Job = tuple[Callable[[], Any], Callable[[Any, BaseException | None], None]]


class DatabaseWorkers:
    """The threads that run a store's blocking work, in the order it was queued.

    A job is answered straight on the caller's event loop (``call_soon_threadsafe``), or
    on a ``concurrent.futures.Future`` for a caller outside one. This is the one handoff
    every database trip of a node pays, so it is kept to a queue put and a wake-up: a
    ``ThreadPoolExecutor`` behind ``run_in_executor`` chains two futures and takes a
    semaphore per job, about four times the CPU (docs/PERFORMANCE.md).

    A job that was queued runs even if its caller stops waiting (a cancelled RPC): it is
    one whole transaction either way, and a retry with the same request_id finds what it
    stored.
    """

    def __init__(self, count: int, name: str = "db") -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_{number}", daemon=True)
            for number in range(count)
        ]
        for thread in self._threads:
            thread.start()
        self._closed = False

    def _put(self, job: _Job) -> None:
        if self._closed:
            # As ThreadPoolExecutor: a job queued after shutdown would wait forever.
            raise RuntimeError("the store's database threads are shut down")
        self._jobs.put(job)

    async def run(self, work: Callable[[], T]) -> T:
        """Runs ``work`` on a database thread; returns or raises what it did."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            # RuntimeError: the loop closed while the job ran; nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, answer, result, error)

        self._put((work, settle))
        return await answer

    def submit(self, work: Callable[[], T]) -> Future[T]:
        """Queues ``work`` for a caller that is not on an event loop (start-up, close)."""
        answer: Future[T] = Future()

        def settle(result: Any, error: BaseException | None) -> None:
            if error is None:
                answer.set_result(result)
            else:
                answer.set_exception(error)

        self._put((work, settle))
        return answer

    def shutdown(self) -> None:
        """Lets the queued jobs finish, then stops the threads; later jobs are refused."""
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            _run_job(*job)
            # Not held while the thread waits for the next job.
            del job


def _run_job(work: Callable[[], Any], settle: Callable[[Any, BaseException | None], None]) -> None:
    try:
        result = work()
    except BaseException as error:  # Handed to the caller as it is.
        settle(None, error)
    else:
        settle(result, None)


def _settle(answer: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if answer.cancelled():
        return
    if error is None:
        answer.set_result(result)
    else:
        answer.set_exception(error)


class Store:
    """A node's database plus the threads that run its blocking work.

    SQLite allows one writer at a time, so a SQLite store uses one worker: writes queue in
    order instead of failing with "database is locked". PostgreSQL gets ``workers`` threads.
    """

    def __init__(self, database: peewee.Database, *, workers: int = 4) -> None:
        self.database = database
        is_sqlite = isinstance(database, peewee.SqliteDatabase)
        self._workers = DatabaseWorkers(1 if is_sqlite else workers)
        self._heartbeat = bind(database, StoreHeartbeat)
        self.healthy = True
        # Called with the new health whenever it changes (the node's health service).
        self.health_listeners: list[Callable[[bool], Awaitable[None]]] = []
        self._probe: asyncio.Task[None] | None = None

    def create_tables(self, models: Iterable[type[peewee.Model]]) -> None:
        """Creates missing tables and indexes; safe to call on every start."""
        tables: list[type[peewee.Model]] = [*models, self._heartbeat]
        self._workers.submit(
            functools.partial(self._in_transaction, lambda: self.database.create_tables(tables))
        ).result()

    def transaction(self, work: Callable[[], T]) -> T:
        """Runs ``work`` in one transaction on the calling thread (for unit tests and CLIs)."""
        if not is_pooled(self.database):
            with self.database.atomic():
                return work()
        return self._in_transaction(work)

    async def run(self, work: Callable[[], T]) -> T:
        """Runs ``work`` in one transaction on a database thread.

        The caller's context (trace ID) travels with it, so log lines from the worker
        thread carry the flow's trace ID too. Raises DomainError for the failures a caller
        can act on (see the module docstring); the transaction is rolled back first.
        """
        context = contextvars.copy_context()
        call = functools.partial(context.run, self._timed, work, time.perf_counter())
        try:
            return await self._workers.run(call)
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
        heartbeat = self._heartbeat

        def beat() -> None:
            now = utc_now()
            # An upsert both engines have (PostgreSQL has no INSERT OR REPLACE).
            heartbeat.insert(name="store", beat_at=now).on_conflict(
                conflict_target=[heartbeat.name], update={heartbeat.beat_at: now}
            ).execute()

        while not self.healthy:
            await asyncio.sleep(HEALTH_PROBE_INTERVAL_S)
            try:
                await self._workers.run(functools.partial(self._in_transaction, beat))
            except (peewee.OperationalError, peewee.InterfaceError):
                continue
            await self._set_health(True)

    async def migrate(self, role: str) -> list[Any]:
        """Applies the role's pending schema migrations (storage/common/migrations.py).

        Runs on a database thread outside ``run``'s transaction: the migration opens its own,
        with the write lock taken up front, so concurrent starts wait for each other.
        """
        from storage.common import migrations

        call = functools.partial(self._on_connection, migrations.migrate, self.database, role)
        applied: list[Any] = await self._workers.run(call)
        return applied

    def _on_connection(self, work: Callable[..., T], *args: Any) -> T:
        self.database.connect(reuse_if_open=True)
        try:
            return work(*args)
        finally:
            if is_pooled(self.database):
                self.database.close()

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
        try:
            with self.database.atomic():
                result = work()
                if points is not None:
                    failpoints.reach(points[0])
        finally:
            if is_pooled(self.database):
                # Back to the pool: a connection the server dropped (a restart, a
                # failover) is discarded there instead of failing this thread forever.
                self.database.close()
        if points is not None:
            failpoints.reach(points[1])
        return result

    def close(self) -> None:
        """Waits for queued work, then closes the executor's connections."""
        if self._probe is not None:
            self._probe.cancel()
        self._workers.submit(self._close_connection).result()
        self._workers.shutdown()
        if is_pooled(self.database):
            close_database(self.database)

    def _close_connection(self) -> None:
        if not self.database.is_closed():
            self.database.close()


def is_unique_violation(error: peewee.IntegrityError) -> bool:
    """True for a duplicate key (SQLite "UNIQUE constraint failed", PostgreSQL 23505)."""
    cause = error.__cause__ or (error.args[0] if error.args else None)
    if getattr(cause, "pgcode", None) == "23505":
        return True
    return "UNIQUE constraint failed" in str(error) or "duplicate key" in str(error)
