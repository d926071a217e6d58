"""Database set-up: URL resolution, the SQLAlchemy engine, migrations, the data folder.

This is the only place that knows SQLite exists: WAL (readers never block the writer, so
the TUI can follow a run live), a busy timeout (concurrent workers wait instead of failing)
and foreign keys (SQLite leaves them off by default).
"""

from __future__ import annotations

import json
import math
import os
import re
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

from sqlalchemy import Float, create_engine, delete, event, insert, inspect, literal_column, select, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

DEFAULT_DB = "experiments.db"
DB_ENV = "INPAINT_TUI_DB"
DATA_ENV = "INPAINT_TUI_DATA"
BUSY_TIMEOUT_MS = 30_000
BUSY_TIMEOUT_ENV = "INPAINT_TUI_BUSY_TIMEOUT_MS"  # override (tests use a short one to reach lock errors fast)
# A best-effort write (progress, heartbeat, the per-step claim check) waits this long at most for
# another writer's lock: skipping it costs nothing, while waiting the full busy timeout would
# stall the denoising loop for 30 s per step under a long-held lock.
BRIEF_WAIT_MS = 100
_wait_limit_ms: ContextVar[int | None] = ContextVar("inpaint_tui_wait_limit_ms", default=None)


class StoreError(RuntimeError):
    """A database that cannot be opened or used; the message names it."""


class NotFound(StoreError):
    """A run, sample or sample set that does not exist; the message names it."""


class DatabaseArgumentError(StoreError):
    """A `--db` value that names no usable kind of database (unparseable URL, unknown dialect
    or driver name), or a server database given without the `--data-dir` it needs: a bad
    argument, so the faces exit 2 rather than 1."""


# Driver modules SQLAlchemy imports, and the package that provides each (for the hint).
DRIVER_PACKAGES = {"MySQLdb": "mysqlclient", "pymysql": "PyMySQL", "psycopg2": "psycopg2-binary",
                   "psycopg": "'psycopg[binary]'", "asyncpg": "asyncpg", "cx_Oracle": "cx_Oracle",
                   "oracledb": "oracledb", "pyodbc": "pyodbc", "pymssql": "pymssql"}


def hide_passwords(text: str) -> str:
    """`text` (a URL, or a command line holding one) with every `user:password@` password
    replaced by ***: what may be recorded, logged or shown."""
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1***@", text)


