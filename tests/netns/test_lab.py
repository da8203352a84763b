"""The lab itself: teardown leaves no namespace behind, a moved host's old one included."""

from __future__ import annotations

import subprocess

import pytest

from nodes.network.netns import NetnsLab
from tests.support import require_netns

pytestmark = pytest.mark.netns


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def test_teardown_deletes_every_namespace_a_moved_host_used():
    require_netns()
    with NetnsLab() as lab:
        lab.add_host("shop-1")
        before_move = lab.namespace("shop-1")
        lab.move_host("shop-1")
        assert lab.namespace("shop-1") != before_move
        ours = {before_move, lab.namespace("shop-1")}
        assert ours <= namespaces()
    assert not ours & namespaces()
