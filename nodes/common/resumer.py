"""Fair resumption of flows left midway: a backoff per flow and per peer, bounded work.

Every node that holds a step of a flow drives it to an end (docs/RELIABILITY.md). A resumer
round takes the flows whose next attempt is due, oldest due first, and drives them
concurrently, at most ``concurrency`` at a time:
- a flow that fails is scheduled again after its own exponential backoff, so it goes to the
  back of the queue instead of blocking the ones behind it;
- a peer that fails is left alone for its own backoff; flows waiting for it are postponed
  until then without an attempt, so one dead peer never delays flows that do not need it.

Several processes may run the same resumer over one database (replicas of a role). Each
claims a flow before driving it (``claim_row``): it moves the flow's due time a lease ahead,
on condition that the due time is still the one it read. Only one process wins that update,
and the others skip the flow; a process that dies mid-drive leaves the flow to the others
once the lease has passed. On SQLite (one process) the claim always succeeds.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nodes.common import failpoints, logs, metrics
from nodes.common.errors import DomainError, ErrorKind

log = logging.getLogger(__name__)

# Errors that mean "not now" rather than "no": the flow stays resumable.
TRANSIENT_KINDS = (ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED, ErrorKind.ABORTED)
# The first retry of a flow or a peer waits this long, doubling per failure up to the cap.
BASE_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
# How long a claimed flow is left to the process that claimed it: well beyond one drive,
# whose calls each end within the call timeout and bounded retries.
LEASE_S = 60.0


def is_transient(error: DomainError) -> bool:
    return error.kind in TRANSIENT_KINDS


def backoff_s(
    failures: int, *, base_s: float = BASE_BACKOFF_S, cap_s: float = MAX_BACKOFF_S
) -> float:
    """Exponential backoff with full jitter in its upper half (failures counts from 1)."""
    ceiling = min(cap_s, base_s * 2 ** max(0, min(failures, 30) - 1))
    return ceiling / 2 + random.random() * ceiling / 2


def retry_at(failures: int, now: datetime.datetime) -> datetime.datetime:
    """When a flow that has failed ``failures`` times in a row is tried again."""
    return now + datetime.timedelta(seconds=backoff_s(failures))


def claim_row(
    model: Any,
    key_field: Any,
    key: str,
    due_field: Any,
    seen_due: datetime.datetime | None,
    now: datetime.datetime,
    lease_s: float = LEASE_S,
) -> bool:
    """Claims one stored flow for this process (see the module docstring): True if this
    process moved its due time from ``seen_due`` to a lease ahead, False if another process
    changed it since it was read (it claimed, finished or postponed the flow)."""
    if seen_due is None:
        return True
    query = model.update({due_field: now + datetime.timedelta(seconds=lease_s)}).where(
        (key_field == key) & (due_field == seen_due)
    )
    return int(query.execute()) == 1


def postpone(
    row: Any, attempts_field: str, due_field: str, wait_s: float | None, now: datetime.datetime
) -> None:
    """Schedules a stored flow's next attempt (the ``postpone`` of a Resumer): ``wait_s``
    None counts a failed attempt and backs off; a number waits that long without counting
    one (its peer is backing off). Saves the row."""
    if wait_s is None:
        attempts = getattr(row, attempts_field) + 1
        setattr(row, attempts_field, attempts)
        setattr(row, due_field, retry_at(attempts, now))
    else:
        setattr(row, due_field, now + datetime.timedelta(seconds=wait_s))
    row.save()


class PeerBackoff:
    """Which peers failed lately, and until when they are left alone (in memory, bounded)."""

    MAX_PEERS = 4096

    def __init__(self) -> None:
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}

    def ready(self, peer: str) -> bool:
        return self._until.get(peer, 0.0) <= time.monotonic()

    def seconds_left(self, peer: str) -> float:
        return max(0.0, self._until.get(peer, 0.0) - time.monotonic())

    def failed(self, peer: str) -> None:
        if len(self._failures) >= self.MAX_PEERS and peer not in self._failures:
            self._failures.clear()
            self._until.clear()
        failures = self._failures.get(peer, 0) + 1
        self._failures[peer] = failures
        self._until[peer] = time.monotonic() + backoff_s(failures)

    def succeeded(self, peer: str) -> None:
        self._failures.pop(peer, None)
        self._until.pop(peer, None)


@dataclass(frozen=True)
class DueFlow:
    """One flow a resumer round may drive: its key, the peer it waits for, and its trace."""

    key: str
    peer: str
    trace_id: str = ""
    # When the flow began (naive UTC), for the backlog's oldest-age gauge; None if unknown.
    since: datetime.datetime | None = None
    # The due time read with it: claiming the flow moves it on only if it is still this.
    due_at: datetime.datetime | None = None


class Resumer:
    """Drives due flows fairly; see the module docstring.

    ``due(limit)`` lists flows whose next attempt is due, oldest due first. ``drive(flow)``
    runs one flow as far as it goes. ``postpone(flow, wait_s)`` records durably when the
    flow is next due: ``wait_s`` None counts a failed attempt (the flow's own backoff), a
    number waits that long without counting one (its peer is backing off). ``claim(flow)``,
    when given, takes the flow for this process before it is driven (``claim_row``); a
    flow another process claimed first is skipped.
    """

    def __init__(
        self,
        name: str,
        *,
        due: Callable[[int], Awaitable[Sequence[DueFlow]]],
        drive: Callable[[DueFlow], Awaitable[None]],
        postpone: Callable[[DueFlow, float | None], Awaitable[None]],
        claim: Callable[[DueFlow], Awaitable[bool]] | None = None,
        batch: int = 64,
        concurrency: int = 8,
    ) -> None:
        self.name = name
        self._due = due
        self._drive = drive
        self._postpone = postpone
        self._claim = claim
        self._batch = batch
        # Flows another process had claimed when this one came to them (replicas).
        self.skipped = 0
        self._concurrency = concurrency
        self.peers = PeerBackoff()
        self.backlog = 0
        self._gauges = metrics.register_backlog(name.replace(" ", "_"))

    async def run_round(self) -> int:
        """One round; returns how many flows it drove without a transient failure."""
        flows = await self._due(self._batch)
        self.backlog = len(flows)
        ages = [age for flow in flows if (age := metrics.age_s(flow.since)) is not None]
        self._gauges.set(items=len(flows), oldest_age_s=max(ages, default=None))
        gate = asyncio.Semaphore(self._concurrency)
        outcomes = await asyncio.gather(*(self._one(flow, gate) for flow in flows))
        return sum(outcomes)

    async def _one(self, flow: DueFlow, gate: asyncio.Semaphore) -> bool:
        async with gate:
            # Checked once the flow's turn comes: a peer that failed meanwhile is skipped.
            if flow.peer and not self.peers.ready(flow.peer):
                # Not an attempt: the flow waits for its peer without counting a failure.
                await self._postpone(flow, self.peers.seconds_left(flow.peer))
                return False
            if self._claim is not None and not await self._claim(flow):
                self.skipped += 1
                return False
            logs.trace_id_var.set(flow.trace_id or logs.new_trace_id())
            failpoints.begin(f"resume:{self.name}")
            try:
                await self._drive(flow)
            except DomainError as error:
                if is_transient(error) and flow.peer and error.reason != "DATABASE_UNAVAILABLE":
                    self.peers.failed(flow.peer)
                await self._postpone(flow, None)
                logs.event(
                    log,
                    f"{self.name} postponed",
                    logging.WARNING,
                    key=flow.key,
                    peer=flow.peer,
                    reason=error.reason,
                )
                return False
            except Exception:
                log.exception("%s: driving %s failed", self.name, flow.key)
                await self._postpone(flow, None)
                return False
            if flow.peer:
                self.peers.succeeded(flow.peer)
            return True

    async def run(self, interval_s: float) -> None:
        """Rounds forever: at once at start, then every ``interval_s``."""
        while True:
            try:
                await self.run_round()
            except DomainError as error:
                logs.event(log, f"{self.name} round skipped", logging.WARNING, reason=error.reason)
            except Exception:
                log.exception("%s round failed", self.name)
            await asyncio.sleep(interval_s)
