"""A real PostgreSQL server for the tests, started by them on loopback (never mocked).

One server per test session, in a temporary folder, on a free port of 127.0.0.1, started on
first use (`server()`); every test that wants a database gets a fresh one (`fresh_url()`),
copied from a migrated template so the schema is not rebuilt each time. `stop()` and
`start()` take the server down and up again on the same port and data, for outage tests.

Tests run as root and initdb refuses root, so the server runs as the `postgres` system user.
Where no server can be started (no initdb, no psycopg, no such user) `require()` skips with
the reason, except under CI (CI=true), where it fails: CI must test PostgreSQL for real.
The binaries are found on PATH, else in Debian's /usr/lib/postgresql/*/bin, else where
$INPAINT_TUI_TEST_PG_BIN says.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ADMIN = "postgres"
# A role that must give its password (scram over TCP), for the wrong-password case.
PASSWORD_ROLE, PASSWORD = "inpaint_pw", "right-password"
TEMPLATE = "inpaint_template"
BIN_ENV = "INPAINT_TUI_TEST_PG_BIN"  # the folder of initdb and pg_ctl, where they are neither on PATH nor Debian's


class Unavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


def _bin_dir() -> Path:
    override = os.environ.get(BIN_ENV)
    if override:
        if not (Path(override) / "initdb").is_file():
            raise Unavailable(f"{BIN_ENV}={override} holds no initdb")
        return Path(override)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    # Debian keeps the server binaries off PATH, one folder per major version.
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not versions:
        raise Unavailable("initdb not found (on PATH or in /usr/lib/postgresql/*/bin): apt-get install postgresql")
    return Path(versions[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (free a moment ago), for the unreachable case."""
    return _free_port()


class Server:
    def __init__(self) -> None:
        try:
            import psycopg  # noqa: F401  (the driver the URLs name)
        except ImportError:
            raise Unavailable("psycopg is not installed: pip install 'psycopg[binary]' (the postgres extra)") from None
        self.bin = _bin_dir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self.owner = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no `postgres` user to run the server as") from None
        self.root = Path(tempfile.mkdtemp(prefix="inpaint-pg-"))  # not under pytest's 0700 folders
        if self.as_root:
            os.chown(self.root, self.owner.pw_uid, self.owner.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._names = itertools.count()
        try:
            self._initdb()
            self.start()
            self._setup()
        except BaseException:
            self.remove()
            raise

    # --- the server process ---------------------------------------------------------------

    def _as_owner(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        result = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise Unavailable(f"{Path(command[0]).name} failed: {(result.stderr or result.stdout).strip()[-500:]}")
        return result

    def _initdb(self) -> None:
        self._as_owner(str(self.bin / "initdb"), "-D", str(self.data), "-U", ADMIN, "-E", "UTF8", "--no-sync",
                       "--auth-local=trust", "--auth-host=trust")
        # First match wins: the password role must authenticate, everyone else is trusted.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            # A throwaway server: durability off (a test never survives a power cut anyway).
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.root}'\nfsync = off\nsynchronous_commit = off\n"
                       "full_page_writes = off\nmax_connections = 300\n")

    def start(self) -> None:
        result = self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                                "-t", "60", "start", check=False)
        if result.returncode != 0:
            tail = self.log.read_text()[-500:] if self.log.exists() else result.stderr
            raise Unavailable(f"the server did not start: {tail.strip()}")

    def stop(self) -> None:
        self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    @contextmanager
    def down(self) -> Iterator[None]:
        """The server stopped (connections cut, as in an outage) for the body, then back on the same port."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def running(self) -> bool:
        result = self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "status", check=False)
        return result.returncode == 0

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- databases ------------------------------------------------------------------------

    def url(self, database: str, *, user: str = ADMIN, password: str | None = None, port: int | None = None) -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql+psycopg://{user}{secret}@127.0.0.1:{port or self.port}/{database}"

    def execute(self, *statements: str) -> None:
        """Statements run as the superuser on the `postgres` database (autocommit: CREATE DATABASE needs it)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=ADMIN, dbname="postgres",
                             autocommit=True) as connection:
            for statement in statements:
                connection.execute(statement)

    def _setup(self) -> None:
        from inpaint_tui.store import Store

        self.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'", f"CREATE DATABASE {TEMPLATE}")
        Store(self.url(TEMPLATE), data_dir=self.root / "template_data").close()  # every migration, once

    def fresh_url(self, *, migrated: bool = True) -> str:
        """The URL of a new database: a copy of the migrated template, or empty (`migrated=False`,
        for tests of the migrations themselves)."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {TEMPLATE}" if migrated else ""))
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop a test's database; FORCE ends connections a killed worker may have left."""
        from sqlalchemy.engine import make_url

        self.execute(f"DROP DATABASE IF EXISTS {make_url(url).database} WITH (FORCE)")


_server: Server | None = None
_failure: Exception | None = None


def server() -> Server:
    """The session's server, started on first call. A failure is kept and raised again on every
    later call (one attempt per session): Unavailable when there is no server to be had, any
    other error (a migration that fails on PostgreSQL) as itself, so it fails the tests."""
    global _server, _failure
    if _server is None and _failure is None:
        try:
            _server = Server()
        except Exception as error:
            _failure = error
        else:
            atexit.register(_server.remove)
    if _failure is not None:
        raise _failure
    return _server


def require() -> Server:
    """The server, or skip (fail under CI) naming why there is none."""
    import pytest

    try:
        return server()
    except Unavailable as error:
        reason = str(error)
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required under CI: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL server: {reason}")
