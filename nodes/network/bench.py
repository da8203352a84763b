"""``suretynet bench``: SuretyNet's purchases against the bare gRPC echo, on one machine, in one run.

What it measures (docs/PERFORMANCE.md says how to read each figure):

1. **The limit.** A bare grpc.aio unary echo (nodes/network/bench_echo.py), server and client
   in two processes, over mutual TLS with certificates from the network's own CA, with the
   mean size of a purchase's inter-node requests, at the same concurrencies as the
   purchases (1 in flight, each variant's saturation), and at the rate of RPCs each
   variant's network carried at half load.
2. **SuretyNet.** Whole purchases through a local network started by ``up``'s machinery
   (nodes/network/local.py): approval, verification, one agency and one shop per discovery
   variant (directory, push, cache), each node its own process with its own database,
   durable commits and the identity checks on. The member's client runs in a process of its
   own (nodes/network/bench_load.py). For each variant: 1 in flight; concurrency doubled
   until purchases/s stops growing (the saturation); half of that rate, offered open-loop;
   then the same three for a member with a long history of past orders, written into the
   stopped nodes' databases through their own storage code (nodes/network/bench_history.py).

For every phase the nodes count themselves: each node's Prometheus metrics are scraped
before and after (``suretynet_rpc_served_seconds_count``: RPCs served, by method), and each
node's CPU time and peak RSS are read from ``/proc``. The member's PlaceOrder to the shop is
counted apart from the inter-node RPCs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from nodes.common import pki
from nodes.network.bench_driver import LOOPS
from nodes.network.bench_report import (
    FRESH,
    HISTORY,
    VARIANTS,
    EchoResults,
    Phase,
    build_report,
    render,
)
from nodes.network.local import (
    LocalNetwork,
    NodeSpec,
    NodeStartError,
    RunningNode,
    check_replicas,
    start_network,
)

AGENCY = "agency-1"
INSTITUTION = "institution"
VERIFICATION = "verification"
MEMBERS = {FRESH: "bench-fresh", HISTORY: "bench-history"}
MEMBER_PASSWORD = "bench-member-password"
ITEM = "tea"
CURRENCY = "USD"
# Enough credit for any history and bench; the credit check still runs on every purchase.
CREDIT_LIMIT_MINOR = 10**12
# The member's call to the shop: counted apart from the inter-node RPCs.
CLIENT_METHOD = "/suretynet.retail.v1.ShopService/PlaceOrder"
SERVED_COUNT = "suretynet_rpc_served_seconds_count"
CALLED_COUNT = "suretynet_rpc_called_seconds_count"

# Concurrency is doubled from 1 up to this bound while purchases/s keeps growing.
MAX_SEARCH_CONCURRENCY = 64
# "Still growing": at least this much above the best rate so far.
GROWTH = 1.05
# The search stops after this many doublings in a row that did not grow the rate.
FLAT_STEPS = 2
# The saturation is the least concurrency within this fraction of the best rate.
KNEE = 0.95
WARM_UP_PURCHASES = 10
READY_TIMEOUT_S = 60.0
# A new network is started again on new ports at most this often when one was taken.
START_ATTEMPTS = 3
PORT_TAKEN = "Address already in use"
# A phase's answer may come this long after its duration (the calls in flight finish).
PHASE_GRACE_S = 120.0
ECHO_PAYLOAD_DEFAULT_BYTES = 256
MIB = 1024 * 1024


class BenchError(RuntimeError):
    """The bench could not measure: a process that died, a phase whose purchases failed."""


@dataclass(frozen=True)
class BenchSettings:
    """How long and how much: the default run, ``--quick`` (CI) or ``--long`` (operators)."""

    phase_s: float = 2.0
    history_orders: int = 10_000
    variants: tuple[str, ...] = VARIANTS
    max_concurrency: int = MAX_SEARCH_CONCURRENCY
    database: str = "sqlite"
    replicas: int = 1
    profile_dir: Path | None = None
    profile_format: str = "speedscope"
    profile_s: float = 5.0
    keep: Path | None = None
    reconcile: bool = False
    mode: str = "default"
    # The clients' and the echo's event loop; the nodes run on uvloop.
    client_loop: str = "uvloop"

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "phase_s": self.phase_s,
            "history_orders": self.history_orders,
            "variants": list(self.variants),
            "max_concurrency": self.max_concurrency,
            "database": self.database,
            "replicas": self.replicas,
            "profile_dir": str(self.profile_dir) if self.profile_dir else None,
            "client_loop": self.client_loop,
        }


def settings_from(args: argparse.Namespace) -> BenchSettings:
    """The run's settings from the command line; ValueError names a bad option."""
    if args.quick and args.long:
        raise ValueError("--quick and --long: choose one")
    # The same refusals as `up --replicas` (a count out of range, replicas on SQLite).
    check_replicas(args.replicas, args.database)
    mode = "quick" if args.quick else "long" if args.long else "default"
    phase_s = {"quick": 0.6, "long": 15.0, "default": 2.0}[mode]
    history = {"quick": 30, "long": 10_000, "default": 10_000}[mode]
    max_concurrency = {"quick": 4, "long": MAX_SEARCH_CONCURRENCY, "default": 32}[mode]
    if args.duration is not None:
        if not 0.1 <= args.duration <= 3600:
            raise ValueError("--duration: must be between 0.1 and 3600 seconds")
        phase_s = args.duration
    if args.history is not None:
        if not 1 <= args.history <= 1_000_000:
            raise ValueError("--history: must be between 1 and 1000000 orders")
        history = args.history
    if args.max_concurrency is not None:
        if not 1 <= args.max_concurrency <= 1024:
            raise ValueError("--max-concurrency: must be between 1 and 1024")
        max_concurrency = args.max_concurrency
    variants = tuple(args.variant) if args.variant else VARIANTS
    profile_dir = Path(args.profile).resolve() if args.profile else None
    if profile_dir is not None and _py_spy() is None:
        raise ValueError("--profile: py-spy is not installed (it comes with the dev dependencies)")
    return BenchSettings(
        phase_s=phase_s,
        history_orders=history,
        variants=tuple(dict.fromkeys(variants)),
        max_concurrency=max_concurrency,
        database=args.database,
        replicas=args.replicas,
        profile_dir=profile_dir,
        profile_format=args.profile_format,
        profile_s=max(2.0 if mode == "quick" else 5.0, phase_s),
        keep=Path(args.keep).resolve() if args.keep else None,
        reconcile=args.reconcile,
        mode=mode,
        client_loop=args.client_loop,
    )


