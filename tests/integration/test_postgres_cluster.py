"""The PostgreSQL cluster the project starts itself: one database and role per node."""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from pathlib import Path

import psycopg2  # type: ignore[import-untyped]
import pytest

from nodes.network.postgres import (
    PostgresCluster,
    PostgresUnavailableError,
    database_name,
    ensure_installed,
)


def login(url: str, database: str | None = None) -> None:
    parts = urllib.parse.urlsplit(url)
    psycopg2.connect(
        dbname=database or parts.path.lstrip("/"),
        user=parts.username,
        password=parts.password,
        host=parts.hostname,
        port=parts.port,
    ).close()


def test_a_node_role_reaches_its_own_database_and_no_other(postgres_cluster: PostgresCluster):
    shop = postgres_cluster.create_database("sn_c1_shop_1")
    agency = postgres_cluster.create_database("sn_c1_agency_1")
    try:
        login(shop)
        login(agency)
        with pytest.raises(psycopg2.OperationalError, match="permission denied"):
            login(shop, "sn_c1_agency_1")
    finally:
        postgres_cluster.drop_database("sn_c1_shop_1")
        postgres_cluster.drop_database("sn_c1_agency_1")


def test_creating_a_database_again_keeps_it_and_replaces_the_password(
    postgres_cluster: PostgresCluster,
):
    first = postgres_cluster.create_database("sn_c2_shop")
    try:
        psycopg2.connect(first).close()
        connection = psycopg2.connect(first)
        with connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE kept (value integer)")
        connection.close()
        second = postgres_cluster.create_database("sn_c2_shop")
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            login(first)
        connection = psycopg2.connect(second)
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM kept")
            assert cursor.fetchone() == (0,)
        connection.close()
    finally:
        postgres_cluster.drop_database("sn_c2_shop")


def test_names_are_checked_and_derived_from_entity_ids(postgres_cluster: PostgresCluster):
    assert database_name("shop-1") == "sn_shop_1"
    assert database_name("Market.One", "n7_") == "sn_n7_market_one"
    for bad in ("Shop", "a-b", "x; DROP DATABASE postgres", "", "a" * 64):
        with pytest.raises(ValueError, match="lower-case letters"):
            postgres_cluster.create_database(bad)


@pytest.mark.skipif(os.geteuid() != 0, reason="the server user differs from ours only as root")
def test_a_directory_the_server_user_cannot_reach_is_a_clear_error():
    ensure_installed()
    with tempfile.TemporaryDirectory() as private:  # 0700, owned by root
        with pytest.raises(PostgresUnavailableError, match="cannot reach"):
            PostgresCluster.start(Path(private) / "cluster")
