"""The store's database threads: order, errors, cancelled callers, shutdown, trace context."""

from __future__ import annotations

import asyncio
import functools
import threading

import peewee
import pytest

from nodes.common import logs
from storage.common.database import DatabaseWorkers, Store


def test_jobs_run_in_the_order_they_were_queued_on_one_thread() -> None:
    asyncio.run(_jobs_run_in_the_order_they_were_queued_on_one_thread())


async def _jobs_run_in_the_order_they_were_queued_on_one_thread() -> None:
    workers = DatabaseWorkers(1)
    seen: list[int] = []
    threads: set[str] = set()

    def job(number: int) -> int:
        seen.append(number)
        threads.add(threading.current_thread().name)
        return number * 10

    try:
        answers = await asyncio.gather(*(workers.run(functools.partial(job, n)) for n in range(50)))
    finally:
        workers.shutdown()
    assert answers == [n * 10 for n in range(50)]
    assert seen == list(range(50))
    assert threads == {"db_0"}


def test_a_job_that_raises_raises_in_its_caller_and_the_thread_goes_on() -> None:
    asyncio.run(_a_job_that_raises_raises_in_its_caller_and_the_thread_goes_on())


async def _a_job_that_raises_raises_in_its_caller_and_the_thread_goes_on() -> None:
    workers = DatabaseWorkers(1)

    def fail() -> None:
        raise ValueError("no such row")

    try:
        with pytest.raises(ValueError, match="no such row"):
            await workers.run(fail)
        assert await workers.run(lambda: "still serving") == "still serving"
    finally:
        workers.shutdown()


def test_a_queued_job_runs_even_when_its_caller_stops_waiting() -> None:
    asyncio.run(_a_queued_job_runs_even_when_its_caller_stops_waiting())


async def _a_queued_job_runs_even_when_its_caller_stops_waiting() -> None:
    workers = DatabaseWorkers(1)
    gate = threading.Event()
    ran = threading.Event()
    try:
        blocker = asyncio.ensure_future(workers.run(gate.wait))
        waiting = asyncio.ensure_future(workers.run(ran.set))
        await asyncio.sleep(0)
        waiting.cancel()
        gate.set()
        await blocker
        # The next job runs after the cancelled one: by then it has run.
        await workers.run(lambda: None)
        assert ran.is_set()
        assert waiting.cancelled()
    finally:
        workers.shutdown()


def test_submit_answers_a_caller_outside_any_event_loop_and_shutdown_drains() -> None:
    workers = DatabaseWorkers(2)
    done: list[int] = []

    def job(number: int) -> int:
        done.append(number)
        return number

    futures = [workers.submit(functools.partial(job, n)) for n in range(20)]
    workers.shutdown()
    assert sorted(done) == list(range(20))
    assert [future.result(timeout=0) for future in futures] == list(range(20))
    failing = DatabaseWorkers(1)
    try:
        with pytest.raises(ZeroDivisionError):
            failing.submit(lambda: 1 / 0).result(timeout=10)
    finally:
        failing.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        failing.submit(lambda: None)
    with pytest.raises(RuntimeError, match="shut down"):
        asyncio.run(failing.run(lambda: None))


def test_store_run_carries_the_callers_trace_id_to_the_database_thread() -> None:
    asyncio.run(_store_run_carries_the_callers_trace_id_to_the_database_thread())


async def _store_run_carries_the_callers_trace_id_to_the_database_thread() -> None:
    store = Store(peewee.SqliteDatabase(":memory:"))
    token = logs.trace_id_var.set("trace-of-the-caller")
    try:
        seen = await store.run(lambda: (logs.trace_id_var.get(), threading.current_thread().name))
    finally:
        logs.trace_id_var.reset(token)
        store.close()
    assert seen == ("trace-of-the-caller", "db_0")
