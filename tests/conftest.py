"""Fixtures shared by every test tier."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nodes.network.postgres import (
    PostgresCluster,
    throwaway_directory,
)
from tests.support import Pki, require_postgresql

ENGINES = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One real network CA for the whole run; certificates are issued per test as needed."""
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the run, installed and started by the project.

    Without PostgreSQL (and without root to install it) the tests that need it are skipped,
    except in CI, where that is a failure.
    """
    require_postgresql()
    directory = throwaway_directory()
    cluster = PostgresCluster.start(directory / "cluster", durable=False)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Makes empty databases of one engine and returns their URLs; drops them afterwards.

    ``engine`` comes from the test's ``engine`` parameter (see ``ENGINES``).
    """
    engine = request.getfixturevalue("engine")
    made: list[str] = []
    cluster = request.getfixturevalue("postgres_cluster") if engine == "postgresql" else None

    def make(label: str = "db") -> str:
        if cluster is None:
            return f"sqlite:///{tmp_path / f'{label}-{len(made)}.db'}"
        name = f"t_{uuid.uuid4().hex[:12]}"
        made.append(name)
        return cluster.create_database(name)

    yield make
    if cluster is not None:
        for name in made:
            cluster.drop_database(name)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once per storage engine."""
    return str(request.param)
