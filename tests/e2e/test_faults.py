"""The fault harness's bounded CI sample: crash points and 200 seeded runs, 0 violations.

This is `suretynet faults` itself (nodes/network/faults.py), run in-process on a fresh
local network: every node its own process, crashed at recorded failpoints, killed, paused
and slowed from seeds, with every mutating call delivered several times, and the
reconciliation after every run. Operators run the long mode (`suretynet faults --long`);
docs/RELIABILITY.md records its latest figures.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from nodes.network.faults import CI_RUNS, render, run_faults

# Drawn from the seed: a different sample of the recorded crash points per seed.
CI_CRASH_SAMPLE = int(os.environ.get("FAULTS_CI_CRASH_SAMPLE", "24"))
CI_SEED = int(os.environ.get("FAULTS_CI_SEED", "20261128"))


@pytest.mark.timeout(1500)
def test_crash_points_and_seeded_runs_leave_nothing_lost_or_doubled(tmp_path: Path):
    summary = asyncio.run(
        run_faults(runs=CI_RUNS, seed=CI_SEED, crash_sample=CI_CRASH_SAMPLE, data_dir=tmp_path)
    )
    print(render(summary))
    assert summary.violations == [], render(summary)
    assert summary.failing_seeds == []
    assert summary.runs == CI_RUNS
    assert summary.crash_points == CI_CRASH_SAMPLE
    # The sample crashes real nodes; a point not reached is one its flow did not pass again.
    assert summary.crash_points_reached >= CI_CRASH_SAMPLE * 3 // 4, summary.unreached_points
    assert summary.crashes >= summary.crash_points_reached
    assert summary.duplicates_sent > 0
    assert summary.duplicate_answers_differing == 0
    assert summary.orders_checked > 0
