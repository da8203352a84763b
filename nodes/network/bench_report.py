"""The figures of ``suretynet bench``: what one phase measured, the report built from all
phases (every target of issue 12 with PASS or MISS), and its human rendering.

The report's fields are described in docs/PERFORMANCE.md; ``render`` prints it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

VARIANTS = ("directory", "push", "cache")
FRESH, HISTORY = "fresh", "history"
CLAIM_OF_VARIANT = {"directory": "claim 1", "push": "claim 10", "cache": "claim 19"}
TARGET_EFFICIENCY = 0.5
TARGET_CPU_MS = 10.0
TARGET_HISTORY_GROWTH = 0.10
TARGET_P99_FACTOR = 4.0
TARGET_RSS_MIB = 150.0


@dataclass
class Phase:
    """One measured phase: what was offered, what came back, and what it cost each node."""

    label: str
    mode: str
    concurrency: int = 0
    rate_per_s: float = 0.0
    calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_call: dict[str, float] = field(default_factory=dict)
    # Nodes that take no part in the purchase (the other variants' shops), idling.
    idle_cpu_ms_per_call: dict[str, float] = field(default_factory=dict)
    # PostgreSQL's own processes, apart from the nodes' (None on SQLite: in the nodes).
    database_cpu_ms_per_call: float | None = None
    client_cpu_ms_per_call: float = 0.0
    # Open loop: how late the client process sent the calls (see bench_driver.py).
    send_lag_ms: dict[str, float] | None = None
    rpcs_by_method: dict[str, float] = field(default_factory=dict)
    rpcs_per_call: float = 0.0
    client_rpcs_per_call: float = 0.0
    called_per_call: float = 0.0

    @property
    def per_s(self) -> float:
        return self.calls / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def cpu_ms_total(self) -> float:
        return sum(self.cpu_ms_per_call.values())

    def as_json(self, unit: str) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "label": self.label,
            "mode": self.mode,
            "concurrency": self.concurrency,
            f"{unit}": self.calls,
            f"{unit}_per_s": round(self.per_s, 2),
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3),
            "latency_ms": self.latency_ms,
        }
        if self.mode == "open":
            figures["offered_per_s"] = round(self.rate_per_s, 2)
            figures["send_lag_ms"] = self.send_lag_ms
        if self.cpu_ms_per_call:
            figures.update(
                cpu_ms_per_purchase={k: round(v, 3) for k, v in self.cpu_ms_per_call.items()},
                cpu_ms_per_purchase_total=round(self.cpu_ms_total, 3),
                idle_nodes_cpu_ms_per_purchase={
                    k: round(v, 3) for k, v in self.idle_cpu_ms_per_call.items()
                },
                client_cpu_ms_per_purchase=round(self.client_cpu_ms_per_call, 3),
                database_cpu_ms_per_purchase=(
                    None
                    if self.database_cpu_ms_per_call is None
                    else round(self.database_cpu_ms_per_call, 3)
                ),
                rpcs_per_purchase=round(self.rpcs_per_call, 3),
                client_rpcs_per_purchase=round(self.client_rpcs_per_call, 3),
                rpcs_called_per_purchase=round(self.called_per_call, 3),
                rpcs_by_method={k: round(v, 3) for k, v in sorted(self.rpcs_by_method.items())},
            )
        else:
            figures["client_cpu_ms_per_call"] = round(self.client_cpu_ms_per_call, 4)
        return figures


@dataclass
class EchoResults:
    """The echo closed-loop at each concurrency, and open-loop at each variant's RPC rate."""

    levels: dict[int, Phase] = field(default_factory=dict)
    half_load: dict[str, Phase] = field(default_factory=dict)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.inf


