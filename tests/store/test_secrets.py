"""A password in a server URL reaches no record, log or command line: runs record their
command with it hidden, and worker processes get the URL through their environment (readable
by their own user only), not through argv (readable by every user of the box, `ps`)."""

import itertools
from pathlib import Path

import pytest

from inpaint_tui.store import Store
from tests import postgres
from tests.worker_processes import kill_workers, run_cli, wait_for

_names = itertools.count()


@pytest.mark.slow  # a detached worker on the tiny model, ~20 s
def test_a_password_in_the_database_url_is_recorded_nowhere(tmp_path):
    server = postgres.require()
    name = f"secret_{next(_names)}_{tmp_path.name[-8:].lower().replace('-', '_')}"
    server.execute(f"CREATE DATABASE {name} OWNER {postgres.PASSWORD_ROLE}")
    url = server.url(name, user=postgres.PASSWORD_ROLE, password=postgres.PASSWORD)
    data = tmp_path / "data"
    store = None
    try:
        assert run_cli(url, "samples", "import", "demo", data_dir=data).returncode == 0
        queued = run_cli(url, "run", "-t", "blended", "--steps", "1", "--metrics", "background", "--detach",
                         data_dir=data)
        assert queued.returncode == 0, queued.stderr
        run_id = int(queued.stdout.split()[-1])
        store = Store(url, data_dir=data)
        wait_for(lambda: any(w.pid for w in store.workers()), timeout=60)
        worker = next(w for w in store.workers() if w.pid)
        command_line = Path(f"/proc/{worker.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert "inpaint_tui.cli" in command_line and postgres.PASSWORD not in command_line, command_line
        wait_for(lambda: store.run(run_id).status == "finished", timeout=240, interval=0.2)

        recorded = store.run(run_id).command
        assert postgres.PASSWORD not in recorded and f"{postgres.PASSWORD_ROLE}:***@" in recorded, recorded
        logs = [path for path in data.rglob("*.log")]
        assert logs and all(postgres.PASSWORD not in path.read_text() for path in logs)
        shown = run_cli(url, "runs", "show", str(run_id), "--json", data_dir=data)
        assert shown.returncode == 0 and postgres.PASSWORD not in shown.stdout
    finally:
        if store is not None:
            kill_workers(store)
            store.close()
        server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
