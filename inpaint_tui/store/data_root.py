"""The data root: the one folder of images a database belongs to, known to the database.

Its identity is a random id written twice, in store_info (`data_root_id`) and in a marker
file at the root of the folder (`.inpaint-tui-root`). The path may differ per box (each
mounts the share where it likes); the id may not. The first writer that meets a database
without an id registers one (with the path and host it saw, as a hint for messages and as
the default path of a server database); every later writer checks that its folder carries
the same id, so a worker whose share is not mounted, or whose data folder is some other
directory, refuses to start instead of failing every sample.

The database is written first, then the marker: two processes registering at once agree
through store_info's primary key, and the loser finds the winner's id.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from inpaint_tui.store.db import (
    DatabaseArgumentError,
    StoreError,
    delete_store_info,
    describe,
    set_store_info_once,
    shown,
    store_info,
)

MARKER = ".inpaint-tui-root"
ID_KEY, PATH_KEY, HOST_KEY = "data_root_id", "data_root_path", "data_root_host"
MARKER_WAIT_SECONDS = 1.0  # a registration in flight elsewhere writes its marker within this


class DataRootError(StoreError):
    """A data folder that is not (or cannot be shown to be) the database's data root."""


def registered(engine: Engine) -> dict[str, str | None]:
    with engine.connect() as connection:
        return {key: store_info(connection, key) for key in (ID_KEY, PATH_KEY, HOST_KEY)}


def registered_path(engine: Engine) -> Path | None:
    """The data root's path as the registering box saw it: the default for a server database
    given no --data-dir (right where every box mounts the share at the same place)."""
    path = registered(engine)[PATH_KEY]
    return None if path is None else Path(path)


def no_data_root(url: str) -> DatabaseArgumentError:
    return DatabaseArgumentError(
        f"database {shown(url)} has no data root yet: pass --data-dir PATH (or set INPAINT_TUI_DATA) naming a "
        "folder every box mounts; images are never put in the current directory"
    )


def read_marker(folder: Path) -> str | None:
    try:
        return (folder / MARKER).read_text().strip() or None
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except OSError as error:
        raise DataRootError(f"cannot read data root {folder} ({error.strerror or error}): check that the share is "
                            "mounted and readable by this user, or pass --data-dir") from None


def _write_marker_once(folder: Path, root_id: str) -> None:
    """Create the marker unless it exists (a hard link is atomic and never replaces)."""
    temporary = folder / f".{MARKER}.{os.getpid()}.tmp"
    try:
        temporary.write_text(root_id + "\n")
        os.link(temporary, folder / MARKER)
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)


def _not_ours(folder: Path, url: str, info: dict[str, str | None], found: str | None) -> DataRootError:
    what = f"its marker {MARKER} holds {found}" if found else f"it has no {MARKER} marker"
    if not folder.exists():
        what = "it does not exist"
    return DataRootError(
        f"data folder {folder} is not the data root of database {shown(url)} ({what}; the root has id "
        f"{info[ID_KEY]}, registered as {info[PATH_KEY]} on {info[HOST_KEY]}): mount the shared data root there, "
        "or pass --data-dir the folder where this box sees it"
    )


def check_exists(engine: Engine, url: str, folder: Path) -> None:
    """Before creating the folder: a registered root is never created afresh (an unmounted
    share would silently become an empty local folder)."""
    info = registered(engine)
    if info[ID_KEY] is not None and not folder.is_dir():
        raise _not_ours(folder, url, info, None)


def verify_or_register(engine: Engine, url: str, folder: Path) -> str:
    """The data root id, after checking that `folder` (existing, writable) carries it;
    registers the folder as the root where the database has none yet."""
    info = registered(engine)
    if info[ID_KEY] is None:
        found = read_marker(folder)
        if found is not None:
            raise DataRootError(
                f"data folder {folder} is the data root of another database (id {found} in {folder / MARKER}): "
                f"pass --data-dir a folder of its own for database {shown(url)}"
            )
        new_id = uuid.uuid4().hex
        try:
            with engine.connect() as connection:
                won = set_store_info_once(connection, {ID_KEY: new_id, PATH_KEY: str(folder),
                                                       HOST_KEY: socket.gethostname()})
        except DBAPIError as error:  # e.g. a read-only database: one line naming it
            raise StoreError(describe(url, error)) from None
        if won:
            try:
                _write_marker_once(folder, new_id)
            except OSError as error:  # e.g. a full disk: leave nothing registered that no folder carries
                with engine.begin() as connection:
                    delete_store_info(connection, [ID_KEY, PATH_KEY, HOST_KEY])
                raise DataRootError(f"cannot write {folder / MARKER} ({error.strerror or error}): pass --data-dir a "
                                    "writable folder, or free space there") from None
        info = registered(engine)  # the loser of a concurrent registration waits for the winner's marker
    deadline = time.monotonic() + MARKER_WAIT_SECONDS
    while (found := read_marker(folder)) is None and time.monotonic() < deadline:
        time.sleep(0.1)  # another process may have registered a moment ago and be writing it
    if found != info[ID_KEY]:
        raise _not_ours(folder, url, info, found)
    return found
