"""A PostgreSQL cluster the project installs and starts itself (tests, ``up``, CI).

``ensure_installed`` finds the server binaries (Debian's ``/usr/lib/postgresql/<major>/bin``
or ``initdb`` on the PATH) and, where they are missing and this process is root, installs
Debian's ``postgresql`` package with apt-get. ``PostgresCluster.start(directory)`` runs
``initdb`` once and starts the server on a free port of 127.0.0.1; ``stop`` shuts it down.
Each node gets a database and a login role of its own (``create_database``), and no role
may connect to another's database.

PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres`` system
user that the Debian package creates: its directory is handed to that user, and every
directory above it must be traversable by it (``/tmp`` is; ``/root`` is not).

Command line (the test script and operators): ``python -m nodes.network.postgres install``.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEBIAN_PACKAGE = "postgresql"
SERVER_USER = "postgres"
SUPERUSER = "suretynet_admin"
START_TIMEOUT_S = 60
STATE_FILE = "cluster.json"
STANDBY_NAME = "suretynet_standby"
START_ATTEMPTS = 3
# Names PostgreSQL accepts unquoted and that we also use in URLs without escaping.
DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL is not installed and cannot be installed, or cannot start here."""


def find_bin_dir() -> Path | None:
    """The directory with ``initdb``, ``pg_ctl`` and ``postgres``, newest major first."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    for initdb in debian:
        return initdb.parent
    on_path = shutil.which("initdb")
    if on_path is not None and shutil.which("pg_ctl", path=str(Path(on_path).resolve().parent)):
        return Path(on_path).resolve().parent
    return None


def ensure_installed() -> Path:
    """The server's bin directory, installing Debian's package first if it is missing.

    The package would create and start a cluster of its own on port 5432; a
    ``createcluster.conf`` written before the install tells it not to, since every cluster
    of ours is started on demand in its own directory.
    """
    found = find_bin_dir()
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PostgresUnavailableError(
            "PostgreSQL is not installed; as root run: apt-get update && "
            f"apt-get install -y {DEBIAN_PACKAGE} (or put initdb and pg_ctl on the PATH)"
        )
    conf = Path("/etc/postgresql-common/createcluster.conf")
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("create_main_cluster = false\n")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", DEBIAN_PACKAGE],
    ):
        result = subprocess.run(argv, env=environment, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PostgresUnavailableError(f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}")
    found = find_bin_dir()
    if found is None:
        raise PostgresUnavailableError(f"{DEBIAN_PACKAGE} installed, but no initdb was found")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the caller retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _server_user() -> str | None:
    """The user the server runs as: ourselves, or ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError as error:
        raise PostgresUnavailableError(
            f"running as root needs the {SERVER_USER!r} system user (Debian's package makes it)"
        ) from error
    return SERVER_USER


