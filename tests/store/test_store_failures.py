"""Databases and data folders that cannot be used: each kind through the real CLI gets one
line on stderr naming the file or URL, the documented exit code (2 for a --db that names no
kind of database, 1 for a store or data problem), no traceback, and nothing lost.

Every broken file is real (written with sqlite3 or as bytes), nothing is mocked; the
PostgreSQL cases use the real server the tests start (tests/postgres.py): a closed port, a
role whose password is checked (scram) given the wrong one, a database that was never created. Tests run as
root, where file permissions stop no write, so:
- a read-only database is opened through a read-only SQLite URI
  (`sqlite:///file:PATH?mode=ro&uri=true`): SQLite itself refuses every write, as it would for
  a file on a read-only mount;
- an unwritable data folder is /sys: sysfs refuses to create files even for root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

from inpaint_tui.cli import app

RUN = ["run", "-t", "blended", "--model", "tiny", "--steps", "1", "--metrics", "background"]
IMPORT = ["samples", "import", "demo", "--set", "again"]
LIST = ["runs", "list"]


@pytest.fixture(scope="session")
def good_db(tmp_path_factory) -> Path:
    """A real store with the demo set, closed (so no -wal file is left beside it)."""
    from inpaint_tui.jobs.samples import import_source
    from inpaint_tui.store import Store

    path = tmp_path_factory.mktemp("good") / "good.db"
    store = Store(path)
    import_source(store, "demo")
    store.close()
    assert not path.with_name("good.db-wal").exists()
    return path


def _copy(good: Path, tmp: Path, name: str = "broken.db") -> Path:
    target = tmp / name
    shutil.copyfile(good, target)
    return target


def _copy_with_data(good: Path, tmp: Path) -> Path:
    """The database and its data root beside it (a store moved whole)."""
    target = _copy(good, tmp)
    shutil.copytree(good.with_name(f"{good.stem}_data"), target.with_name(f"{target.stem}_data"))
    return target


def _copy_unregistered(good: Path, tmp: Path) -> Path:
    """A copy whose data root is not registered yet (as a store an older inpaint-tui wrote), so
    a --data-dir elsewhere is taken as the root: the folder's own problems are what is met."""
    target = _copy(good, tmp)
    _sql(target, "DELETE FROM store_info WHERE key LIKE 'data_root%'")
    return target


def _sql(path: Path, *statements: str) -> None:
    connection = sqlite3.connect(path)
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    connection.close()


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


@dataclass
class Case:
    """`setup(good_db, tmp)` makes the broken thing and returns (CLI arguments, the file that
    must be byte-identical afterwards or None, what the message must name)."""

    kind: str
    setup: Callable[[Path, Path], tuple[list[str], Path | None, str]]
    code: int
    says: str  # a fragment of the explanation


def text_file(good, tmp):
    path = tmp / "notes.db"
    path.write_text("these are my notes, not a database\n" * 20)
    return ["--db", str(path), *LIST], path, str(path)


def corrupted_pages(good, tmp):
    path = _copy(good, tmp)
    _overwrite(path, 4096, b"\xff" * 8192)  # page 2 onwards garbage, the header intact
    return ["--db", str(path), *LIST], path, str(path)


def truncated(good, tmp):
    path = tmp / "truncated.db"
    path.write_bytes(good.read_bytes()[:3000])  # cut inside the first page
    return ["--db", str(path), *LIST], path, str(path)


def bad_header(good, tmp):
    path = _copy(good, tmp)
    _overwrite(path, 0, b"NOT SQLITE FORMAT")
    return ["--db", str(path), *LIST], path, str(path)


def newer_version(good, tmp):
    path = _copy(good, tmp)
    # a revision this version does not know, written by a version that recorded itself
    _sql(path, "UPDATE alembic_version SET version_num = '9999'",
         "UPDATE store_info SET value = '7.2.0' WHERE key = 'schema_written_by'")
    return ["--db", str(path), *LIST], path, str(path)


