"""Fixtures of the store and jobs tests."""

import pytest

from inpaint_tui.jobs.samples import ensure_demo
from inpaint_tui.store import Store
from tests.worker_processes import kill_workers


@pytest.fixture
def database(tmp_path):
    """A fresh database with the demo set: (path, store); its workers are killed afterwards,
    whatever failed."""
    db = tmp_path / "experiments.db"
    store = Store(db)
    ensure_demo(store)
    yield db, store
    kill_workers(store)
    store.close()
