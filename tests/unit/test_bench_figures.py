"""The bench's arithmetic and decisions: metrics parsing, percentiles, the saturation
search, its options, and starting again when another process took a chosen port."""

from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path

import pytest

from nodes.network import bench
from nodes.network.bench import (
    CLIENT_METHOD,
    PORT_TAKEN,
    SERVED_COUNT,
    Progress,
    add_parser,
    parse_counts,
    saturation_search,
    settings_from,
)
from nodes.network.bench_driver import percentile, summary_ms
from nodes.network.bench_report import Phase
from nodes.network.local import NodeStartError

EXPOSITION = f"""# HELP suretynet_rpc_served_seconds RPCs this node served
# TYPE suretynet_rpc_served_seconds histogram
suretynet_rpc_served_seconds_bucket{{code="OK",le="0.001",method="/a.B/C"}} 3.0
suretynet_rpc_served_seconds_count{{code="OK",method="/a.B/C"}} 7.0
suretynet_rpc_served_seconds_count{{code="NOT_FOUND",method="/a.B/C"}} 2.0
suretynet_rpc_served_seconds_count{{code="OK",method="{CLIENT_METHOD}"}} 5.0
suretynet_rpc_served_seconds_sum{{code="OK",method="/a.B/C"}} 0.5
suretynet_rpc_called_seconds_count{{code="OK",method="/a.B/C"}} 11.0
"""


def test_served_counts_are_summed_by_method_over_status_codes():
    assert parse_counts(EXPOSITION, SERVED_COUNT) == {"/a.B/C": 9.0, CLIENT_METHOD: 5.0}


def test_percentiles_are_nearest_rank():
    ordered = [float(value) for value in range(1, 101)]
    assert percentile(ordered, 0.50) == 50.0
    assert percentile(ordered, 0.99) == 99.0
    assert percentile([], 0.99) == 0.0
    three = summary_ms([0.001, 0.002, 0.003])
    assert (three["p50"], three["p99"], three["max"], three["count"]) == (2.0, 3.0, 3.0, 3)


def _search(rates: dict[int, float], max_concurrency: int = 64) -> tuple[list[int], int]:
    def measure(concurrency: int) -> Phase:
        phase = Phase(f"{concurrency}", "closed", concurrency)
        phase.calls, phase.elapsed_s = int(rates[concurrency] * 10), 10.0
        return phase

    phases, saturated = saturation_search(measure, max_concurrency)
    return [phase.concurrency for phase in phases], saturated.concurrency


def test_the_search_stops_after_two_doublings_without_growth():
    levels, saturated = _search({1: 10, 2: 19, 4: 30, 8: 31, 16: 30, 32: 40})
    assert levels == [1, 2, 4, 8, 16]
    assert saturated == 4


def test_one_flat_step_does_not_end_the_search():
    levels, saturated = _search({1: 10, 2: 10.2, 4: 20, 8: 20.5, 16: 20})
    assert levels == [1, 2, 4, 8, 16]
    assert saturated == 4


def test_the_search_is_bounded():
    levels, saturated = _search({1: 1, 2: 2, 4: 4, 8: 8}, max_concurrency=8)
    assert levels == [1, 2, 4, 8]
    assert saturated == 8


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["bench", *argv])


def test_modes_set_phase_length_and_history():
    assert settings_from(_args("--quick")).history_orders == 30
    default = settings_from(_args())
    assert (default.phase_s, default.history_orders) == (2.0, 10_000)
    assert settings_from(_args("--long")).phase_s == 15.0
    assert settings_from(_args("--duration", "3", "--variant", "push")).variants == ("push",)


def test_replicas_take_postgresql_as_up_does():
    replicated = settings_from(_args("--replicas", "2", "--database", "postgresql"))
    assert replicated.replicas == 2
    with pytest.raises(ValueError, match="needs --database postgresql"):
        settings_from(_args("--replicas", "2"))
    with pytest.raises(ValueError, match="choose 1 to"):
        settings_from(_args("--replicas", "0", "--database", "postgresql"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--duration", "0"), "--duration"),
        (("--history", "0"), "--history"),
        (("--max-concurrency", "0"), "--max-concurrency"),
    ],
)
def test_bad_options_are_refused_with_the_option_named(argv, message):
    with pytest.raises(ValueError, match=message):
        settings_from(_args(*argv))


def _start_failing(monkeypatch: pytest.MonkeyPatch, failures: list[str]) -> list[list[str]]:
    """bench._start raising each of ``failures`` in turn, then starting; records what the
    directory held at each attempt."""
    seen: list[list[str]] = []

    def install(data_dir: Path) -> None:
        seen.append(sorted(entry.name for entry in data_dir.iterdir()))
        (data_dir / "shop-push").mkdir()
        (data_dir / "pki.pem").write_text("issued")

    async def start(data_dir: Path, settings: object, postgres: object) -> str:
        install(data_dir)
        if failures:
            raise NodeStartError(failures.pop(0))
        return "network"

    monkeypatch.setattr(bench, "_start", start)
    return seen


def test_a_port_taken_meanwhile_starts_the_network_again_on_new_ports(monkeypatch, tmp_path):
    seen = _start_failing(monkeypatch, [f"shop-push exited with 2:\nsuretynet: {PORT_TAKEN}"])
    settings = settings_from(_args("--quick"))
    started = asyncio.run(
        bench._first_start(tmp_path, settings, None, Progress(1, stream=io.StringIO()))
    )
    assert started == "network"
    # The second attempt starts from an empty directory: new configs, new ports.
    assert seen == [[], []]


def test_other_start_failures_and_kept_networks_are_not_retried(monkeypatch, tmp_path):
    settings = settings_from(_args("--quick"))
    progress = Progress(1, stream=io.StringIO())
    _start_failing(monkeypatch, ["approval exited with 1:\nconfig error"])
    with pytest.raises(NodeStartError, match="config error"):
        asyncio.run(bench._first_start(tmp_path, settings, None, progress))
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "network.json").write_text("{}")
    _start_failing(monkeypatch, [PORT_TAKEN])
    with pytest.raises(NodeStartError, match=PORT_TAKEN):
        asyncio.run(bench._first_start(kept, settings, None, progress))
    assert (kept / "network.json").exists()
