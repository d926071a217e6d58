"""Database set-up: URL resolution, the SQLAlchemy engine, migrations, the data folder.

This is the only place that knows SQLite exists: WAL (readers never block the writer, so
the TUI can follow a run live), a busy timeout (concurrent workers wait instead of failing)
and foreign keys (SQLite leaves them off by default).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

DEFAULT_DB = "experiments.db"
DB_ENV = "INPAINT_TUI_DB"
DATA_ENV = "INPAINT_TUI_DATA"
BUSY_TIMEOUT_MS = 30_000
BUSY_TIMEOUT_ENV = "INPAINT_TUI_BUSY_TIMEOUT_MS"  # override (tests use a short one to reach lock errors fast)


class StoreError(RuntimeError):
    """A database that cannot be opened or used; the message names it."""


class NotFound(StoreError):
    """A run, sample or sample set that does not exist; the message names it."""


def database_url(db: str | os.PathLike | None = None) -> str:
    """A path or SQLAlchemy URL (default: $INPAINT_TUI_DB, else ./experiments.db) to a URL."""
    value = str(db) if db is not None else os.environ.get(DB_ENV) or DEFAULT_DB
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def data_dir_for(url: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Where images live: explicit, else $INPAINT_TUI_DATA, else beside an SQLite file
    (`experiments.db` -> `experiments_data/`), else ./inpaint_data for server databases."""
    explicit = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        return path.with_name(f"{path.stem}_data")
    return Path("inpaint_data").resolve()


def busy_timeout_ms() -> int:
    """How long an SQLite writer waits for the lock: $INPAINT_TUI_BUSY_TIMEOUT_MS, else 30 s."""
    value = os.environ.get(BUSY_TIMEOUT_ENV)
    try:
        return max(0, int(value)) if value else BUSY_TIMEOUT_MS
    except ValueError:
        raise StoreError(f"{BUSY_TIMEOUT_ENV} must be a number of milliseconds, got {value!r}") from None


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise StoreError(f"cannot create database {parsed.database}: folder {folder} does not exist")
        busy_ms = busy_timeout_ms()
        engine = create_engine(url, connect_args={"timeout": busy_ms / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA foreign_keys=ON")
            # NORMAL is safe with WAL: a crash never corrupts the file (power loss may drop the last commit).
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest migration (a no-op when it is already there)."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head:
            return
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