@dataclass
class PostgresCluster:
    """A running cluster in ``directory``; ``url(database)`` names a database in it."""

    directory: Path
    bin_dir: Path
    host: str
    port: int
    password: str
    durable: bool = True
    # A network (CIDR) whose hosts may connect besides this one: the namespaces of a lab.
    client_network: str = ""

    @property
    def data_directory(self) -> Path:
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    @classmethod
    def start(
        cls,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        durable: bool = True,
        client_network: str = "",
    ) -> PostgresCluster:
        """Initialises the cluster on first use, then starts it and waits until it accepts.

        ``durable=False`` turns fsync off: for throwaway test clusters only. A killed server
        loses nothing committed; a crash of the machine could. Restarting on the same directory reuses
        the superuser password and, if it is still free, the port. ``client_network`` (CIDR)
        lets hosts of that network connect too, with passwords (``up --netns``: the server
        listens on the lab's bridge, and every namespace reaches it there).
        """
        cluster = cls._prepare(directory, host, port, durable, None)
        cluster.client_network = client_network
        if not (cluster.data_directory / "PG_VERSION").exists():
            cluster._initdb()
        cluster._launch()
        return cluster

    @classmethod
    def start_standby(
        cls, directory: Path, primary: PostgresCluster, *, name: str = STANDBY_NAME
    ) -> PostgresCluster:
        """A streaming-replication standby of ``primary``, which then commits synchronously.

        From here on the primary answers a COMMIT only once the standby has the transaction
        on disk: a promoted standby has every transaction a client saw committed. The
        primary waits for this standby and no other; with the standby down, commits wait.
        """
        cluster = cls._prepare(directory, primary.host, 0, primary.durable, primary.password)
        if not (cluster.data_directory / "PG_VERSION").exists():
            cluster._base_backup(primary, name)
        cluster._launch()
        primary.require_synchronous_standby(name)
        return cluster

    @classmethod
    def _prepare(
        cls, directory: Path, host: str, port: int, durable: bool, password: str | None
    ) -> PostgresCluster:
        bin_dir = ensure_installed()
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        state_path = directory / STATE_FILE
        state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
        cluster = cls(
            directory,
            bin_dir,
            host,
            port or int(state.get("port", 0)),
            password or state.get("password") or secrets.token_urlsafe(24),
            durable,
        )
        user = _server_user()
        if user is not None:
            shutil.chown(directory, user, user)
            directory.chmod(0o700)
            cluster._check_reachable(user)
        cluster._save_state()
        return cluster

    def _save_state(self) -> None:
        state_path = self.directory / STATE_FILE
        state_path.write_text(json.dumps({"password": self.password, "port": self.port}))
        state_path.chmod(0o600)

    def _launch(self) -> None:
        for attempt in range(START_ATTEMPTS):
            if not self.port or attempt > 0:
                self.port = free_port(self.host)
            if self._pg_ctl_start():
                break
        else:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise PostgresUnavailableError(f"PostgreSQL did not start in {self.directory}:\n{tail}")
        self._save_state()

    def _base_backup(self, primary: PostgresCluster, name: str) -> None:
        """Copies the primary's data directory and configures it to follow the primary."""
        result = self._run(
            [
                str(self.bin_dir / "pg_basebackup"),
                "--pgdata",
                str(self.data_directory),
                "--wal-method",
                "stream",
                "--checkpoint",
                "fast",
                "--dbname",
                f"host={primary.host} port={primary.port} user={SUPERUSER}",
            ],
            env={**os.environ, "PGPASSWORD": primary.password},
        )
        if result.returncode != 0:
            raise PostgresUnavailableError(f"pg_basebackup failed:\n{result.stderr[-2000:]}")
        auto_conf = self.data_directory / "postgresql.auto.conf"
        # The primary's own synchronous_standby_names must not follow it here: a promoted
        # standby waiting for a standby of its own would never commit.
        kept = [
            line
            for line in auto_conf.read_text().splitlines()
            if not line.startswith(("synchronous_standby_names", "primary_conninfo"))
        ]
        conninfo = (
            f"host={primary.host} port={primary.port} user={SUPERUSER} "
            f"password={primary.password} application_name={name}"
        )
        kept.append(f"primary_conninfo = '{conninfo}'")
        auto_conf.write_text("\n".join(kept) + "\n")
        (self.data_directory / "standby.signal").write_text("")
        user = _server_user()
        if user is not None:
            for path in (auto_conf, self.data_directory / "standby.signal"):
                shutil.chown(path, user, user)

    def require_synchronous_standby(self, name: str, timeout_s: float = 60.0) -> None:
        """Makes every commit wait for standby ``name``; returns once it streams in sync."""
        with self.cursor() as cursor:
            cursor.execute(f"ALTER SYSTEM SET synchronous_standby_names = '\"{name}\"'")
            # With a standby named, 'on' acknowledges a commit once the standby has it on disk.
            cursor.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
            cursor.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + timeout_s
            while True:
                cursor.execute(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                    (name,),
                )
                row = cursor.fetchone()
                if row is not None and row[0] == "sync":
                    return
                if time.monotonic() > deadline:
                    raise PostgresUnavailableError(f"standby {name} is not in sync: {row}")
                time.sleep(0.1)

    def promote(self) -> None:
        """Turns this standby into a primary that accepts writes (after its primary died)."""
        result = self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "promote",
                "--pgdata",
                str(self.data_directory),
                "--wait",
                "--timeout",
                str(START_TIMEOUT_S),
            ]
        )
        if result.returncode != 0:
            raise PostgresUnavailableError(f"promotion failed:\n{result.stderr}")

    def _run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Runs a server program as the server's user, from a directory it may enter.

        The user is switched by ``setpriv`` in the new program, not by subprocess's
        ``user=``: that makes Python fork() instead of vfork(), and a fork of a process
        with gRPC threads runs gRPC's fork handlers in the child, which can abort it before
        the program starts. A ``kill`` of the primary lost that way left it running, and a
        promoted standby beside it: its commits then waited for the synchronous standby
        forever (the standby failover test's hang).
        """
        user = _server_user()
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
        return subprocess.run(
            list(argv),
            cwd=self.directory,
            capture_output=True,
            text=True,
            check=False,
            **kwargs,
        )

    def _check_reachable(self, user: str) -> None:
        result = self._run(["test", "-w", str(self.directory)])
        if result.returncode != 0:
            raise PostgresUnavailableError(
                f"the {user!r} user cannot reach {self.directory}: put the cluster under a "
                "directory every user may traverse, such as /tmp or /var/lib"
            )

    def _initdb(self) -> None:
        password_file = self.directory / "initdb.pw"
        password_file.write_text(self.password + "\n")
        user = _server_user()
        if user is not None:
            shutil.chown(password_file, user, user)
        password_file.chmod(0o600)
        try:
            result = self._run(
                [
                    str(self.bin_dir / "initdb"),
                    "--pgdata",
                    str(self.data_directory),
                    "--username",
                    SUPERUSER,
                    "--pwfile",
                    str(password_file),
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                ]
            )
        finally:
            password_file.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PostgresUnavailableError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        settings = {
            "listen_addresses": f"'{self.host}'",
            "unix_socket_directories": f"'{self.directory}'",
            # Eight nodes of up to database_workers connections each, plus tests and tools.
            "max_connections": "300",
            "shared_buffers": "'64MB'",
            "password_encryption": "'scram-sha-256'",
        }
        if not self.durable:
            # Commits still reach the OS before they are acknowledged, so a killed server
            # (the failover tests) loses nothing; only a machine crash could.
            settings |= {"fsync": "off", "full_page_writes": "off"}
        with (self.data_directory / "postgresql.conf").open("a") as conf:
            conf.write("\n# SuretyNet\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        if self.client_network:
            with (self.data_directory / "pg_hba.conf").open("a") as hba:
                hba.write(f"\n# SuretyNet\nhost all all {self.client_network} scram-sha-256\n")

    def _pg_ctl_start(self) -> bool:
        result = self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "start",
                "--pgdata",
                str(self.data_directory),
                "--log",
                str(self.log_file),
                "--wait",
                "--timeout",
                str(START_TIMEOUT_S),
                "-o",
                # The socket directory too: a standby's copied config names its primary's.
                f"-p {self.port} -k {self.directory}",
            ]
        )
        return result.returncode == 0

    def stop(self) -> None:
        """Fast shutdown: open transactions roll back, committed ones are on disk."""
        if (self.data_directory / "postmaster.pid").exists():
            self._pg_ctl("stop", "--mode", "fast")

    def kill(self) -> None:
        """Immediate shutdown, as a crash: no checkpoint, open transactions lost.

        Raises PostgresUnavailableError if the server may still run: promoting a standby
        beside a living primary would split the cluster in two.
        """
        self._pg_ctl("stop", "--mode", "immediate")

    def restart(self) -> None:
        """Stops the server (fast) and starts it again on the same port."""
        self.stop()
        if not self._pg_ctl_start():
            raise PostgresUnavailableError(f"PostgreSQL did not restart in {self.directory}")

    def _pg_ctl(self, command: str, *options: str) -> None:
        """Runs ``pg_ctl COMMAND`` and waits for it; raises PostgresUnavailableError if it
        failed (a server meant to stop may still run)."""
        result = self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                command,
                "--pgdata",
                str(self.data_directory),
                "--wait",
                "--timeout",
                str(START_TIMEOUT_S),
                *options,
            ]
        )
        if result.returncode != 0:
            raise PostgresUnavailableError(
                f"pg_ctl {command} failed in {self.directory} ({result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-2000:]}"
            )

    def url(self, database: str, user: str = SUPERUSER, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{user}:{secret}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        """A superuser psycopg2 connection in autocommit mode (for administration)."""
        import psycopg2  # type: ignore[import-untyped]

        connection = psycopg2.connect(
            dbname=database,
            user=SUPERUSER,
            password=self.password,
            host=self.host,
            port=self.port,
            connect_timeout=10,
        )
        connection.autocommit = True
        return connection

    @contextmanager
    def cursor(self, database: str = "postgres") -> Iterator[Any]:
        connection = self.connect(database)
        try:
            with connection.cursor() as cursor:
                yield cursor
        finally:
            connection.close()

    def create_database(self, name: str) -> str:
        """Creates database ``name`` owned by a login role of the same name; returns its URL.

        Safe to call again: the role gets a new password and the URL carries it. Only the
        owner (and the superuser) may connect to the database.
        """
        if not DATABASE_NAME.match(name):
            raise ValueError(f"{name!r}: use lower-case letters, digits and _ (at most 63)")
        password = secrets.token_urlsafe(24)
        with self.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
            verb = "ALTER" if cursor.fetchone() else "CREATE"
            cursor.execute(f"{verb} ROLE {name} LOGIN PASSWORD %s", (password,))
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f"CREATE DATABASE {name} OWNER {name}")
            cursor.execute(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
        return self.url(name, name, password)

    def drop_database(self, name: str) -> None:
        """Drops the database and its role, ending any connection still open to it."""
        if not DATABASE_NAME.match(name):
            raise ValueError(f"{name!r} is not a database name")
        with self.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cursor.execute(f"DROP ROLE IF EXISTS {name}")


def throwaway_directory() -> Path:
    """A fresh directory under the system's temporary directory that the server may enter."""
    directory = Path(tempfile.mkdtemp(prefix="suretynet-pg-"))
    directory.chmod(0o755)
    return directory


def database_name(entity_id: str, prefix: str = "") -> str:
    """The database (and role) name of a node: ``sn_`` + its entity ID in lower case."""
    return f"sn_{prefix}{re.sub(r'[^a-z0-9]+', '_', entity_id.lower())}"[:63]


def wait_until_accepting(cluster: PostgresCluster, timeout_s: float = 30.0) -> None:
    """Waits until the server accepts a connection (after a restart or a promotion)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cluster.connect().close()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nodes.network.postgres", description="PostgreSQL for SuretyNet"
    )
    parser.add_argument(
        "command", choices=["install"], help="install: Debian's postgresql package if missing"
    )
    parser.parse_args(argv)
    print(f"PostgreSQL server binaries: {ensure_installed()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
