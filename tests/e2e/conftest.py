"""E2E fixtures: a whole network, every node its own process on real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from nodes.network.local import DEFAULT_TOPOLOGY, LocalNetwork, NodeSpec, start_network


@pytest.fixture(scope="module")
def network_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., LocalNetwork]]:
    """Starts networks (default topology unless told otherwise); stops them all afterwards."""
    started: list[LocalNetwork] = []

    def start(
        topology: Sequence[NodeSpec] = DEFAULT_TOPOLOGY, extra_config: dict[str, Any] | None = None
    ) -> LocalNetwork:
        directory: Path = tmp_path_factory.mktemp("network")
        network = asyncio.run(start_network(directory, topology, extra_config=extra_config))
        started.append(network)
        return network

    yield start
    for network in started:
        network.stop()


@pytest.fixture(scope="module")
def network(network_factory: Callable[..., LocalNetwork]) -> LocalNetwork:
    """The default local network (the one `suretynet up` starts), shared by a module."""
    return network_factory()