def newer_version_unrecorded(good, tmp):
    path = _copy(good, tmp)
    _sql(path, "UPDATE alembic_version SET version_num = '9999'", "DROP TABLE store_info")
    return ["--db", str(path), *LIST], path, str(path)


def missing_column(good, tmp):
    path = _copy(good, tmp)
    _sql(path, "ALTER TABLE run DROP COLUMN note")
    return ["--db", str(path), *LIST], path, str(path)


def missing_table(good, tmp):
    path = _copy(good, tmp)
    _sql(path, "DROP TABLE run_metric")
    return ["--db", str(path), *LIST], path, str(path)


def foreign_database(good, tmp):
    path = tmp / "other_app.db"
    _sql(path, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", "INSERT INTO notes (body) VALUES ('mine')")
    return ["--db", str(path), *LIST], path, str(path)


def database_is_folder(good, tmp):
    path = tmp / "folder.db"
    path.mkdir()
    return ["--db", str(path), *LIST], None, str(path)


def database_folder_missing(good, tmp):
    path = tmp / "nowhere" / "x.db"
    return ["--db", str(path), *LIST], None, str(tmp / "nowhere")


def read_only_import(good, tmp):
    path = _copy_with_data(good, tmp)
    return ["--db", f"sqlite:///file:{path}?mode=ro&uri=true", *IMPORT], path, str(path)


def read_only_run(good, tmp):
    path = _copy_with_data(good, tmp)
    return ["--db", f"sqlite:///file:{path}?mode=ro&uri=true", *RUN], path, str(path)


def data_folder_is_file_import(good, tmp):
    path, data = _copy_unregistered(good, tmp), tmp / "data"
    data.write_text("a file where the data folder should be")
    return ["--db", str(path), "--data-dir", str(data), *IMPORT], path, str(data)


def data_folder_is_file_run(good, tmp):
    path, data = _copy_unregistered(good, tmp), tmp / "data"
    data.write_text("a file where the data folder should be")
    return ["--db", str(path), "--data-dir", str(data), *RUN], path, str(data)


def data_folder_under_file(good, tmp):
    path, blocker = _copy_unregistered(good, tmp), tmp / "blocker"
    blocker.write_text("a file where a parent folder should be")
    return ["--db", str(path), "--data-dir", str(blocker / "images"), *IMPORT], path, str(blocker)


def unwritable_data_folder(good, tmp):
    path = _copy_unregistered(good, tmp)
    return ["--db", str(path), "--data-dir", "/sys", *IMPORT], path, "/sys"


def unwritable_data_folder_run(good, tmp):
    path = _copy_unregistered(good, tmp)
    return ["--db", str(path), "--data-dir", "/sys/inpaint_data", *RUN], path, "/sys/inpaint_data"


def unknown_dialect(good, tmp):
    return ["--db", "foo://x", *LIST], None, "foo://x"


def unknown_driver(good, tmp):
    url = "postgresql+nosuchdriver://user@localhost/db"
    return ["--db", url, *LIST], None, url


def driver_not_installed(good, tmp):
    url = "mysql://user:secret@localhost/db"  # mysqlclient (MySQLdb) is not installed here
    return ["--db", url, *LIST], None, "mysql://user:***@localhost/db"


def unparseable_url(good, tmp):
    url = "postgresql://user:secret@localhost:notaport/db"
    return ["--db", url, *LIST], None, "postgresql://user:***@localhost:notaport/db"


def postgres_unreachable(good, tmp):
    from tests import postgres

    url = postgres.require().url("inpaint", password="secret", port=postgres.closed_port())
    return ["--db", url, *LIST], None, url.replace(":secret@", ":***@")


def postgres_wrong_password(good, tmp):
    from tests import postgres

    url = postgres.require().url("postgres", user=postgres.PASSWORD_ROLE, password="secret")  # not its password
    return ["--db", url, *LIST], None, url.replace(":secret@", ":***@")


def postgres_missing_database(good, tmp):
    from tests import postgres

    url = postgres.require().url("never_created", password="secret")
    return ["--db", url, *LIST], None, url.replace(":secret@", ":***@")


CASES = [
    Case("text file as --db", text_file, 1, "not an SQLite database"),
    Case("corrupted pages", corrupted_pages, 1, "damaged"),
    Case("truncated file", truncated, 1, "damaged"),
    Case("bad header", bad_header, 1, "not an SQLite database"),
    Case("newer version", newer_version, 1, "written by inpaint-tui 7.2.0 (schema revision 9999; this one"),
    Case("newer version that did not record itself", newer_version_unrecorded, 1,
         "written by a newer inpaint-tui (schema revision 9999; this one"),
    Case("missing column", missing_column, 1, "lacks column(s) note"),
    Case("missing table", missing_table, 1, "lacks table run_metric"),
    Case("another application's database", foreign_database, 1, "not an inpaint-tui database"),
    Case("database path is a folder", database_is_folder, 1, "is a folder"),
    Case("database folder missing", database_folder_missing, 1, "does not exist"),
    Case("read-only database, import", read_only_import, 1, "read-only"),
    Case("read-only database, run", read_only_run, 1, "read-only"),
    Case("data folder is a file, import", data_folder_is_file_import, 1, "is a file, not a folder"),
    Case("data folder is a file, run", data_folder_is_file_run, 1, "is a file, not a folder"),
    Case("data folder under a file", data_folder_under_file, 1, "is a file, not a folder"),
    Case("unwritable data folder, import", unwritable_data_folder, 1, "cannot write to data folder"),
    Case("unwritable data folder, run", unwritable_data_folder_run, 1, "cannot write to data folder"),
    Case("unknown URL dialect", unknown_dialect, 2, "unknown kind of database 'foo'"),
    Case("unknown driver name", unknown_driver, 2, "unknown driver 'nosuchdriver'"),
    Case("driver not installed", driver_not_installed, 1, "pip install mysqlclient"),
    Case("unparseable URL", unparseable_url, 2, "not a database path or URL"),
    Case("PostgreSQL server unreachable", postgres_unreachable, 1, "cannot connect to database"),
    Case("PostgreSQL wrong password", postgres_wrong_password, 1, "cannot log in to database"),
    Case("PostgreSQL database does not exist", postgres_missing_database, 1, "does not exist on its server"),
]


def _sys_accepts_files() -> bool:
    probe = Path(f"/sys/.inpaint-probe-{os.getpid()}")
    try:
        probe.write_bytes(b"")
    except OSError:
        return False
    probe.unlink()
    return True


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", CASES, ids=[case.kind for case in CASES])
def test_an_unusable_store_is_one_line_naming_it_and_loses_nothing(case, good_db, tmp_path, monkeypatch):
    if case.setup in (unwritable_data_folder, unwritable_data_folder_run) and _sys_accepts_files():
        pytest.skip("/sys accepts files here, so it is no unwritable folder")
    monkeypatch.delenv("INPAINT_TUI_DB", raising=False)
    monkeypatch.delenv("INPAINT_TUI_DATA", raising=False)
    args, keep, names = case.setup(good_db, tmp_path)
    before = _digest(keep) if keep is not None else None
    blockers = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p != keep}

    result = CliRunner().invoke(app, args)

    output = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    assert result.exit_code == case.code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0] and case.says in lines[0], lines[0]
    assert "secret" not in output  # a password in the URL is never echoed
    if keep is not None:  # nothing lost: the database is byte-identical, no journal left beside it
        assert _digest(keep) == before
        assert not keep.with_name(keep.name + "-wal").exists() or keep.with_name(keep.name + "-wal").stat().st_size == 0
    for path, data in blockers.items():  # files standing where folders were expected are untouched
        assert path.read_bytes() == data


def test_a_good_database_still_opens_through_a_read_only_uri_for_reading(good_db, tmp_path):
    """Reading commands work on a read-only database; only writes are refused."""
    path = _copy(good_db, tmp_path)
    before = _digest(path)
    result = CliRunner().invoke(app, ["--db", f"sqlite:///file:{path}?mode=ro&uri=true", "samples", "list"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip()  # the demo samples are listed
    assert _digest(path) == before