def _variant_report(variant: str, measured: dict[str, Any], echo: EchoResults) -> dict[str, Any]:
    fresh, history = measured[FRESH], measured[HISTORY]
    saturated: Phase = fresh["saturation"]
    echo_at = echo.levels[saturated.concurrency]
    echo_one = echo.levels[1]
    echo_half = echo.half_load[variant]
    rpcs = saturated.rpcs_per_call
    efficiency = _ratio(saturated.per_s * rpcs, echo_at.per_s)
    half_p99 = fresh["half_load"].latency_ms["p99"]
    p99_limit = TARGET_P99_FACTOR * echo_half.latency_ms["p99"] * rpcs
    cpu_fresh = saturated.cpu_ms_total
    # Over all three load levels of each member: three times the purchases of one phase,
    # so that a noisy phase on a shared machine weighs less.
    by_node_fresh = _pooled_cpu(list(fresh.values()))
    by_node_history = _pooled_cpu(list(history.values()))
    growth = _ratio(sum(by_node_history.values()), sum(by_node_fresh.values())) - 1
    return {
        "discovery": variant,
        "claim": CLAIM_OF_VARIANT[variant],
        "saturation_concurrency": saturated.concurrency,
        "purchases_per_s": round(saturated.per_s, 2),
        "rpcs_per_purchase": round(rpcs, 3),
        "client_rpcs_per_purchase": round(saturated.client_rpcs_per_call, 3),
        "echo_calls_per_s": round(echo_at.per_s, 1),
        "efficiency": round(efficiency, 4),
        "cpu_ms_per_purchase": round(cpu_fresh, 3),
        "cpu_ms_per_purchase_by_node": {
            node: round(value, 3) for node, value in saturated.cpu_ms_per_call.items()
        },
        "latency_ms": {
            "one_in_flight": fresh["one_in_flight"].latency_ms,
            "saturation": saturated.latency_ms,
            "half_load": fresh["half_load"].latency_ms,
        },
        "echo_latency_ms": {
            "one_in_flight": echo_one.latency_ms,
            "saturation": echo_at.latency_ms,
            "half_load": echo_half.latency_ms,
        },
        "history": {
            "purchases_per_s": round(history["saturation"].per_s, 2),
            "cpu_ms_per_purchase": round(history["saturation"].cpu_ms_total, 3),
            # CPU per purchase over the three load levels, fresh member against history.
            "pooled_cpu_ms_per_purchase": {
                "fresh": {node: round(value, 3) for node, value in by_node_fresh.items()},
                "history": {node: round(value, 3) for node, value in by_node_history.items()},
            },
            "cpu_growth": round(growth, 4),
            "latency_ms": {
                level: history[level].latency_ms
                for level in ("one_in_flight", "saturation", "half_load")
            },
        },
        "targets": {
            "efficiency": _target(efficiency, TARGET_EFFICIENCY, at_least=True),
            "cpu_ms_per_purchase": _target(cpu_fresh, TARGET_CPU_MS),
            "history_cpu_growth": _target(growth, TARGET_HISTORY_GROWTH),
            "p99_half_load_ms": {
                **_target(half_p99, p99_limit),
                "purchases": fresh["half_load"].latency_ms.get("count", 0),
            },
        },
        "phases": {
            "search": [phase.as_json("purchases") for phase in measured["search"]],
            FRESH: {level: phase.as_json("purchases") for level, phase in fresh.items()},
            HISTORY: {level: phase.as_json("purchases") for level, phase in history.items()},
        },
        "profiles": measured["profiles"],
    }


def _pooled_cpu(phases: list[Phase]) -> dict[str, float]:
    """CPU ms per purchase by node over several phases together."""
    purchases = sum(phase.calls for phase in phases)
    totals: dict[str, float] = {}
    for phase in phases:
        for node, value in phase.cpu_ms_per_call.items():
            totals[node] = totals.get(node, 0.0) + value * phase.calls
    return {node: total / purchases for node, total in totals.items()} if purchases else {}


def _target(value: float, limit: float, *, at_least: bool = False) -> dict[str, Any]:
    met = value >= limit if at_least else value <= limit
    return {
        "value": round(value, 4),
        "limit": round(limit, 4),
        "rule": ">=" if at_least else "<=",
        "pass": bool(met),
    }


