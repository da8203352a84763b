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
    # The closing summary says where to look: each node's metrics, and a trace command
    # for one of the demo's own orders.
    look = result.stdout.split("== Where to look", 1)[1]
    manifest = json.loads((tmp_path / "demo" / "network.json").read_text())
    for node in manifest["nodes"]:
        assert f"http://{node['metrics_address']}/metrics" in look, node["entity_id"]
    order = re.search(r"suretynet trace (\S+) --network (\S+)", look)
    assert order is not None and order.group(2) == str(tmp_path / "demo" / "network.json")
    assert order.group(1) in result.stdout.split("== Where to look", 1)[0]
    # Every line every node logged is JSON and carries a trace ID.
    for log_file in (tmp_path / "demo" / "logs").glob("*.log"):
        for line in log_file.read_text().splitlines():
            entry = json.loads(line)
            assert entry["trace_id"] not in ("", "-"), (log_file.name, entry)
