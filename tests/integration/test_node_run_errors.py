"""`suretynet node run` for a node that cannot enrol: one line saying why, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.support import Pki


def test_a_node_whose_approval_is_unreachable_says_so_in_one_line(ca: Pki, tmp_path: Path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = probe.getsockname()[1]  # closed again: nothing listens there
    tls = ca.issue("retail", "shop-lonely")
    config = tmp_path / "node.toml"
    config.write_text(
        f'''role = "retail"
entity_id = "shop-lonely"
database_url = "sqlite:///{tmp_path}/node.db"
approval_address = "127.0.0.1:{nobody}"
program_serial = "SN-RET-NONE"
listen_address = "127.0.0.1:0"

[limits]
call_timeout_s = 0.5
max_attempts = 2

[tls]
ca = "{tls.ca}"
cert = "{tls.cert}"
key = "{tls.key}"
'''
    )
    result = subprocess.run(
        [sys.executable, "-m", "nodes.cli", "node", "run", "retail", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("suretynet: ") and "PEER_UNAVAILABLE: approval" in last, last