def shop_of(variant: str) -> str:
    return f"shop-{variant}"


def bench_topology(variants: Sequence[str]) -> tuple[NodeSpec, ...]:
    """Approval, verification, one agency, and one shop per discovery variant."""
    shops = tuple(
        NodeSpec(
            "retail", shop_of(variant), f"Bench shop ({variant})", {"discovery": variant}, True
        )
        for variant in variants
    )
    return (
        NodeSpec("approval", INSTITUTION, "Credit Guarantee Institution"),
        NodeSpec("verification", VERIFICATION, "Transaction Verification Server"),
        NodeSpec("settlement", AGENCY, "Bench Settlement Agency", {"routing_prefix": "4111"}, True),
        *shops,
    )


# --- What the nodes report about themselves -------------------------------------------------


_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\}\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_counts(text: str, metric: str) -> dict[str, float]:
    """The samples of ``metric`` in a Prometheus text exposition, summed by ``method``."""
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(metric + "{"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match.group(2)))
        method = labels.get("method", "")
        counts[method] = counts.get(method, 0.0) + float(match.group(3))
    return counts


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds a process has used (``/proc/PID/stat``)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # utime and stime are the 14th and 15th fields of stat; fields[0] here is the 3rd.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_per_call(
    pid: int,
    call: Callable[[], Awaitable[Any]],
    calls: int,
    concurrency: int,
    warm_up_calls: int = 100,
) -> tuple[float, float]:
    """Microseconds of process ``pid``'s CPU per ``call`` (made ``calls`` times, at
    ``concurrency`` in flight, after ``warm_up_calls``), and calls per second: how the
    side-by-side scripts price one RPC (scripts/bench_rpc_cost.py, bench_commit_floor.py)."""
    for _ in range(warm_up_calls):
        await call()
    numbers = iter(range(calls))

    async def worker() -> None:
        for _ in numbers:
            await call()

    before, started = process_cpu_s(pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, used = time.perf_counter() - started, process_cpu_s(pid) - before
    return used * 1e6 / calls, calls / elapsed


def cluster_cpu_s(data_directory: Path) -> float:
    """CPU seconds of a PostgreSQL cluster: its postmaster and every process it forked
    (the backends serving the nodes, the WAL writer, the checkpointer); ended backends'
    time is not counted, and the nodes keep their connections open."""
    postmaster = int((data_directory / "postmaster.pid").read_text().split()[0])
    total = process_cpu_s(postmaster)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = (entry / "stat").read_text()
            if int(text[text.rindex(")") + 2 :].split()[1]) == postmaster:
                total += process_cpu_s(int(entry.name))
    return total


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM in ``/proc/PID/status``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MIB
    raise BenchError(f"process {pid} reports no VmHWM")


@dataclass(frozen=True)
class NodeSample:
    cpu_s: float
    served: dict[str, float]
    called: dict[str, float]


def scrape(node: RunningNode, *, cpu_first: bool) -> NodeSample:
    """The node's CPU time and RPC counters now.

    Serving a scrape costs the node CPU too: before a phase the CPU time is read after the
    scrape, after a phase before it, so that no scrape is billed to the purchases.
    """
    cpu_s = process_cpu_s(node.pid) if cpu_first else 0.0
    with urllib.request.urlopen(f"http://{node.metrics_address}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    if not cpu_first:
        cpu_s = process_cpu_s(node.pid)
    return NodeSample(cpu_s, parse_counts(text, SERVED_COUNT), parse_counts(text, CALLED_COUNT))


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {
        method: after[method] - before.get(method, 0.0)
        for method in after
        if after[method] - before.get(method, 0.0) > 0
    }


# --- Client processes ---------------------------------------------------------------------


class ClientProcess:
    """A load process (echo or purchase client) driven by JSON lines (bench_driver.py)."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._read(READY_TIMEOUT_S)

    def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise BenchError(
                f"the {self.name} process ended or did not answer within {timeout_s:.0f}s "
                f"(its log: {self._log.name})"
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    def command(self, command: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        answer = self._read(timeout_s)
        if "error" in answer:
            raise BenchError(f"the {self.name} process refused {command}: {answer['error']}")
        return answer

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                assert self.process.stdin is not None
                self.process.stdin.write(json.dumps({"stop": True}) + "\n")
                self.process.stdin.flush()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


# --- Progress --------------------------------------------------------------------------------


class Progress:
    """A bar on a terminal; one line per phase otherwise (both on stderr)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()

    def step(self, label: str) -> None:
        self.done = min(self.total, self.done + 1)
        elapsed = time.monotonic() - self.started
        if self.tty:
            width = 30
            filled = round(width * self.done / self.total)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r[{bar}] {elapsed:5.0f}s  {label[:60]:<60}")
        else:
            self.stream.write(f"bench [{self.done}/{self.total}] {elapsed:5.0f}s  {label}\n")
        self.stream.flush()

    def note(self, label: str) -> None:
        """A stage without a phase count (starting the network, seeding the history)."""
        elapsed = time.monotonic() - self.started
        if self.tty:
            self.stream.write(f"\r{'':>32} {elapsed:5.0f}s  {label[:60]:<60}")
        else:
            self.stream.write(f"bench {elapsed:5.0f}s  {label}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --- Phases -------------------------------------------------------------------------------


def _load_command(phase: Phase, phase_s: float) -> dict[str, Any]:
    if phase.mode == "open":
        return {
            "mode": "open",
            "rate_per_s": phase.rate_per_s,
            "duration_s": phase_s,
            "max_in_flight": phase.concurrency,
        }
    return {"mode": "closed", "concurrency": phase.concurrency, "duration_s": phase_s}


def _fill(phase: Phase, answer: dict[str, Any]) -> None:
    phase.calls = int(answer["calls"])
    phase.errors = dict(answer.get("errors", {}))
    phase.elapsed_s = float(answer["elapsed_s"])
    phase.latency_ms = dict(answer["latency_ms"])
    phase.send_lag_ms = answer.get("send_lag_ms")
    if phase.calls:
        phase.client_cpu_ms_per_call = float(answer["cpu_s"]) * 1000 / phase.calls


class PurchaseRunner:
    """Runs purchase phases against one network, counting what each node did."""

    def __init__(
        self, network: LocalNetwork, client: ClientProcess, settings: BenchSettings
    ) -> None:
        self.network = network
        self.client = client
        self.settings = settings
        self.nodes = list(network.nodes)

    def _cluster_cpu_s(self) -> float | None:
        cluster = self.network.postgres
        return cluster_cpu_s(cluster.data_directory) if cluster is not None else None

    def target(self, variant: str, anonymous_id: str, tag: str) -> dict[str, Any]:
        return {
            "shop": self.network.node(shop_of(variant)).member_address,
            "anonymous_user_id": anonymous_id,
            "item": ITEM,
            "tag": tag,
        }

    def warm_up(self, variant: str, anonymous_id: str, tag: str) -> None:
        """A few purchases first (connections, caches); retried while the shop's discovery
        fills (a push or cache shop learns the agency a moment after it starts)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            answer = self.client.command(
                {
                    "mode": "count",
                    "calls": WARM_UP_PURCHASES,
                    "concurrency": 2,
                    **self.target(variant, anonymous_id, f"{tag}-warm"),
                },
                READY_TIMEOUT_S + PHASE_GRACE_S,
            )
            if not answer["errors"]:
                return
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{variant}: purchases still fail after {READY_TIMEOUT_S:.0f}s of warm-up: "
                    f"{answer['errors']} ({answer.get('first_error', '')})"
                )
            time.sleep(0.5)

    def run(self, phase: Phase, variant: str, anonymous_id: str, tag: str) -> Phase:
        before = {node_name(node): scrape(node, cpu_first=False) for node in self.nodes}
        cluster_before = self._cluster_cpu_s()
        answer = self.client.command(
            {
                **_load_command(phase, self.settings.phase_s),
                **self.target(variant, anonymous_id, tag),
            },
            self.settings.phase_s + PHASE_GRACE_S,
        )
        cluster_after = self._cluster_cpu_s()
        after = {node_name(node): scrape(node, cpu_first=True) for node in self.nodes}
        _fill(phase, answer)
        if phase.errors:
            raise BenchError(
                f"{variant} {phase.label}: {sum(phase.errors.values())} purchases failed "
                f"{phase.errors} ({answer.get('first_error', '')})"
            )
        if phase.calls == 0:
            raise BenchError(f"{variant} {phase.label}: no purchase completed")
        served: dict[str, float] = {}
        called = 0.0
        for node in self.nodes:
            name = node_name(node)
            cpu_s = after[name].cpu_s - before[name].cpu_s
            # The other variants' shops take no part in these purchases: their own
            # background work is reported apart, not billed to the purchase.
            takes_part = _takes_part(node.spec.entity_id, variant)
            costs = phase.cpu_ms_per_call if takes_part else phase.idle_cpu_ms_per_call
            costs[name] = cpu_s * 1000 / phase.calls
            for method, count in _delta(after[name].served, before[name].served).items():
                served[method] = served.get(method, 0.0) + count
            called += sum(_delta(after[name].called, before[name].called).values())
        if cluster_before is not None and cluster_after is not None:
            phase.database_cpu_ms_per_call = (cluster_after - cluster_before) * 1000 / phase.calls
        client_calls = served.pop(CLIENT_METHOD, 0.0)
        phase.rpcs_by_method = {method: count / phase.calls for method, count in served.items()}
        phase.rpcs_per_call = sum(served.values()) / phase.calls
        phase.client_rpcs_per_call = client_calls / phase.calls
        phase.called_per_call = called / phase.calls
        return phase


def node_name(node: RunningNode) -> str:
    """The node process's name in the report: its entity ID, and for a further replica of
    the entity (``up --replicas``) ``<entity>-replica-<n>``."""
    replica = int(getattr(node, "replica", 1))
    return node.spec.entity_id if replica == 1 else f"{node.spec.entity_id}-replica-{replica}"


def _takes_part(entity_id: str, variant: str) -> bool:
    """Whether a node has a part in the purchases of ``variant`` (not another's shop)."""
    return not entity_id.startswith("shop-") or entity_id == shop_of(variant)


def saturation_search(
    measure: Callable[[int], Phase], max_concurrency: int
) -> tuple[list[Phase], Phase]:
    """Doubles the concurrency from 1 until the rate has not grown by GROWTH over the best
    for FLAT_STEPS doublings in a row; the saturation is the least concurrency whose rate
    is within KNEE of the best one seen."""
    phases: list[Phase] = []
    best = 0.0
    flat = 0
    concurrency = 1
    while concurrency <= max_concurrency:
        phase = measure(concurrency)
        phases.append(phase)
        if phase.per_s < best * GROWTH:
            flat += 1
            # Twice in a row, so that one noisy phase on a shared machine does not stop it.
            if flat == FLAT_STEPS:
                break
        else:
            flat = 0
        best = max(best, phase.per_s)
        concurrency *= 2
    best = max(phase.per_s for phase in phases)
    saturated = next(phase for phase in phases if phase.per_s >= best * KNEE)
    return phases, saturated


def _half_rate_phase(saturated: Phase, label: str) -> Phase:
    return Phase(
        label,
        "open",
        # Room for a queue to form and show in the latency, bounded.
        concurrency=min(1024, max(4, 4 * saturated.concurrency)),
        rate_per_s=max(0.5, saturated.per_s / 2),
    )


# --- Set-up: the network, members, history ------------------------------------------------


@dataclass
class Setup:
    """What the phases need: each member's anonymous user ID at each shop."""

    anonymous_ids: dict[tuple[str, str], str] = field(default_factory=dict)


async def _enrol_and_issue(network: LocalNetwork, variants: Sequence[str]) -> Setup:
    from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc

    from nodes.common.convert import money
    from nodes.member.client import AgencyClient
    from nodes.network.demo_data import stock_catalog

    agency = network.node(AGENCY)
    async with network.admin_channel(agency.address) as channel:
        admin = settlement_pb2_grpc.SettlementAdminServiceStub(channel)
        for member_id in MEMBERS.values():
            await admin.EnrollMember(
                settlement_pb2.EnrollMemberRequest(
                    request_id=f"bench-member-{member_id}",
                    member_id=member_id,
                    display_name=f"Bench member ({member_id})",
                    password=MEMBER_PASSWORD,
                    credit_limit=money(CREDIT_LIMIT_MINOR, CURRENCY),
                ),
                timeout=30,
            )
    for variant in variants:
        await stock_catalog(network, network.node(shop_of(variant)).address)
    setup = Setup()
    ca_pem = network.ca.read_bytes()
    for kind, member_id in MEMBERS.items():
        async with AgencyClient(agency.member_address, ca_pem) as member:
            await member.login(member_id, MEMBER_PASSWORD)
            for variant in variants:
                issued = await member.anonymous_user_id(shop_of(variant))
                setup.anonymous_ids[(kind, variant)] = issued.anonymous_user_id.value
    return setup


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def seed(network: LocalNetwork, setup: Setup, settings: BenchSettings) -> dict[str, Any]:
    """Writes the history member's past orders (the network must be stopped)."""
    from nodes.network.bench_history import HistoryOrders, seed_history

    # The first replica's config names the entity's database (every replica shares it).
    configs = {
        node.spec.entity_id: node.directory / "node.toml"
        for node in network.nodes
        if node_name(node) == node.spec.entity_id
    }
    per_shop: dict[str, int] = {}
    sizes: dict[str, int] = {}
    started = time.perf_counter()
    counts = _split(settings.history_orders, len(settings.variants))
    run_token = secrets.token_hex(4)
    for variant, count in zip(settings.variants, counts, strict=True):
        if count == 0:
            continue
        result = seed_history(
            configs,
            HistoryOrders(
                shop_id=shop_of(variant),
                agency_id=AGENCY,
                anonymous_user_id=setup.anonymous_ids[(HISTORY, variant)],
                count=count,
                item=ITEM,
                # A bench again on a kept directory writes more history, never the same.
                request_prefix=f"history-{run_token}",
            ),
        )
        per_shop[shop_of(variant)] = result.orders
        sizes.update(result.request_bytes)
    return {
        "orders": sum(per_shop.values()),
        "per_shop": per_shop,
        "seed_s": round(time.perf_counter() - started, 2),
        "request_bytes": sizes,
        "method": "written by the nodes' own storage code while stopped (bench_history.py)",
    }


# --- Profiles ------------------------------------------------------------------------------


def _py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else None


@contextlib.contextmanager
def profiling(
    nodes: Sequence[RunningNode], directory: Path, prefix: str, seconds: float, file_format: str
) -> Iterator[list[Path]]:
    """py-spy records every node for ``seconds`` while the block runs its load."""
    binary = _py_spy()
    assert binary is not None, "settings_from checks py-spy"
    directory.mkdir(parents=True, exist_ok=True)
    suffix = {"speedscope": "speedscope.json", "flamegraph": "svg", "raw": "txt"}[file_format]
    recorders = []
    paths = []
    for node in nodes:
        path = directory / f"{prefix}-{node_name(node)}.{suffix}"
        paths.append(path)
        recorders.append(
            subprocess.Popen(
                [
                    binary,
                    "record",
                    "--pid",
                    str(node.pid),
                    "--duration",
                    str(max(1, math.ceil(seconds))),
                    "--rate",
                    "100",
                    "--nonblocking",
                    "--format",
                    file_format,
                    "--output",
                    str(path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
    try:
        yield paths
    finally:
        for recorder in recorders:
            try:
                _, error = recorder.communicate(timeout=seconds + 60)
            except subprocess.TimeoutExpired:
                recorder.kill()
                _, error = recorder.communicate()
            if recorder.returncode != 0:
                raise BenchError(f"py-spy failed: {error.decode(errors='replace')[-500:]}")


# --- The run -----------------------------------------------------------------------------


def _search_levels(max_concurrency: int) -> int:
    return int(math.log2(max_concurrency)) + 1


def _phase_count(settings: BenchSettings) -> int:
    """Phases at most: the progress bar's length, shortened as searches end early."""
    per_variant = _search_levels(settings.max_concurrency) + 1 + 3
    per_variant += 1 if settings.profile_dir else 0
    return len(settings.variants) * per_variant + 1 + 2 * len(settings.variants)


def _machine() -> dict[str, Any]:
    import grpc

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "kernel": platform.release(),
    }


def _commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


async def _start(data_dir: Path, settings: BenchSettings, postgres: Any) -> LocalNetwork:
    return await start_network(
        data_dir,
        bench_topology(settings.variants),
        seed_demo_data=False,
        database=settings.database,
        postgres=postgres,
        replicas=settings.replicas,
    )


async def _first_start(
    data_dir: Path, settings: BenchSettings, postgres: Any, progress: Progress
) -> LocalNetwork:
    """Starts the bench's network in a new directory, again on new ports if another
    process took one of the chosen ports before its node bound it (the machine is shared:
    ``up`` chooses free ports, and they may not stay free)."""
    fresh = not (data_dir / "network.json").exists()
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return await _start(data_dir, settings, postgres)
        except NodeStartError as error:
            retry = fresh and settings.database == "sqlite" and PORT_TAKEN in str(error)
            if not retry or attempt == START_ATTEMPTS:
                raise
            progress.note(f"a node's port was taken meanwhile ({error}); new ports")
            for entry in data_dir.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    raise AssertionError("unreachable: the last attempt raises")


async def run_bench(settings: BenchSettings, progress: Progress) -> dict[str, Any]:
    """The whole bench; returns the JSON report (see docs/PERFORMANCE.md)."""
    load_start = os.getloadavg()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    wall = time.monotonic()
    if settings.keep is not None:
        settings.keep.mkdir(parents=True, exist_ok=True)
        data_dir = settings.keep
        cleanup: tempfile.TemporaryDirectory[str] | None = None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="suretynet-bench-")
        data_dir = Path(cleanup.name)
    postgres = None
    network: LocalNetwork | None = None
    try:
        if settings.database == "postgresql":
            from nodes.network.postgres import PostgresCluster

            progress.note("starting PostgreSQL")
            # PostgreSQL's own user must pass through to its cluster, as up's directory allows.
            data_dir.chmod(0o711)
            # Started here, not by the network: it must outlive the nodes while the
            # history is written.
            postgres = PostgresCluster.start(data_dir / "postgres")
        progress.note("starting the network (one process per node)")
        network = await _first_start(data_dir, settings, postgres, progress)
        setup = await _enrol_and_issue(network, settings.variants)
        network.stop()
        progress.note(f"writing {settings.history_orders} past orders (nodes stopped)")
        history = seed(network, setup, settings)
        progress.note("starting the network again")
        network = await _start(data_dir, settings, postgres)
        variants, rss = _measure_purchases(network, setup, settings, data_dir, progress)
        reconciliation = None
        if settings.reconcile:
            progress.note("reconciling every node's records")
            reconciliation = await _reconcile(data_dir)
        # The echo runs alone: no node process is left to share the CPU with it.
        network.stop()
        network = None
        payload = _payload_bytes(history["request_bytes"])
        echo = _measure_echo(data_dir, settings, variants, payload, progress)
    finally:
        if network is not None:
            network.stop()
        if postgres is not None:
            postgres.stop()
        progress.close()
        if cleanup is not None:
            cleanup.cleanup()
    report = build_report(settings.variants, variants, echo, rss, history, payload)
    report.update(
        started_at=started_at,
        commit=_commit(),
        wall_s=round(time.monotonic() - wall, 1),
        load_average={"start": [round(x, 2) for x in load_start], "end": _load()},
        machine=_machine(),
        settings=settings.as_json(),
        data_dir=str(settings.keep) if settings.keep else None,
    )
    if reconciliation is not None:
        report["reconcile"] = reconciliation
    return report


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def _reconcile(data_dir: Path) -> dict[str, Any]:
    from nodes.operator.network import load
    from nodes.operator.reconcile import reconcile

    report = await reconcile(load(data_dir / "network.json"))
    figures: dict[str, Any] = report.as_json()
    return figures


def _payload_bytes(sizes: dict[str, int]) -> int:
    """The mean size of the requests a purchase sends (as the nodes' builders make them)."""
    if not sizes:
        return ECHO_PAYLOAD_DEFAULT_BYTES
    return round(sum(sizes.values()) / len(sizes))


def _measure_purchases(
    network: LocalNetwork,
    setup: Setup,
    settings: BenchSettings,
    data_dir: Path,
    progress: Progress,
) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    client = ClientProcess(
        "purchase client",
        _python(
            "nodes.network.bench_load", "--ca", str(network.ca), "--loop", settings.client_loop
        ),
        data_dir / "logs" / "bench-client.log",
    )
    runner = PurchaseRunner(network, client, settings)
    results: dict[str, dict[str, Any]] = {}
    try:
        for variant in settings.variants:
            results[variant] = _measure_variant(runner, setup, variant, settings, progress)
        rss = {node_name(node): round(peak_rss_mib(node.pid), 1) for node in network.nodes}
        rss["client"] = round(peak_rss_mib(client.pid), 1)
    finally:
        client.close()
    return results, rss


def _measure_variant(
    runner: PurchaseRunner,
    setup: Setup,
    variant: str,
    settings: BenchSettings,
    progress: Progress,
) -> dict[str, Any]:
    fresh_id = setup.anonymous_ids[(FRESH, variant)]
    history_id = setup.anonymous_ids[(HISTORY, variant)]
    runner.warm_up(variant, fresh_id, "fresh")

    def measure(concurrency: int) -> Phase:
        progress.step(f"{variant}: fresh member, {concurrency} in flight")
        return runner.run(
            Phase(f"{concurrency} in flight", "closed", concurrency), variant, fresh_id, "fresh"
        )

    search, saturated = saturation_search(measure, settings.max_concurrency)
    progress.total -= _search_levels(settings.max_concurrency) - len(search)
    progress.step(f"{variant}: fresh member, half load")
    half = runner.run(_half_rate_phase(saturated, "half load"), variant, fresh_id, "fresh")
    profiles: list[str] = []
    if settings.profile_dir is not None:
        progress.step(f"{variant}: profiling at saturation")
        with profiling(
            [node for node in runner.nodes if _takes_part(node.spec.entity_id, variant)],
            settings.profile_dir,
            variant,
            settings.profile_s,
            settings.profile_format,
        ) as paths:
            runner.client.command(
                {
                    "mode": "closed",
                    "concurrency": saturated.concurrency,
                    "duration_s": settings.profile_s,
                    **runner.target(variant, fresh_id, "profile"),
                },
                settings.profile_s + PHASE_GRACE_S,
            )
        profiles = [str(path) for path in paths]
    runner.warm_up(variant, history_id, "history")
    progress.step(f"{variant}: member with history, 1 in flight")
    history_one = runner.run(Phase("1 in flight", "closed", 1), variant, history_id, "history")
    progress.step(f"{variant}: member with history, {saturated.concurrency} in flight")
    history_saturated = runner.run(
        Phase("saturation", "closed", saturated.concurrency), variant, history_id, "history"
    )
    progress.step(f"{variant}: member with history, half load")
    history_half = runner.run(
        _half_rate_phase(history_saturated, "half load"), variant, history_id, "history"
    )
    return {
        "search": search,
        FRESH: {"one_in_flight": search[0], "saturation": saturated, "half_load": half},
        HISTORY: {
            "one_in_flight": history_one,
            "saturation": history_saturated,
            "half_load": history_half,
        },
        "profiles": profiles,
    }


def _check_echo(phase: Phase) -> None:
    if phase.errors or phase.calls == 0:
        raise BenchError(f"echo {phase.label}: {phase.errors or 'no call answered'}")


def issue_echo_certificates(
    pki_dir: Path, out: Path
) -> tuple[pki.IssuedCertificate, pki.IssuedCertificate]:
    """The echo server's and its client's certificates, from the CA in ``pki_dir``."""

    def issue(role: str, entity_id: str) -> pki.IssuedCertificate:
        return pki.issue_certificate(
            pki_dir, role=role, entity_id=entity_id, ip_addresses=["127.0.0.1"], out_directory=out
        )

    return issue("approval", "bench-echo"), issue("retail", "bench-echo-client")


def _measure_echo(
    data_dir: Path,
    settings: BenchSettings,
    variants: dict[str, dict[str, Any]],
    payload_bytes: int,
    progress: Progress,
) -> EchoResults:
    """The echo at 1 in flight and at every variant's saturation concurrency, then at the
    rate of RPCs each variant's network carried at half load; the network is stopped
    meanwhile."""
    pki_dir = data_dir / "pki"
    out = pki_dir / "bench"
    out.mkdir(mode=0o700, exist_ok=True)
    # From the network's own CA, as the nodes' certificates are.
    server, client_files = issue_echo_certificates(pki_dir, out)
    ca = pki_dir / "ca.pem"
    log = (data_dir / "logs" / "bench-echo-server.log").open("ab")
    echo_server = subprocess.Popen(
        _python(
            "nodes.network.bench_echo",
            "serve",
            "--ca",
            str(ca),
            "--cert",
            str(server.cert_path),
            "--key",
            str(server.key_path),
            "--loop",
            settings.client_loop,
        ),
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    log.close()
    results = EchoResults()
    client = None
    try:
        assert echo_server.stdout is not None
        ready, _, _ = select.select([echo_server.stdout], [], [], READY_TIMEOUT_S)
        line = echo_server.stdout.readline() if ready else ""
        if not line:
            raise BenchError("the echo server did not start (logs/bench-echo-server.log)")
        address = json.loads(line)["address"]
        client = ClientProcess(
            "echo client",
            _python(
                "nodes.network.bench_echo",
                "client",
                "--ca",
                str(ca),
                "--cert",
                str(client_files.cert_path),
                "--key",
                str(client_files.key_path),
                "--target",
                address,
                "--payload-bytes",
                str(payload_bytes),
                "--loop",
                settings.client_loop,
            ),
            data_dir / "logs" / "bench-echo-client.log",
        )
        client.command({"mode": "count", "calls": 200, "concurrency": 4}, PHASE_GRACE_S)
        levels = sorted(
            {1} | {variant[FRESH]["saturation"].concurrency for variant in variants.values()}
        )
        progress.total -= 1 + len(variants) - len(levels)
        for concurrency in levels:
            progress.step(f"echo: {concurrency} in flight")
            closed = Phase(f"{concurrency} in flight", "closed", concurrency)
            _fill(closed, client.command(_load_command(closed, settings.phase_s), PHASE_GRACE_S))
            _check_echo(closed)
            results.levels[concurrency] = closed
        for name, measured in variants.items():
            # The RPCs the network carried at half load, as bare calls at the same rate.
            half_load: Phase = measured[FRESH]["half_load"]
            progress.step(f"echo: {name}'s RPCs at half load")
            half = Phase(
                f"{name} half load",
                "open",
                concurrency=half_load.concurrency,
                rate_per_s=half_load.rate_per_s * half_load.rpcs_per_call,
            )
            _fill(half, client.command(_load_command(half, settings.phase_s), PHASE_GRACE_S))
            _check_echo(half)
            results.half_load[name] = half
    finally:
        if client is not None:
            client.close()
        echo_server.terminate()
        try:
            echo_server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            echo_server.kill()
            echo_server.wait()
    return results


# --- The command ----------------------------------------------------------------------------


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "bench",
        help="purchases/s, RPCs, CPU and latency of a local network against a bare gRPC echo",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a tiny run (CI): short phases")
    size.add_argument("--long", action="store_true", help="the operator's run: 15 s phases")
    parser.add_argument("--duration", type=float, help="seconds per phase (default 2)")
    parser.add_argument(
        "--history", type=int, help="past orders of the history member (default 10000)"
    )
    parser.add_argument(
        "--max-concurrency", type=int, help="bound of the saturation search (default 32)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        choices=VARIANTS,
        help="measure only this discovery variant (repeatable; default all three)",
    )
    parser.add_argument(
        "--database", choices=["sqlite", "postgresql"], default="sqlite", help="as for up"
    )
    parser.add_argument("--replicas", type=int, default=1, help="nodes per role (as for up)")
    parser.add_argument(
        "--profile", metavar="DIR", help="py-spy records every node at saturation into DIR"
    )
    parser.add_argument(
        "--profile-format",
        choices=["speedscope", "flamegraph", "raw"],
        default="speedscope",
        help="py-spy's output format (default speedscope; raw is collapsed stacks)",
    )
    parser.add_argument(
        "--client-loop",
        choices=LOOPS,
        default="uvloop",
        help="event loop of the echo's two processes and of the purchase client (default "
        "uvloop, as the nodes run)",
    )
    parser.add_argument("--keep", metavar="DIR", help="run the network in DIR and leave it there")
    parser.add_argument(
        "--reconcile", action="store_true", help="run reconcile over every node at the end"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    progress = Progress(_phase_count(settings))
    try:
        report = asyncio.run(run_bench(settings, progress))
    except BenchError as error:
        print(f"suretynet bench: {error}", file=sys.stderr)
        return 1
    except NodeStartError as error:
        print(f"suretynet bench: the network did not start: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0
