"""E2E fixtures: a whole network, every node its own process on real sockets."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from nodes.network.local import DEFAULT_TOPOLOGY, LocalNetwork, NodeSpec, start_network


@pytest.fixture(scope="module")
def network_factory(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., LocalNetwork]]:
    """Starts networks (default topology unless told otherwise); stops them all afterwards."""
    started: list[LocalNetwork] = []

    def start(
        topology: Sequence[NodeSpec] = DEFAULT_TOPOLOGY,
        extra_config: dict[str, Any] | None = None,
        database: str = "sqlite",
        **options: Any,
    ) -> LocalNetwork:
        """``database="postgresql"`` puts every node on the session's PostgreSQL cluster, or
        on ``postgres=`` (and ``postgres_standby=``) when given."""
        directory: Path = tmp_path_factory.mktemp("network")
        if database == "postgresql" and "postgres" not in options:
            options["postgres"] = request.getfixturevalue("postgres_cluster")
        network = asyncio.run(
            start_network(
                directory,
                topology,
                extra_config=extra_config,
                database=database,
                database_prefix=f"n{uuid.uuid4().hex[:8]}_",
                **options,
            )
        )
        started.append(network)
        return network

    yield start
    for network in started:
        network.stop()


@pytest.fixture(scope="module")
def network(network_factory: Callable[..., LocalNetwork]) -> LocalNetwork:
    """The default local network (the one `suretynet up` starts), shared by a module."""
    return network_factory()
