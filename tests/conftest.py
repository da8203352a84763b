"""Fixtures shared by every test tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import Pki


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One real network CA for the whole run; certificates are issued per test as needed."""
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path
