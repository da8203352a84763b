"""`suretynet faults`: crash points and seeded fault runs against a real local network.

Two modes, both ending every run with the network-wide reconciliation
(nodes/operator/reconcile.py) once the flows have settled:

- **Crash points.** A first pass records every failpoint (nodes/common/failpoints.py) that
  each node passes while a purchase, a cancellation and a mediation run once. Then, for
  each recorded point, the node holding it is armed, the same kind of flow runs again with
  a client that retries as documented, the node exits at the point (status 86), the
  harness restarts it, the flow finishes, and the reconciliation must find nothing.
- **Seeded runs.** Each run draws from its seed: a fault (kill -9 and restart, a SIGSTOP
  pause, a burst of short pauses that acts as added latency) on a node, at a moment during
  a few purchases, cancellations and mediations; every mutating call is also sent 2-5 times
  at once and once more later, and each copy must get the identical answer. A failing run
  prints its seed; ``--seed S --runs 1`` replays it exactly.

Every node runs as its own process with mutual TLS and its own SQLite file; the harness is
the network's members, its shops' and marketplaces' operators, and its failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from suretynet.marketplace.v1 import marketplace_pb2 as market_pb
from suretynet.marketplace.v1 import marketplace_pb2_grpc
from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common import failpoints, tls
from nodes.common.status import RemoteError, decode_rpc_error
from nodes.network.local import (
    DEFAULT_TOPOLOGY,
    MARKET_ONE_SEED,
    MARKET_TWO_SEED,
    LocalNetwork,
    NodeSpec,
    relaunch,
    start_network,
    wait_ready,
)
from nodes.operator import network as network_file
from nodes.operator.reconcile import Report, reconcile

# A small network that still has every role and every step: one agency, a directory shop
# (NOTIFIED cancellations) and a push shop (VERIFIED), and two marketplaces.
FAST = {"purchase_resume_interval_s": 1, "order_lifetime_s": 120}
TOPOLOGY: tuple[NodeSpec, ...] = (
    NodeSpec("approval", "institution", "Credit Guarantee Institution"),
    NodeSpec("verification", "verification", "Transaction Verification Server"),
    NodeSpec(
        "settlement",
        "agency-1",
        "First Settlement Agency",
        {"routing_prefix": "4111", "resume_interval_s": 1},
        True,
    ),
    NodeSpec(
        "retail",
        "shop-1",
        "Shop One",
        {"discovery": "directory", "cancel_procedure": "notified", **FAST},
        True,
    ),
    NodeSpec(
        "retail",
        "shop-2",
        "Shop Two",
        {"discovery": "push", "cancel_procedure": "verified", **FAST},
        True,
    ),
    NodeSpec(
        "marketplace", "market-1", "Market One", {**MARKET_ONE_SEED, "resume_interval_s": 0.5}, True
    ),
    NodeSpec(
        "marketplace", "market-2", "Market Two", {**MARKET_TWO_SEED, "resume_interval_s": 0.5}, True
    ),
)
assert {spec.role for spec in TOPOLOGY} == {spec.role for spec in DEFAULT_TOPOLOGY}

AGENCY = "agency-1"
SHOPS = ("shop-1", "shop-2")
REQUESTER, SUPPLIER = "market-1", "market-2"
# Bought at the supplier only, so every purchase of it is a mediation.
MEDIATED_COMMODITY = "fault-chair"
MEMBER_PASSWORD = "fault-member-password"
BUYERS = 4
FLOWS = ("purchase", "cancellation", "mediation")
# Codes a client retries with the same request_id (the documented "pending" answers).
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
}
CALL_TIMEOUT_S = 8.0
CLIENT_ATTEMPTS = 80
SETTLE_TIMEOUT_S = 45.0
CI_RUNS = 200
RECORDING_SEED = 0
# The admin RPCs the reconciliation reads with (never a step of a flow).
CHECK_RPCS = (
    "ApprovalAdminService/ExportFlowRecords",
    "VerificationAdminService/ExportFlowRecords",
    "SettlementAdminService/ExportFlowRecords",
    "RetailAdminService/ExportFlowRecords",
    "MarketplaceAdminService/ExportFlowRecords",
    "MarketplaceAdminService/Reconcile",
)
LONG_RUNS = 2_000
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class GaveUpError(Exception):
    """A call kept failing with retryable codes for longer than any client would wait."""


@dataclasses.dataclass
class Violation:
    """One broken promise: where it was found, and how to replay it."""

    mode: str
    what: str
    detail: str
    seed: int | None = None
    point: str = ""


@dataclasses.dataclass
class Summary:
    """What a harness invocation did and found; ``--json`` prints it."""

    runs: int = 0
    crash_points: int = 0
    crash_points_reached: int = 0
    # Armed but not reached when their flow ran again (the flow took another path).
    unreached_points: list[str] = dataclasses.field(default_factory=list)
    crashes: int = 0
    restarts: int = 0
    purchases: int = 0
    cancellations: int = 0
    mediations: int = 0
    duplicates_sent: int = 0
    duplicate_answers_differing: int = 0
    orders_checked: int = 0
    violations: list[Violation] = dataclasses.field(default_factory=list)
    failing_seeds: list[int] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    # Of which: waiting for flows to settle and reconciling them.
    settle_seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["violations"] = [dataclasses.asdict(v) for v in self.violations]
        return data


class Harness:
    """The network under test, its clients, and the faults done to it."""

    def __init__(self, network: LocalNetwork, control_dir: Path, summary: Summary) -> None:
        self.network = network
        self.control_dir = control_dir
        self.summary = summary
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._stopped: set[str] = set()
        self._sessions: dict[str, list[tuple[str, str]]] = {}
        self.manifest = network_file.load(network.data_dir / "network.json")

    # -- channels -------------------------------------------------------------------------

    def _channel(self, address: str, *, admin: bool) -> grpc.aio.Channel:
        key = f"{'admin' if admin else 'member'}:{address}"
        if key not in self._channels:
            ca = self.network.ca.read_bytes()
            if admin:
                # Each node accepts only its own organization's operator.
                cert, private_key = self.network.operator_credentials(address)
                credentials = tls.client_credentials(
                    ca, cert.read_bytes(), private_key.read_bytes()
                )
            else:
                credentials = tls.client_credentials(ca)
            self._channels[key] = grpc.aio.secure_channel(address, credentials, CHANNEL_OPTIONS)
        return self._channels[key]

    def member_channel(self, entity_id: str) -> grpc.aio.Channel:
        return self._channel(self.network.node(entity_id).member_address, admin=False)

    def admin_channel(self, entity_id: str) -> grpc.aio.Channel:
        return self._channel(self.network.node(entity_id).address, admin=True)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)

    # -- calls as a client makes them ----------------------------------------------------

    async def call(
        self,
        method: Callable[..., Awaitable[Any]],
        request: Message,
        *,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> Any:
        """The answer, or the final refusal (a RemoteError); retries the pending ones."""
        for attempt in range(CLIENT_ATTEMPTS):
            try:
                return await method(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as error:
                remote = decode_rpc_error(error)
                if remote.code not in RETRYABLE:
                    return remote
            await asyncio.sleep(min(1.0, 0.05 * 2 ** min(attempt, 5)))
        raise GaveUpError(f"{type(request).__name__} never got a final answer")

    # -- faults ---------------------------------------------------------------------------

    def watch_restarts(self) -> None:
        """Restarts any node that exits (as ``up`` does), counting crashes at failpoints."""
        for node in self.network.nodes:
            self._watchers.append(asyncio.create_task(self._watch(node.spec.entity_id)))

    async def _watch(self, entity_id: str) -> None:
        node = self.network.node(entity_id)
        while True:
            await asyncio.sleep(0.05)
            code = node.process.poll()
            if code is None or entity_id in self._stopped:
                continue
            if code == failpoints.CRASH_EXIT_STATUS:
                self.summary.crashes += 1
            relaunch(self.network, node)
            await wait_ready(self.network, node)
            self.summary.restarts += 1

    async def stop_watching(self) -> None:
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def kill(self, entity_id: str) -> None:
        os.kill(self.network.node(entity_id).process.pid, signal.SIGKILL)

    @contextlib.contextmanager
    def paused(self, entity_id: str) -> Iterator[None]:
        pid = self.network.node(entity_id).process.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def arm(self, entity_id: str, point: str) -> None:
        failpoints.write_control(self.control_dir / entity_id, point)

    def disarm_all(self) -> None:
        for node in self.network.nodes:
            failpoints.write_control(self.control_dir / node.spec.entity_id, "")

    # -- setting the stage ----------------------------------------------------------------

    async def prepare(self) -> None:
        """Members with room for every run, and a commodity only the supplier stocks."""
        admin = settlement_pb2_grpc.SettlementAdminServiceStub(self.admin_channel(AGENCY))
        for number in range(BUYERS):
            answer = await self.call(
                admin.EnrollMember,
                settlement_pb2.EnrollMemberRequest(
                    request_id=f"fault-enrol-{number}",
                    member_id=f"fault-buyer-{number}",
                    display_name=f"Fault Buyer {number}",
                    password=MEMBER_PASSWORD,
                    credit_limit=types_pb2.Money(amount_minor=10**12, currency_code="USD"),
                ),
            )
            _expect_ok(answer, "EnrollMember")
        supplier = marketplace_pb2_grpc.MarketplaceAdminServiceStub(self.admin_channel(SUPPLIER))
        _expect_ok(
            await self.call(
                supplier.UpsertCommodity,
                market_pb.UpsertCommodityRequest(
                    request_id="fault-commodity",
                    commodity=market_pb.Commodity(
                        commodity_id=MEDIATED_COMMODITY,
                        display_name="Chair",
                        unit_price=types_pb2.Money(amount_minor=900, currency_code="JPY"),
                        stock_quantity=10**9,
                        delivery_days=1,
                    ),
                ),
            ),
            "UpsertCommodity",
        )
        requester = marketplace_pb2_grpc.MarketplaceAdminServiceStub(self.admin_channel(REQUESTER))
        for number in range(BUYERS):
            _expect_ok(
                await self.call(
                    requester.EnrollContractMember,
                    market_pb.EnrollContractMemberRequest(
                        request_id=f"fault-purchaser-{number}",
                        member=market_pb.ContractMember(
                            member_id=f"fault-purchaser-{number}",
                            kind=market_pb.CONTRACT_MEMBER_KIND_INDIVIDUAL,
                            display_name=f"Fault Purchaser {number}",
                            contact_email=f"purchaser{number}@example.org",
                            postal_address="1-2-3 Example",
                        ),
                        password=MEMBER_PASSWORD,
                    ),
                ),
                "EnrollContractMember",
            )

    # -- the flows --------------------------------------------------------------------------

    async def purchase(self, rng: random.Random, *, copies: int = 1) -> tuple[str, str, str]:
        """A member buys at a shop; returns (shop, order number, anonymous ID)."""
        shop = rng.choice(SHOPS)
        member = f"fault-buyer-{rng.randrange(BUYERS)}"
        agency = settlement_pb2_grpc.MemberServiceStub(self.member_channel(AGENCY))
        bearer = await self.session(
            AGENCY,
            lambda: self.call(
                agency.Login,
                settlement_pb2.LoginRequest(member_id=member, password=MEMBER_PASSWORD),
            ),
            member,
        )
        issue_request = settlement_pb2.IssueAnonymousUserIdRequest(
            request_id=_rid("anon"), retail_entity_id=shop
        )
        issued = await self.replayed(
            rng,
            copies,
            lambda: self.call(agency.IssueAnonymousUserId, issue_request, metadata=bearer),
            what="IssueAnonymousUserId",
        )
        _expect_ok(issued, "IssueAnonymousUserId")
        value = issued.anonymous_user_id.value
        store = retail_pb2_grpc.ShopServiceStub(self.member_channel(shop))
        order_request = retail_pb2.PlaceOrderRequest(
            request_id=_rid("order"),
            anonymous_user_id=value,
            items=[retail_pb2.OrderItem(catalog_item_id=rng.choice(("tea", "mug")), quantity=1)],
            payment_method=types_pb2.PAYMENT_METHOD_SINGLE_PAYMENT,
        )
        placed = await self.replayed(
            rng, copies, lambda: self.call(store.PlaceOrder, order_request), what="PlaceOrder"
        )
        self.summary.purchases += 1
        if isinstance(placed, RemoteError):
            return shop, placed.metadata.get("order_number", ""), value
        return shop, placed.order.order_number, value

    async def cancellation(
        self, rng: random.Random, order: tuple[str, str, str], *, copies: int = 1
    ) -> None:
        shop, order_number, value = order
        if not order_number:
            return
        store = retail_pb2_grpc.ShopServiceStub(self.member_channel(shop))
        request = retail_pb2.RequestCancellationRequest(
            request_id=_rid("cancel"),
            order_number=order_number,
            anonymous_user_id=value,
            reason="changed my mind",
        )
        await self.replayed(
            rng,
            copies,
            lambda: self.call(store.RequestCancellation, request),
            what="RequestCancellation",
        )
        self.summary.cancellations += 1

    async def mediation(self, rng: random.Random, *, copies: int = 1) -> None:
        """A purchaser of market-1 buys what only market-2 has; accepted, shipped, settled."""
        member = f"fault-purchaser-{rng.randrange(BUYERS)}"
        purchaser = marketplace_pb2_grpc.PurchaserServiceStub(self.member_channel(REQUESTER))
        bearer = await self.session(
            REQUESTER,
            lambda: self.call(
                purchaser.Login,
                market_pb.LoginRequest(member_id=member, password=MEMBER_PASSWORD),
            ),
            member,
        )
        request = market_pb.RequestPurchaseRequest(
            request_id=_rid("med"), commodity_id=MEDIATED_COMMODITY, quantity=1
        )
        asked = await self.replayed(
            rng,
            copies,
            lambda: self.call(purchaser.RequestPurchase, request, metadata=bearer),
            what="RequestPurchase",
        )
        self.summary.mediations += 1
        if isinstance(asked, RemoteError):
            return
        transaction = asked.transaction
        reply = market_pb.ReplyToEstimateRequest(
            request_id=_rid("reply"),
            transaction_id=transaction.transaction_id,
            estimate_id=transaction.estimate.estimate_id,
            decision=market_pb.ESTIMATE_DECISION_ACCEPT,
        )
        accepted = await self.replayed(
            rng,
            copies,
            lambda: self.call(purchaser.ReplyToEstimate, reply, metadata=bearer),
            what="ReplyToEstimate",
        )
        if isinstance(accepted, RemoteError):
            return
        operator = marketplace_pb2_grpc.MarketplaceAdminServiceStub(self.admin_channel(REQUESTER))
        detail = await self.call(
            operator.GetTransactionDetail,
            market_pb.GetTransactionDetailRequest(transaction_id=transaction.transaction_id),
        )
        _expect_ok(detail, "GetTransactionDetail")
        shipper = marketplace_pb2_grpc.MarketplaceAdminServiceStub(self.admin_channel(SUPPLIER))
        ship = market_pb.ShipOrderRequest(
            request_id=_rid("ship"),
            transaction_id=detail.transaction.mediated_transaction_id,
            status=market_pb.SHIPMENT_STATUS_DELIVERED,
            carrier="Harness Freight",
            tracking_number="HF-1",
        )
        await self.replayed(
            rng, copies, lambda: self.call(shipper.ShipOrder, ship), what="ShipOrder"
        )

    async def session(
        self, entity_id: str, login: Callable[[], Awaitable[Any]], member: str
    ) -> list[tuple[str, str]]:
        """The member's bearer metadata; a client logs in once and keeps its session (a
        restarted node keeps its sessions too: they are in its database)."""
        key = f"{entity_id}/{member}"
        if key not in self._sessions:
            answer = await login()
            _expect_ok(answer, f"Login at {entity_id}")
            self._sessions[key] = [("authorization", f"Bearer {answer.session_token}")]
        return self._sessions[key]

    async def replayed(
        self, rng: random.Random, copies: int, send: Callable[[], Awaitable[Any]], *, what: str
    ) -> Any:
        """Sends one request ``copies`` times at once and once more after; every copy must
        get the identical final answer (the first answer stands)."""
        answers = list(await asyncio.gather(*(send() for _ in range(copies))))
        if copies > 1:
            await asyncio.sleep(rng.uniform(0.0, 0.2))
            answers.append(await send())
            self.summary.duplicates_sent += len(answers) - 1
        forms = {_answer_form(answer) for answer in answers}
        if len(forms) > 1:
            self.summary.duplicate_answers_differing += 1
            self.summary.violations.append(
                Violation("duplicates", f"{what}: copies got different answers", repr(forms))
            )
        return answers[0]

    async def run_flow(self, flow: str, rng: random.Random, *, copies: int = 1) -> None:
        if flow == "purchase":
            await self.purchase(rng, copies=copies)
        elif flow == "cancellation":
            order = await self.purchase(rng, copies=copies)
            await self.cancellation(rng, order, copies=copies)
        else:
            await self.mediation(rng, copies=copies)

    # -- checking ---------------------------------------------------------------------------

    async def settled(self) -> Report:
        """The reconciliation once the flows have ended (bounded: a violation otherwise)."""
        began = time.monotonic()
        deadline = began + SETTLE_TIMEOUT_S
        while True:
            report = await reconcile(self.manifest)
            if not report.mismatches or time.monotonic() > deadline:
                self.summary.orders_checked = report.orders_checked
                self.summary.settle_seconds += time.monotonic() - began
                return report
            await asyncio.sleep(0.3)


def _rid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def _expect_ok(answer: Any, what: str) -> None:
    if isinstance(answer, RemoteError):
        raise RuntimeError(f"{what} refused: {answer.code.name} {answer.reason} {answer.message}")


def _answer_form(answer: Any) -> str:
    if isinstance(answer, RemoteError):
        return f"{answer.code.name}/{answer.reason}"
    return answer.SerializeToString(deterministic=True).hex()


def _findings(report: Report) -> str:
    return "; ".join(
        f"{m.invariant} at {m.node} {m.order or m.member}: {m.detail}" for m in report.mismatches
    )


# -- the two modes -------------------------------------------------------------------------


async def record_points(harness: Harness) -> dict[str, list[tuple[str, str]]]:
    """Every (node, failpoint) each flow passes, in the order first passed."""
    points: dict[str, list[tuple[str, str]]] = {}
    for flow in FLOWS:
        # Once unrecorded first: caches warm, so the recording is the flow's steady path.
        await harness.run_flow(flow, random.Random(RECORDING_SEED))
        for node in harness.network.nodes:
            Path(f"{harness.control_dir / node.spec.entity_id}.points").unlink(missing_ok=True)
            harness.arm(node.spec.entity_id, failpoints.RECORD)
        await harness.run_flow(flow, random.Random(RECORDING_SEED))
        # Settled while still recording: the flow's last after_answer points pass once its
        # answers are sent, which the reconciliation's own round trips wait out. Its reads
        # are recorded too, and left out below.
        await harness.settled()
        harness.disarm_all()
        seen: list[tuple[str, str]] = []
        for node in harness.network.nodes:
            path = Path(f"{harness.control_dir / node.spec.entity_id}.points")
            names = path.read_text().splitlines() if path.exists() else []
            for name in dict.fromkeys(names):
                # Resumer rounds run on their own clock (seeded kills cover them); the
                # reconciliation's reads are the harness's, not the flow's.
                if not name.startswith("resume:") and not name.startswith(CHECK_RPCS):
                    seen.append((node.spec.entity_id, name))
        points[flow] = seen
    return points


async def crash_points(harness: Harness, sample: int | None, seed: int) -> None:
    """Crashes each recorded point once (or a seeded sample of them) and reconciles."""
    recorded = await record_points(harness)
    plan = [(flow, node, point) for flow, found in recorded.items() for node, point in found]
    if sample is not None and sample < len(plan):
        plan = random.Random(seed).sample(plan, sample)
    for flow, entity_id, point in plan:
        harness.summary.crash_points += 1
        crashes_before = harness.summary.crashes
        harness.arm(entity_id, point)
        try:
            # The recording's own draws: the same shop and member, so the same steps.
            await harness.run_flow(flow, random.Random(RECORDING_SEED))
        except (GaveUpError, RuntimeError) as error:
            harness.summary.violations.append(
                Violation("crash-point", "flow did not finish", str(error), point=point)
            )
        report = await harness.settled()
        # A point the flow did not pass stays armed until here; the node disarms itself
        # when it crashes.
        harness.disarm_all()
        if harness.summary.crashes > crashes_before:
            harness.summary.crash_points_reached += 1
        else:
            harness.summary.unreached_points.append(f"{entity_id} {point}")
        if report.mismatches:
            harness.summary.violations.append(
                Violation("crash-point", f"{entity_id} {point}", _findings(report), point=point)
            )


async def seeded_runs(harness: Harness, runs: int, seed: int) -> None:
    """``runs`` runs, run i drawn from ``seed + i``; each ends with the reconciliation."""
    names = [node.spec.entity_id for node in harness.network.nodes]
    for run in range(runs):
        run_seed = seed + run
        rng = random.Random(run_seed)
        harness.summary.runs += 1
        violations_before = len(harness.summary.violations)
        target, fault = (
            rng.choice(names),
            rng.choices(("kill", "pause", "latency", "none"), weights=(2, 3, 3, 1))[0],
        )
        flows = [rng.choices(FLOWS, weights=(6, 2, 1))[0]]
        copies = rng.randint(2, 5)

        async def traffic(
            flows: list[str] = flows, rng: random.Random = rng, copies: int = copies
        ) -> None:
            for flow in flows:
                await harness.run_flow(flow, rng, copies=copies)

        async def fault_at(
            delay_s: float, target: str = target, fault: str = fault, rng: random.Random = rng
        ) -> None:
            await asyncio.sleep(delay_s)
            if fault == "kill":
                harness.kill(target)
            elif fault == "pause":
                with harness.paused(target):
                    await asyncio.sleep(rng.uniform(0.1, 0.6))
            elif fault == "latency":
                for _ in range(rng.randint(2, 6)):
                    with harness.paused(target):
                        await asyncio.sleep(rng.uniform(0.02, 0.15))
                    await asyncio.sleep(rng.uniform(0.0, 0.1))

        try:
            await asyncio.gather(traffic(), fault_at(rng.uniform(0.0, 0.4)))
        except (GaveUpError, RuntimeError) as error:
            harness.summary.violations.append(
                Violation("seeded", "flow did not finish", str(error), seed=run_seed)
            )
        report = await harness.settled()
        if report.mismatches:
            harness.summary.violations.append(
                Violation("seeded", f"{fault} {target}", _findings(report), seed=run_seed)
            )
        if len(harness.summary.violations) > violations_before:
            harness.summary.failing_seeds.append(run_seed)
            print(f"run {run} FAILED: replay with --seed {run_seed} --runs 1", flush=True)


@contextlib.asynccontextmanager
async def fault_network(data_dir: Path) -> AsyncIterator[Harness]:
    """The fault topology, started with failpoints enabled, and its harness."""
    control_dir = data_dir / "failpoints"
    control_dir.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get(failpoints.CONTROL_DIR_ENV)
    os.environ[failpoints.CONTROL_DIR_ENV] = str(control_dir)
    summary = Summary()
    network = await start_network(data_dir / "network", TOPOLOGY)
    harness = Harness(network, control_dir, summary)
    try:
        harness.disarm_all()
        harness.watch_restarts()
        await harness.prepare()
        yield harness
    finally:
        await harness.stop_watching()
        await harness.close()
        network.stop()
        if previous is None:
            os.environ.pop(failpoints.CONTROL_DIR_ENV, None)
        else:
            os.environ[failpoints.CONTROL_DIR_ENV] = previous


async def run_faults(
    *,
    runs: int,
    seed: int,
    crash_sample: int | None,
    crash: bool = True,
    data_dir: Path | None = None,
) -> Summary:
    """Crash points (all, or a seeded sample), then ``runs`` seeded runs."""
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        directory = data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        async with fault_network(directory) as harness:
            if crash:
                await crash_points(harness, crash_sample, seed)
            await seeded_runs(harness, runs, seed)
            harness.summary.seconds = round(time.monotonic() - began, 1)
            return harness.summary


def render(summary: Summary) -> str:
    lines = [
        f"crash points: {summary.crash_points} armed, {summary.crash_points_reached} reached "
        f"({summary.crashes} crashes, {summary.restarts} restarts)",
        f"seeded runs: {summary.runs}; flows: {summary.purchases} purchases, "
        f"{summary.cancellations} cancellations, {summary.mediations} mediations",
        f"duplicates delivered: {summary.duplicates_sent}, answers differing: "
        f"{summary.duplicate_answers_differing}",
        f"reconciliation: {summary.orders_checked} orders checked; "
        f"{len(summary.violations)} violations in {summary.seconds} s",
    ]
    lines += [
        f"  VIOLATION [{v.mode}] {v.what}: {v.detail}"
        + (f" (replay: --seed {v.seed} --runs 1 --no-crash-points)" if v.seed is not None else "")
        + (f" (point {v.point})" if v.point else "")
        for v in summary.violations
    ]
    return "\n".join(lines)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "faults",
        help="crash points and seeded fault runs against a local network, then reconcile",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--runs", type=int, help=f"seeded runs (default {CI_RUNS}; --long {LONG_RUNS})"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the first run (default 1)")
    parser.add_argument(
        "--crash-sample",
        type=int,
        help="arm only this many recorded crash points, drawn from the seed (default: all)",
    )
    parser.add_argument(
        "--no-crash-points", action="store_true", help="seeded runs only (to replay a seed)"
    )
    parser.add_argument("--long", action="store_true", help=f"{LONG_RUNS} seeded runs")
    parser.add_argument("--data-dir", type=Path, help="keep the network here (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    runs = args.runs if args.runs is not None else (LONG_RUNS if args.long else CI_RUNS)
    if runs < 0 or (args.crash_sample is not None and args.crash_sample < 0):
        print("suretynet faults: --runs and --crash-sample must not be negative", file=sys.stderr)
        return 2
    summary = asyncio.run(
        run_faults(
            runs=runs,
            seed=args.seed,
            crash_sample=args.crash_sample,
            crash=not args.no_crash_points,
            data_dir=args.data_dir,
        )
    )
    print(json.dumps(summary.as_json(), indent=2) if args.json else render(summary))
    return 1 if summary.violations else 0
