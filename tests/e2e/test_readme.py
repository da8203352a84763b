"""The README's shell examples, run verbatim against a network started as `up` starts it.

Every ```sh block under the headings below is executed with bash (-e, -o pipefail), with
the README's data directory replaced by this network's and the venv's grpcurl and
suretynet on PATH. An example that stops working fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nodes.network.local import LocalNetwork

README = Path(__file__).resolve().parents[2] / "README.md"
EXECUTED_SECTIONS = (
    "### grpcurl",
    "## Enrolling a node",
    "## Making a purchase",
    "## Cancelling an order",
    "## Marketplace mediation",
    "## Checking and tracing the network",
    "## Auditing the institution's records",
    "## Who saw my data",
    "## Metrics and traces",
)
# What each section's output must show: the example did what its text says.
EXPECTED = {
    "### grpcurl": ('"status": "SERVING"', "suretynet.approval.v1.EnrollmentService"),
    "## Enrolling a node": ('"serial": "SN-RET-', "retail-shop-9.pem"),
    "## Making a purchase": ('"ORDER_STATUS_COMPLETED"', '"transactionCompletionNotices"'),
    "## Cancelling an order": ('"ORDER_STATUS_CANCELLED"', '"CANCEL_DECISION_STOPPED_BILLING"'),
    "## Marketplace mediation": ('"TRANSACTION_STATE_ORDERED"', '"partnerMarketplaceId"'),
    "## Checking and tracing the network": (
        "consistent",
        "0 mismatches",
        "shop-1 -> agency-1: BillingService/SearchBillingAgencyIdentification",
    ),
    "## Auditing the institution's records": (
        "OK: both chains are intact",
        '"signingPublicKey"',
        '"TRANSACTION_RECORDED"',
    ),
    "## Who saw my data": (
        '"DATA_DISCLOSURE_KIND_ANONYMOUS_ID_ISSUED"',
        '"DATA_DISCLOSURE_KIND_CREDIT_GUARANTEE"',
    ),
    "## Metrics and traces": (
        'suretynet_flows_started_total{flow="purchase"}',
        'suretynet_flow_outcomes_total{flow="cancellation",outcome="completed",reason=""}',
    ),
}


def sections() -> dict[str, list[str]]:
    text = README.read_text()
    found: dict[str, list[str]] = {}
    for heading in EXECUTED_SECTIONS:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        body = text[start : end if end > 0 else len(text)]
        blocks = re.findall(r"```sh\n(.*?)```", body, flags=re.S)
        # Blocks with <PLACEHOLDERS> are templates for the reader, not commands.
        found[heading] = [block for block in blocks if not re.search(r"<[A-Z][A-Z_]*>", block)]
    return found


@pytest.mark.parametrize("heading", EXECUTED_SECTIONS)
def test_readme_examples_run(network: LocalNetwork, heading: str):
    blocks = sections()[heading]
    assert blocks, f"the README has runnable examples under {heading}"
    bin_dir = str(Path(sys.executable).parent)
    output = ""
    for block in blocks:
        script = block.replace("N=/tmp/sn", f"N={network.data_dir}")
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        )
        assert result.returncode == 0, f"{heading}:\n{script}\n{result.stdout}\n{result.stderr}"
        assert "ERROR" not in result.stdout
        output += result.stdout
    for expected in EXPECTED[heading]:
        assert expected in output, f"{heading}: {expected} not in the output"
