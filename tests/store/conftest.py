"""Fixtures of the store and jobs tests."""

import pytest

from inpaint_tui.jobs.samples import ensure_demo
from inpaint_tui.store import Store
from inpaint_tui.store.db import DATA_ENV
from tests import worker_processes
from tests.worker_processes import kill_workers


@pytest.fixture
def database(db, monkeypatch):
    """A fresh database with the demo set, on each backend: (what --db gets, store); worker
    processes started with worker_processes.ENV use its data folder; its workers are killed
    afterwards, whatever failed."""
    store = Store(db)
    monkeypatch.setitem(worker_processes.ENV, DATA_ENV, str(store.data_dir))
    ensure_demo(store)
    yield db, store
    kill_workers(store)
    store.close()


@pytest.fixture
def populated_store(db):
    """The TUI test database (tests/tui_database.py: finished, failed, running and queued runs,
    a sweep) built on each backend, with `.ids` naming its runs."""
    import tui_database

    store = tui_database.build(db)
    yield store
    store.close()