def build_report(
    measured_variants: tuple[str, ...],
    variants: dict[str, dict[str, Any]],
    echo: EchoResults,
    rss: dict[str, float],
    history: dict[str, Any],
    payload_bytes: int,
) -> dict[str, Any]:
    """The JSON report of a run: the first of ``measured_variants`` at the top level, every
    variant under ``variants``, every target per variant with PASS (``pass``) or MISS."""
    per_variant = {
        variant: _variant_report(variant, measured, echo) for variant, measured in variants.items()
    }
    headline_variant = measured_variants[0]
    headline = per_variant[headline_variant]
    node_rss = {node: value for node, value in rss.items() if node != "client"}
    rss_target = _target(max(node_rss.values()), TARGET_RSS_MIB)
    targets = {
        name: {
            "limit": headline["targets"][name]["limit"],
            "rule": headline["targets"][name]["rule"],
            "per_variant": {v: per_variant[v]["targets"][name] for v in per_variant},
            "pass": all(per_variant[v]["targets"][name]["pass"] for v in per_variant),
        }
        for name in headline["targets"]
    }
    targets["rss_mib"] = {**rss_target, "per_node": node_rss}
    return {
        "headline_variant": headline_variant,
        "echo_calls_per_s": headline["echo_calls_per_s"],
        "purchases_per_s": headline["purchases_per_s"],
        "rpcs_per_purchase": headline["rpcs_per_purchase"],
        "client_rpcs_per_purchase": headline["client_rpcs_per_purchase"],
        "efficiency": headline["efficiency"],
        "cpu_ms_per_purchase": headline["cpu_ms_per_purchase"],
        "latency_ms": headline["latency_ms"],
        "echo_latency_ms": headline["echo_latency_ms"],
        "rss_mib": rss,
        "variants": per_variant,
        "echo": {
            "payload_bytes": payload_bytes,
            "levels": {
                str(concurrency): phase.as_json("calls")
                for concurrency, phase in echo.levels.items()
            },
            "half_load": {name: phase.as_json("calls") for name, phase in echo.half_load.items()},
        },
        "history": history,
        "targets": targets,
        "all_targets_pass": all(target["pass"] for target in targets.values()),
    }


def _mark(target: dict[str, Any]) -> str:
    return "PASS" if target["pass"] else "MISS"


def _triple(figures: dict[str, float]) -> str:
    return "/".join(f"{figures[key]:.3g}" for key in ("p50", "p95", "p99"))


def _latency(figures: dict[str, float]) -> str:
    return f"{figures['p50']:>8.2f}{figures['p95']:>8.2f}{figures['p99']:>8.2f}"