def shown(url: str | URL) -> str:
    """A URL fit for a message: passwords hidden, SQLite files as their path."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except (ArgumentError, ValueError):
        return hide_passwords(str(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return str(sqlite_path(parsed))
    return parsed.render_as_string(hide_password=True)


def parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as error:
        raise DatabaseArgumentError(
            f"--db {hide_passwords(url)}: not a database path or URL ({error}); give a file path or a URL such as "
            "sqlite:///experiments.db or postgresql+psycopg://user@host/db"
        ) from None


def sqlite_path(parsed: URL) -> Path:
    """The file of an SQLite URL, also for `sqlite:///file:PATH?mode=ro&uri=true` URIs."""
    database = parsed.database or ""
    if parsed.query.get("uri") in ("true", "1") and database.startswith("file:"):
        database = database[len("file:"):].split("?", 1)[0]
    return Path(database)


def database_url(db: str | os.PathLike | None = None) -> str:
    """A path or SQLAlchemy URL (default: $INPAINT_TUI_DB, else ./experiments.db) to a URL."""
    value = str(db) if db is not None else os.environ.get(DB_ENV) or DEFAULT_DB
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def data_dir_for(url: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """Where images live as given here: explicit, else $INPAINT_TUI_DATA, else beside an SQLite
    file (`experiments.db` -> `experiments_data/`). None for a server database: its data root
    is shared by every box, so it is never guessed from the current directory (the Store
    falls back to the path registered in the database, else refuses)."""
    explicit = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve()
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = sqlite_path(parsed)
        return path.with_name(f"{path.stem}_data")
    return None


def busy_timeout_ms() -> int:
    """How long an SQLite writer waits for the lock: $INPAINT_TUI_BUSY_TIMEOUT_MS, else 30 s."""
    value = os.environ.get(BUSY_TIMEOUT_ENV)
    try:
        return max(0, int(value)) if value else BUSY_TIMEOUT_MS
    except ValueError:
        raise StoreError(f"{BUSY_TIMEOUT_ENV} must be a number of milliseconds, got {value!r}") from None


@contextmanager
def brief_waits(limit_ms: int = BRIEF_WAIT_MS) -> Iterator[None]:
    """Within this block (in this thread), database calls wait at most `limit_ms` for a lock
    held by another connection, instead of the busy timeout; then they fail as locked."""
    token = _wait_limit_ms.set(limit_ms)
    try:
        yield
    finally:
        _wait_limit_ms.reset(token)


def server_epoch(dialect_name: str):
    """The database server's clock as epoch seconds, an SQL expression: heartbeats and their
    staleness are judged by one clock, so a box whose clock is skewed cannot declare the
    others' workers lost. SQLite is embedded (its clock is this box's), and julianday() is
    used because unixepoch('subsec') needs SQLite 3.42."""
    if dialect_name == "sqlite":
        return literal_column("((julianday('now') - 2440587.5) * 86400.0)", Float)
    return literal_column("extract(epoch from now())", Float)


# An infinite float (TD-Paint's t_bg=inf) in a JSON column, written as a number that overflows
# to infinity wherever it is parsed: Python's json reads it back as inf and SQLite's JSON
# functions as infinity, where the `Infinity` Python's json writes by default is not JSON at
# all (PostgreSQL's json type refuses it; SQLite before 3.42 fails any query touching it).
_INFINITE = {math.inf: "1e999", -math.inf: "-1e999"}
_MARK = "\x00{}\x00"  # stands for a number while encoding: no parameter holds NUL characters


def _infinities_marked(value):
    if isinstance(value, float) and value in _INFINITE:
        return _MARK.format(_INFINITE[value])
    if isinstance(value, dict):
        return {key: _infinities_marked(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_infinities_marked(item) for item in value]
    return value


def json_text(value) -> str:
    """JSON as the store writes it (every JSON column, both backends): valid JSON for infinite
    floats (see _INFINITE). NaN has no JSON form; it is written as Python writes it, as before
    (parameters refuse NaN: engine/params.py)."""
    text = json.dumps(_infinities_marked(value))
    if "\\u0000" not in text:
        return text
    for number in _INFINITE.values():
        text = text.replace(json.dumps(_MARK.format(number)), number)
    return text


def json_document(dialect_name: str, column):
    """A JSON column as an expression its accessors (`[key].as_float()`, ...) read on this
    backend, infinite numbers included (see _INFINITE). SQLite: rows written before json_text
    hold Python's `Infinity`, read as 1e999. PostgreSQL: `->>` gives the text `1e999`, which
    float8 refuses as out of range, so the number is read as the text 'Infinity' (which float8
    takes); the column keeps the valid JSON."""
    from sqlalchemy import JSON, Text, cast, func, type_coerce

    if dialect_name == "sqlite":
        return type_coerce(func.replace(column, "Infinity", "1e999"), JSON)
    text = func.replace(func.replace(cast(column, Text), "-1e999", '"-Infinity"'), "1e999", '"Infinity"')
    return cast(text, JSON)


def json_list_elements(dialect_name: str, column):
    """The text elements of a JSON list column as a table with one column, `value`, for a
    correlated subquery (a run's tags): json_each on SQLite, json_array_elements_text on
    PostgreSQL."""
    from sqlalchemy import func

    if dialect_name == "sqlite":
        return func.json_each(column).table_valued("value")
    return func.json_array_elements_text(column).table_valued("value")


def byte_order(dialect_name: str, expression):
    """Text ordered by its bytes on both backends (SQLite's default; PostgreSQL's database
    collation would otherwise sort `a_b` against `ab` its own way)."""
    return expression.collate("C") if dialect_name == "postgresql" else expression


def comparable_time(dialect_name: str, expression):
    """A timestamp column (or a bound datetime) as something that compares and sorts in time
    order: SQLite keeps timestamps as text, written as `... 09:30:00.000000` by SQLAlchemy or
    `... 09:30:00+00:00` by other clients, so it is compared as julianday()."""
    from sqlalchemy import func

    return func.julianday(expression) if dialect_name == "sqlite" else expression


def without_disk_sync(session) -> None:
    """Let the current transaction commit without waiting for its disk sync (PostgreSQL:
    `synchronous_commit = off` for this transaction alone). For rows rewritten every beat
    (heartbeats, progress): a crash may lose the last few, which the next beat replaces;
    SQLite's WAL with synchronous=NORMAL already does not sync per commit."""
    if session.get_bind().dialect.name == "postgresql":
        session.exec(text("SET LOCAL synchronous_commit = off"))


def make_engine(url: str) -> Engine:
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = sqlite_path(parsed)
        folder = path.parent
        if not folder.is_dir():
            raise StoreError(f"cannot create database {path}: folder {folder} does not exist")
        if path.is_dir():
            raise StoreError(f"database {path} is a folder, not a file: give --db a file path")
        busy_ms = busy_timeout_ms()
        engine = _create(parsed, url, connect_args={"timeout": busy_ms / 1000}, json_serializer=json_text)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, record) -> None:
            cursor = dbapi_connection.cursor()
            # Switching to WAL rewrites the file header: only for a new or an inpaint-tui file,
            # so opening another application's database by mistake leaves it byte-identical.
            tables = {row[0] for row in cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables or "alembic_version" in tables:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            record.info["busy_timeout_ms"] = busy_ms
            cursor.execute("PRAGMA foreign_keys=ON")
            # NORMAL is safe with WAL: a crash never corrupts the file (power loss may drop the last commit).
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "checkout")
        def _wait_limit(dbapi_connection, record, _proxy) -> None:
            # Per checkout, so a pooled connection used by a brief write and then a durable one
            # gets each its own wait; a PRAGMA only when the wanted value changes.
            limit = _wait_limit_ms.get()
            wanted = busy_ms if limit is None else min(limit, busy_ms)
            if record.info.get("busy_timeout_ms") != wanted:
                dbapi_connection.execute(f"PRAGMA busy_timeout={wanted}")
                record.info["busy_timeout_ms"] = wanted

        return engine
    return _create(parsed, url, pool_pre_ping=True, json_serializer=json_text)


