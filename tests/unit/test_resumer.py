"""The resumer is fair: one dead peer never delays flows that do not need it (defect 3).

The flows here are plain records in memory and the "peers" are scripted outcomes, because
what is under test is the scheduling alone: which flows a round attempts, in what order,
and what it postpones. The shop's and the agency's resumers are this class.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field

from nodes.common import resumer
from nodes.common.errors import DomainError, ErrorKind


@dataclass
class Flows:
    """Open flows, each waiting for one peer, with their next-due times (like shop_order)."""

    peer_of: dict[str, str]
    dead_peers: set[str]
    now: datetime.datetime = datetime.datetime(2026, 1, 1)
    due_at: dict[str, datetime.datetime] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        count = len(self.peer_of)
        for position, key in enumerate(self.peer_of):
            # All due, oldest first: the dead peer's flows are the oldest of all.
            self.due_at[key] = self.now - datetime.timedelta(microseconds=count - position)

    async def due(self, limit: int) -> Sequence[resumer.DueFlow]:
        open_keys = [k for k in self.peer_of if k not in self.finished]
        ready = sorted((k for k in open_keys if self.due_at[k] <= self.now), key=self.due_at.get)
        return [resumer.DueFlow(key, self.peer_of[key]) for key in ready[:limit]]

    async def drive(self, flow: resumer.DueFlow) -> None:
        self.attempts[flow.key] = self.attempts.get(flow.key, 0) + 1
        if flow.peer in self.dead_peers:
            raise DomainError(ErrorKind.UNAVAILABLE, "PEER_UNAVAILABLE", f"{flow.peer} is down")
        self.finished.append(flow.key)

    async def postpone(self, flow: resumer.DueFlow, wait_s: float | None) -> None:
        seconds = resumer.backoff_s(self.attempts.get(flow.key, 1)) if wait_s is None else wait_s
        self.due_at[flow.key] = self.now + datetime.timedelta(seconds=max(seconds, 0.001))


def test_one_dead_peer_never_delays_a_flow_that_does_not_need_it():
    """Forty orders wait for a dead agency and are the oldest; one newer order waits for a
    live one. The first round finishes the live order, and the dead agency is tried only as
    often as the concurrency allows before its backoff holds the rest.

    The old shop resumer took its 20 oldest orders one by one each round, so the live order
    waited behind the dead agency's timeouts for ever."""
    peer_of = {f"dead-{n}": "agency-dead" for n in range(40)}
    peer_of["live"] = "agency-live"
    flows = Flows(peer_of, dead_peers={"agency-dead"})
    engine = resumer.Resumer(
        "test", due=flows.due, drive=flows.drive, postpone=flows.postpone, batch=64, concurrency=4
    )
    asyncio.run(engine.run_round())
    assert flows.finished == ["live"]
    tried = sum(flows.attempts.get(f"dead-{n}", 0) for n in range(40))
    assert tried <= 4, "after the first failures, the dead peer's flows only wait"
    assert not engine.peers.ready("agency-dead")


def test_a_batch_smaller_than_the_dead_backlog_still_reaches_the_live_flow():
    """With a batch of 8 and 40 older flows stuck, the dead flows move behind the live one
    (postponed to their peer's backoff), so a later round reaches it."""
    peer_of = {f"dead-{n}": "agency-dead" for n in range(40)}
    peer_of["live"] = "agency-live"
    flows = Flows(peer_of, dead_peers={"agency-dead"})
    engine = resumer.Resumer(
        "test", due=flows.due, drive=flows.drive, postpone=flows.postpone, batch=8, concurrency=2
    )
    rounds = 0
    while "live" not in flows.finished:
        rounds += 1
        assert rounds <= 6, "the live flow is reached within a few rounds"
        asyncio.run(engine.run_round())


def test_a_peer_that_recovers_is_tried_again_after_its_backoff():
    flows = Flows({"a": "agency-1", "b": "agency-1"}, dead_peers={"agency-1"})
    engine = resumer.Resumer(
        "test", due=flows.due, drive=flows.drive, postpone=flows.postpone, concurrency=1
    )
    asyncio.run(engine.run_round())
    assert flows.finished == []
    flows.dead_peers.clear()
    engine.peers.succeeded("agency-1")
    flows.now += datetime.timedelta(seconds=resumer.MAX_BACKOFF_S)
    asyncio.run(engine.run_round())
    assert sorted(flows.finished) == ["a", "b"]


def test_backoff_grows_and_is_capped():
    assert resumer.backoff_s(1) <= resumer.BASE_BACKOFF_S
    assert resumer.backoff_s(4) >= resumer.BASE_BACKOFF_S * 4
    assert resumer.backoff_s(60) <= resumer.MAX_BACKOFF_S