def render(report: dict[str, Any]) -> str:
    """The human report: the echo, each variant, RSS, and the targets with PASS/MISS."""
    settings, machine = report["settings"], report["machine"]
    load = report["load_average"]
    lines = [
        f"suretynet bench ({settings['mode']}, {settings['database']}, phases of "
        f"{settings['phase_s']} s) at {report['commit'] or 'an unknown commit'}, "
        f"{report['started_at']}, {report['wall_s']} s",
        f"machine: {machine['cpus']} CPUs ({machine['cpu_model']}), Python {machine['python']}, "
        f"grpcio {machine['grpcio']}; load average {' '.join(map(str, load['start']))} at the "
        f"start, {' '.join(map(str, load['end']))} at the end (other work shares this machine)",
        "",
        f"the limit: grpc.aio unary echo, mutual TLS, server and client in two processes, "
        f"{report['echo']['payload_bytes']}-byte requests, {settings['client_loop']} event loop",
        f"  {'load':<24}{'calls/s':>10}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}",
    ]
    for concurrency, closed in report["echo"]["levels"].items():
        lines.append(
            f"  {concurrency + ' in flight':<24}{closed['calls_per_s']:>10.0f}"
            f"{_latency(closed['latency_ms'])}"
        )
    for name, half in report["echo"]["half_load"].items():
        lines.append(
            f"  {name + ' RPCs, half load':<24}{half['calls_per_s']:>10.0f}"
            f"{_latency(half['latency_ms'])}   offered {half['offered_per_s']:.0f}/s"
        )
    history = report["history"]
    for variant, figures in report["variants"].items():
        phases = figures["phases"]
        lines += [
            "",
            f"{variant} discovery ({figures['claim']}): whole purchases, the member's client "
            "in its own process",
            f"  {'member, load':<24}{'purch/s':>10}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
            f"{'CPU ms/purchase':>17}{'RPCs/purchase':>15}",
        ]
        rows = [("fresh, " + phase["label"], phase) for phase in phases["search"]]
        rows.append(("fresh, half load", phases[FRESH]["half_load"]))
        rows += [
            (f"history, {phase['label']}", phase)
            for phase in (
                phases[HISTORY]["one_in_flight"],
                phases[HISTORY]["saturation"],
                phases[HISTORY]["half_load"],
            )
        ]
        for label, phase in rows:
            marker = (
                " <- saturation"
                if phase is not None
                and label.startswith("fresh")
                and phase["concurrency"] == figures["saturation_concurrency"]
                and phase["mode"] == "closed"
                else ""
            )
            lines.append(
                f"  {label:<24}{phase['purchases_per_s']:>10.1f}{_latency(phase['latency_ms'])}"
                f"{phase['cpu_ms_per_purchase_total']:>17.1f}{phase['rpcs_per_purchase']:>15.2f}"
                f"{marker}"
            )
        saturated = phases[FRESH]["saturation"]
        by_node = "  ".join(
            f"{node} {value:.1f}" for node, value in figures["cpu_ms_per_purchase_by_node"].items()
        )
        lines += [
            f"  CPU ms per purchase at saturation: {by_node}  (all nodes {figures['cpu_ms_per_purchase']:.1f};"
            f" client {saturated['client_cpu_ms_per_purchase']:.1f}, not counted"
            + (
                f"; PostgreSQL's processes {saturated['database_cpu_ms_per_purchase']:.1f}, apart"
                if saturated.get("database_cpu_ms_per_purchase") is not None
                else ""
            )
            + ")",
            f"  RPCs per purchase, served as the nodes count them: {figures['rpcs_per_purchase']:.2f} "
            f"inter-node (the client's PlaceOrder, {figures['client_rpcs_per_purchase']:.2f}, "
            f"not counted); made, by the callers' count: {saturated['rpcs_called_per_purchase']:.2f}",
        ]
        lines += [
            f"    {method} {count:.2f}" for method, count in saturated["rpcs_by_method"].items()
        ]
        ours, echo = figures["latency_ms"], figures["echo_latency_ms"]
        lines.append(
            f"  latency p50/p95/p99 ms against the echo's: saturation {_triple(ours['saturation'])} "
            f"vs {_triple(echo['saturation'])} at {figures['saturation_concurrency']} in flight; "
            f"half load {_triple(ours['half_load'])} vs {_triple(echo['half_load'])} at the same "
            "RPC rate"
        )
        if figures["profiles"]:
            lines.append(f"  profiles (py-spy, at saturation): {', '.join(figures['profiles'])}")
        lines.append(
            f"  efficiency: {figures['purchases_per_s']:.1f} purchases/s x "
            f"{figures['rpcs_per_purchase']:.2f} RPCs / {figures['echo_calls_per_s']:.0f} echo "
            f"calls/s at {figures['saturation_concurrency']} in flight = {figures['efficiency']:.3f}"
        )
    lines += [
        "",
        f"history: {history['orders']} past orders of one member "
        f"({', '.join(f'{shop} {count}' for shop, count in history['per_shop'].items())}), "
        f"{history['method']}, in {history['seed_s']} s",
        "peak RSS (VmHWM), MiB: "
        + "  ".join(f"{node} {value:.0f}" for node, value in report["rss_mib"].items()),
        "",
        "targets (issue 12)",
    ]
    names = {
        "efficiency": "efficiency >= 0.5",
        "cpu_ms_per_purchase": "CPU <= 10 ms per purchase, all nodes",
        "history_cpu_growth": "history within 10% of fresh (CPU, 3 levels)",
        "p99_half_load_ms": "p99 at half load <= 4 x echo p99 x RPCs",
    }
    for name, label in names.items():
        target = report["targets"][name]
        cells = "  ".join(
            f"{variant} {figure['value']:.3g}"
            + (
                f" (limit {figure['limit']:.3g}, of {figure['purchases']})"
                if name == "p99_half_load_ms"
                else ""
            )
            + f" {_mark(figure)}"
            for variant, figure in target["per_variant"].items()
        )
        lines.append(f"  {label:<46}{cells}")
    rss_target = report["targets"]["rss_mib"]
    lines.append(
        f"  {'RSS <= 150 MiB on every node':<46}largest {rss_target['value']:.0f} MiB "
        f"{_mark(rss_target)}"
    )
    if "reconcile" in report:
        found = report["reconcile"].get("mismatches", [])
        lines.append(f"\nreconcile: {len(found)} mismatches")
    return "\n".join(lines)
