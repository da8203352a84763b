"""The main job: `suretynet demo` brings up a fresh network and every flow succeeds."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from nodes.network.demo import registered_flows


def test_the_demo_runs_every_flow_and_exits_zero(tmp_path):
    """Run as an operator would; each flow prints a numbered sequence from the nodes' logs."""
    result = subprocess.run(
        [sys.executable, "-m", "nodes.cli", "demo", "--keep", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    flows = len(registered_flows())
    assert f"{flows} of {flows} flows succeeded" in result.stdout
    assert result.stdout.count("   -> OK (") == flows
    # Every flow shows at least one message that crossed the network.
    sequences = re.findall(r"== Flow \d+: .*?\n(.*?)   -> OK", result.stdout, flags=re.S)
    assert len(sequences) == flows
    assert all(re.search(r"^\s+1\. \S+ -> \S+: \w+/\w+$", s, flags=re.M) for s in sequences)
    # Every flow left the network consistent, and the user is told where to look.
    closing = result.stdout.split("== Where to look", 1)[1]
    assert re.search(r"\d+ orders, .* checked on \d+ nodes: consistent", closing), closing
    assert "suretynet console --network" in closing and "suretynet trace" in closing
    # ... including each node's metrics endpoint.
    manifest = json.loads((tmp_path / "demo" / "network.json").read_text())
    for node in manifest["nodes"]:
        assert f"http://{node['metrics_address']}/metrics" in closing, node["entity_id"]
    # Every line every node logged is JSON and carries a trace ID.
    for log_file in (tmp_path / "demo" / "logs").glob("*.log"):
        for line in log_file.read_text().splitlines():
            entry = json.loads(line)
            assert entry["trace_id"] not in ("", "-"), (log_file.name, entry)
    # A stranger can read it: each flow says what it shows; provoked refusals are marked
    # as expected, in the sequence and in the summary; the commands to try point at a
    # network that can be started again (the kept directory), not at one already stopped.
    flows_with_words = re.findall(r"== Flow \d+: .*\n   [A-Za-z]", result.stdout)
    assert len(flows_with_words) == flows
    assert "refused: FAILED_PRECONDITION CREDIT_LIMIT_EXCEEDED (expected)" in result.stdout
    assert "[ok, refused as expected: CREDIT_LIMIT_EXCEEDED]" in result.stdout
    summary = result.stdout[result.stdout.index("== Summary") :]
    assert f"suretynet up --data-dir {tmp_path / 'demo'}" in summary
    before_summary = result.stdout[: result.stdout.index("== Summary")]
    assert "Try:" not in before_summary, "no commands for a network that is about to stop"
