"""The supervisor's restart backoff: immediate after a clean exit, doubling, bounded."""

from __future__ import annotations

import signal

from nodes.network.supervisor import MAX_BACKOFF_S, MIN_BACKOFF_S, backoff_s, describe_exit


def test_a_clean_exit_restarts_at_once_and_crashes_back_off_doubling():
    assert backoff_s(0) == 0.0
    assert backoff_s(1) == MIN_BACKOFF_S
    assert backoff_s(2) == 2 * MIN_BACKOFF_S
    assert backoff_s(3) == 4 * MIN_BACKOFF_S


def test_the_backoff_never_exceeds_its_bound():
    assert max(backoff_s(crashes) for crashes in range(1, 200)) == MAX_BACKOFF_S


def test_an_exit_is_described_by_status_or_signal_name():
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(2) == "exited with status 2"