def _create(parsed: URL, url: str, **options) -> Engine:
    try:
        return create_engine(url, **options)
    except NoSuchModuleError:
        raise DatabaseArgumentError(_unknown_kind(parsed)) from None
    except ImportError as error:  # the dialect is known, its driver module is not installed
        package = DRIVER_PACKAGES.get(error.name or "", f"the driver for {parsed.drivername}")
        raise StoreError(
            f"database {shown(parsed)}: its driver is not installed ({error}); pip install {package}, "
            f"or name an installed driver in the URL (e.g. postgresql+psycopg://)"
        ) from None


def _unknown_kind(parsed: URL) -> str:
    from sqlalchemy.dialects import registry

    try:
        registry.load(parsed.get_backend_name())
    except NoSuchModuleError:
        return (f"--db {shown(parsed)}: unknown kind of database {parsed.get_backend_name()!r}; give a file path "
                "or a sqlite:///, postgresql+psycopg:// or mysql+pymysql:// URL")
    return (f"--db {shown(parsed)}: unknown driver {parsed.get_driver_name()!r} for {parsed.get_backend_name()}; "
            f"leave it out ({parsed.get_backend_name()}://) or name an installed one")


def full_disk_hint(url: str) -> str:
    """', the disk holding it is full (N bytes free): free space there' for an SQLite file on
    a full filesystem, else '': SQLite reports a full disk as "disk I/O error" when it cannot
    even create its -shm file, and the message alone does not say where to look."""
    import shutil

    try:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
            return ""
        folder = sqlite_path(parsed).parent
        free = shutil.disk_usage(folder).free
    except (ArgumentError, ValueError, OSError):
        return ""
    if free >= 1 << 20:  # SQLite needs a few pages: a MiB free is not "full"
        return ""
    return f"; the disk holding it is full ({free} bytes free in {folder}): free space there"


