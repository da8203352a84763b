"""Node configuration: TOML plus SURETYNET_* overrides, with every mistake named."""

from __future__ import annotations

from pathlib import Path

import peewee
import pytest

from nodes.common.config import ConfigError, load_config, parse_config
from storage.common.database import DatabaseUrlError, open_database

BASE = {
    "role": "retail",
    "entity_id": "shop-1",
    "database_url": "sqlite:///shop.db",
    "approval_address": "127.0.0.1:7000",
    "program_serial": "SN-RET-1",
    "tls": {"ca": "ca.pem", "cert": "shop.pem", "key": "shop.key"},
}


def test_environment_overrides_top_level_and_table_keys():
    config = parse_config(
        BASE,
        environ={
            "SURETYNET_DATABASE_URL": "postgresql://u:p@db.internal:5433/shop",
            "SURETYNET_LIMITS__CALL_TIMEOUT_S": "2.5",
            "SURETYNET_LIMITS__MAX_CONCURRENT_RPCS": "64",
            "SURETYNET_OPTIONS__DISCOVERY": "cache",
            "UNRELATED": "ignored",
        },
    )
    assert config.database_url == "postgresql://u:p@db.internal:5433/shop"
    assert config.limits.call_timeout_s == 2.5
    assert config.limits.max_concurrent_rpcs == 64
    assert config.options["discovery"] == "cache"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"role": "bank"}, "config.role"),
        ({"entity_id": "Shop 1"}, "config.entity_id"),
        ({"databse_url": "x"}, "unknown key(s) databse_url"),
        ({"tls": None}, "config.tls"),
        ({"program_serial": ""}, "config.program_serial"),
        ({"approval_address": ""}, "config.approval_address"),
        ({"limits": {"max_attempts": 0}}, "config.limits.max_attempts"),
        ({"limits": {"timeout": 1}}, "config.limits: unknown key(s) timeout"),
        ({"insecure_dev": "yes"}, "config.insecure_dev"),
    ],
)
def test_mistakes_are_refused_naming_the_key(change: dict[str, object], message: str):
    data = {key: value for key, value in {**BASE, **change}.items() if value is not None}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(data, environ={})


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path):
    path = tmp_path / "node.toml"
    path.write_text(
        'role = "approval"\nentity_id = "institution"\ndatabase_url = "sqlite:///a.db"\n'
        'ready_file = "ready.json"\n[tls]\nca = "pki/ca.pem"\ncert = "a.pem"\nkey = "/abs/a.key"\n'
    )
    config = load_config(path, environ={})
    assert config.tls is not None
    assert config.tls.ca == tmp_path / "pki" / "ca.pem"
    assert config.tls.key == Path("/abs/a.key")
    assert config.ready_file == tmp_path / "ready.json"


def test_database_urls_select_the_backend():
    assert isinstance(open_database("sqlite:///node.db"), peewee.SqliteDatabase)
    postgres = open_database("postgresql://app:s%40cret@db.example:5433/approval")
    assert isinstance(postgres, peewee.PostgresqlDatabase)
    assert postgres.database == "approval"
    assert postgres.connect_params["password"] == "s@cret"
    assert postgres.connect_params["port"] == 5433
    for bad in ("mysql://x/y", "sqlite://relative", "postgresql://host/"):
        with pytest.raises(DatabaseUrlError):
            open_database(bad)


def test_sqlite_commits_are_durable_and_use_the_write_ahead_log(tmp_path: Path):
    database = open_database(f"sqlite:///{tmp_path / 'n.db'}")
    database.connect()
    assert database.execute_sql("pragma journal_mode").fetchone()[0] == "wal"
    assert database.execute_sql("pragma synchronous").fetchone()[0] == 2  # FULL
    database.close()


def test_an_in_memory_store_is_one_database_for_the_executor_and_the_caller():
    """Unit tests use sqlite:///:memory:; tables made on the DB thread are seen by the caller."""
    import asyncio

    from storage.common.database import Store, bind
    from storage.common.models import IdempotencyRecord

    store = Store(open_database("sqlite:///:memory:"))
    table = bind(store.database, IdempotencyRecord)
    store.create_tables([table])
    store.transaction(
        lambda: table.create(
            scope="s", method="m", request_id="r", request_sha256="x", response=b""
        )
    )
    assert asyncio.run(store.run(lambda: table.select().count())) == 1
    store.close()


def test_money_reads_lock_their_rows_on_postgresql_and_rely_on_one_writer_on_sqlite():
    """A credit check holds the member row (FOR UPDATE) where writers run in parallel."""
    from storage.common.database import bind, locked
    from storage.settlement.models import MemberRow

    postgres = bind(open_database("postgresql://u@db/agency"), MemberRow)
    sqlite = bind(open_database("sqlite:///:memory:"), MemberRow)
    pg_sql, _ = locked(postgres.select().where(postgres.member_id == "alice")).sql()
    sqlite_sql, _ = locked(sqlite.select().where(sqlite.member_id == "alice")).sql()
    assert pg_sql.endswith("FOR UPDATE")
    assert "FOR UPDATE" not in sqlite_sql


def test_a_postgresql_url_may_name_a_primary_and_its_standby():
    """libpq tries the hosts in order; read-write picks the one that accepts writes."""
    pool = open_database(
        "postgresql://app:pw@10.0.0.1:5432,10.0.0.2/agency?target_session_attrs=read-write",
        max_connections=3,
    )
    assert pool.connect_params["host"] == "10.0.0.1,10.0.0.2"
    assert pool.connect_params["port"] == "5432,5432"
    assert pool.connect_params["target_session_attrs"] == "read-write"
    assert pool._max_connections == 3  # type: ignore[attr-defined]
    assert open_database("postgresql://u@[::1]:6432/x").connect_params["host"] == "::1"
    for bad in ("postgresql://u@h:123456/x", "postgresql://u@h1,:5/x"):
        with pytest.raises(DatabaseUrlError):
            open_database(bad)