def describe(url: str, error: Exception) -> str:
    """One line for a database error: which database, what is wrong, what to do."""
    where = shown(url)
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    lowered = reason.lower()
    if "disk is full" in lowered or "disk i/o error" in lowered:
        hint = full_disk_hint(url)
        if hint:
            return f"database {where}: {reason}{hint}"
    if "file is not a database" in lowered or "not a database" in lowered:
        return (f"{where} is not an SQLite database (or its header is damaged: {reason}); check --db, "
                "or restore the file from a backup")
    if "malformed" in lowered or "corrupt" in lowered:
        return (f"database {where} is damaged ({reason}); nothing was changed: restore it from a backup, or "
                f"try `sqlite3 {where} .recover | sqlite3 recovered.db`")
    if "readonly" in lowered or "read-only" in lowered:
        return (f"database {where} is read-only ({reason}); this command writes: open it writable "
                "(file permissions, mount, no mode=ro in the URL)")
    if "no such column" in lowered or "no such table" in lowered or "has no column" in lowered:
        return (f"database {where} does not match its schema revision ({reason}): it was altered by hand or "
                "is damaged; restore it from a backup")
    if "unable to open" in lowered:
        return f"cannot open database {where}: {reason}; check the path and its permissions"
    # A database server (PostgreSQL through psycopg) that cannot be reached or refuses us.
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return f"cannot log in to database {where} ({reason}): check the user name and password in the URL"
    if re.search(r'database "[^"]*" does not exist', reason):
        return (f"database {where} does not exist on its server ({reason}): create it (createdb NAME) or check "
                "the name in the URL")
    if any(word in lowered for word in ("connection refused", "could not connect", "failed to resolve host",
                                        "could not translate host", "timeout expired", "no route to host")):
        return (f"cannot connect to database {where} ({reason}): check that the server is running and that the "
                "host and port in the URL are right")
    return f"database {where}: {reason}"


def is_unusable(error: Exception) -> bool:
    """Whether a database error is permanent for this database (damaged, read-only, schema
    drift) rather than transient (locked, a dropped connection): only those become StoreError
    inside sessions, so callers that retry on OperationalError still see transient ones."""
    if not isinstance(error, DBAPIError) or error.connection_invalidated:
        return False
    lowered = str(error.orig).lower()
    return any(word in lowered for word in ("not a database", "malformed", "corrupt", "readonly", "read-only",
                                            "no such column", "no such table", "has no column"))


MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config():
    """The Alembic configuration of the store's migrations (the connection to run them on goes
    in `config.attributes["connection"]`)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def schema_head() -> str:
    """The newest schema revision this version knows, read from the migration file names
    (`NNNN_name.py`, revision "NNNN"; tests check this equals Alembic's head) so the common
    case of opening an up-to-date database does not import Alembic and parse every script."""
    return max(path.name[:4] for path in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest migration (a no-op when it is already there). A database
    at this version's head costs two cheap reads (its revision and its catalogue of columns);
    Alembic is loaded only when the revision differs."""
    url = engine.url.render_as_string(hide_password=False)
    try:
        with engine.connect() as connection:
            columns = _catalogue(connection)
            if "alembic_version" in columns:
                current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
                if current == schema_head():
                    _check_schema(columns, url)
                    return
    except DBAPIError as error:
        raise StoreError(describe(url, error)) from None
    _migrate_with_alembic(engine, url)


def _migrate_with_alembic(engine: Engine, url: str) -> None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = alembic_config()
    scripts = ScriptDirectory.from_config(config)
    head = scripts.get_current_head()
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            if current is not None and current not in {script.revision for script in scripts.walk_revisions()}:
                from inpaint_tui import __version__

                writer = _written_by(connection)
                raise StoreError(
                    f"database {shown(url)} was written by {f'inpaint-tui {writer}' if writer else 'a newer inpaint-tui'} "
                    f"(schema revision {current}; this one, {__version__}, knows up to {head}): upgrade inpaint-tui "
                    "(pip install -U inpaint-tui) to use it"
                )
            if current is None and engine.dialect.name == "sqlite":  # a server database may hold others' tables
                _refuse_foreign(connection, url)
            if current == head:  # a head this version knows, reached by another route than the fast path
                _check_schema(_catalogue(connection), url)
                return
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            _record_writer(connection)
    except DBAPIError as error:
        raise StoreError(describe(url, error)) from None


def _catalogue(connection) -> dict[str, set[str]]:
    """Every table of the database (of the current schema on a server) with its column names,
    in one query."""
    if connection.dialect.name == "sqlite":
        rows = connection.execute(text(
            "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table'"
        ))
    else:
        rows = connection.execute(text(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        ))
    tables: dict[str, set[str]] = {}
    for table, column in rows:
        tables.setdefault(table, set()).add(column)
    return tables


def _written_by(connection) -> str | None:
    """The inpaint-tui version that last migrated this database, where it recorded one."""
    from inpaint_tui.store.tables import SCHEMA_WRITTEN_BY, StoreInfoRecord

    if not inspect(connection).has_table(StoreInfoRecord.__tablename__):  # written before 0005
        return None
    return store_info(connection, SCHEMA_WRITTEN_BY)


def store_info(connection, key: str) -> str | None:
    """One value of the store_info table (None when unset, or before migration 0005)."""
    from inpaint_tui.store.tables import StoreInfoRecord

    table = StoreInfoRecord.__table__
    return connection.execute(select(table.c.value).where(table.c.key == key)).scalar()


def set_store_info_once(connection, values: dict[str, str]) -> bool:
    """Insert these keys unless the first is already set (by a concurrent process too: the
    primary key decides); False when it was. Commits, as its own transaction."""
    from sqlalchemy.exc import IntegrityError

    from inpaint_tui.store.tables import StoreInfoRecord

    table = StoreInfoRecord.__table__
    try:
        with connection.begin():
            connection.execute(insert(table), [{"key": key, "value": value} for key, value in values.items()])
    except IntegrityError:
        return False
    return True


def delete_store_info(connection, keys) -> None:
    from inpaint_tui.store.tables import StoreInfoRecord

    table = StoreInfoRecord.__table__
    connection.execute(delete(table).where(table.c.key.in_(list(keys))))


def _record_writer(connection) -> None:
    from inpaint_tui import __version__
    from inpaint_tui.store.tables import SCHEMA_WRITTEN_BY, StoreInfoRecord

    delete_store_info(connection, [SCHEMA_WRITTEN_BY])
    connection.execute(insert(StoreInfoRecord.__table__).values(key=SCHEMA_WRITTEN_BY, value=__version__))


def _refuse_foreign(connection, url: str) -> None:
    """An SQLite file (or schema) with tables but no migration record is someone else's
    database: adding ours to it would mix two applications' data, so refuse."""
    tables = sorted(inspect(connection).get_table_names())
    if tables:
        listed = ", ".join(tables[:4]) + (", ..." if len(tables) > 4 else "")
        raise StoreError(
            f"database {shown(url)} is not an inpaint-tui database (it has tables {listed} and no schema "
            "revision); give --db a new file or an inpaint-tui database"
        )


def _check_schema(present: dict[str, set[str]], url: str) -> None:
    """Every table and column the models use exists in the catalogue read by `_catalogue`, so a
    hand-altered database fails here with one line, not in the middle of a command."""
    from inpaint_tui.store.tables import SQLModel

    for table in SQLModel.metadata.sorted_tables:
        if table.name not in present:
            raise StoreError(f"database {shown(url)} lacks table {table.name} although its schema revision says it "
                             "has it: it was altered by hand or is damaged; restore it from a backup")
        missing = [column.name for column in table.columns if column.name not in present[table.name]]
        if missing:
            raise StoreError(f"database {shown(url)}: table {table.name} lacks column(s) {', '.join(missing)} although "
                             "its schema revision says it has them: it was altered by hand; restore it from a backup")
