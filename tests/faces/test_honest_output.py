"""What the CLI says is what happened (issue 16, "Honest output"): missing runs are named,
printed hints are commands that work, progress is current and reaches non-terminal stderr,
the compare verdict follows its stated rule, unavailable models are refused before anything is
queued, and tables fit 80 columns without cutting numbers."""

from __future__ import annotations

import shlex
import signal

import pytest
from typer.testing import CliRunner

from inpaint_tui.cli import app
from tests.conftest import queue


@pytest.fixture
def cli(db):
    runner = CliRunner()

    def invoke(*args: str, expect: int | None = 0, env=None):
        result = runner.invoke(app, ["--db", str(db), *args], env=env)
        if expect is not None:
            assert result.exit_code == expect, (f"exit {result.exit_code}\nstdout: {result.stdout}\n"
                                                f"stderr: {result.stderr}\n{result.exception!r}")
        return result

    return invoke


@pytest.fixture
def demo_store(store):
    from inpaint_tui.jobs.samples import ensure_demo

    ensure_demo(store)
    return store


# --- 1. a missing run is one line naming it, exit 1 ---------------------------------------

@pytest.mark.parametrize("args", [["compare", "{run}", "99"], ["compare", "99", "{run}"], ["runs", "show", "99"],
                                  ["runs", "watch", "{run}", "99"], ["runs", "cancel", "99"], ["runs", "resume", "99"],
                                  ["runs", "tag", "99", "x"], ["runs", "note", "99", "x"],
                                  ["runs", "delete", "99", "--yes"], ["metrics", "compute", "99"],
                                  ["export", "99", "-o", "{tmp}/x.csv"], ["report", "99", "-o", "{tmp}/report"]])
def test_every_command_taking_run_ids_names_a_missing_run_and_exits_1(cli, demo_store, tmp_path, args):
    run_id = queue(demo_store, model="tiny", steps=2)
    result = cli(*[a.format(run=run_id, tmp=tmp_path) for a in args], expect=1)
    assert result.stderr.strip().splitlines() == ["error: no run with id 99"]
    assert result.stdout == ""


# --- 2. the watch hint is a command that works --------------------------------------------

def test_the_detached_sweeps_watch_hint_runs_as_printed(cli, demo_store, monkeypatch):
    import inpaint_tui.jobs.launch as launch

    # No worker is started: the hint, not the execution, is under test.
    monkeypatch.setattr(launch, "ensure_worker", lambda store, device=None: (7, False))
    monkeypatch.setattr(launch, "serving_message", lambda store, worker_id, started: f"queued for worker {worker_id}")
    result = cli("sweep", "-t", "blended", "-p", "blend_start=0,0.25,0.5", "--model", "tiny", "--steps", "2",
                 "--metrics", "background", "--detach", "--json")
    import json

    new = json.loads(result.stdout)["new"]
    assert len(new) == 3
    hint = result.stderr.split("follow with `")[1].split("`")[0]
    words = shlex.split(hint)
    assert words[:3] == ["inpaint-tui", "runs", "watch"]
    for run_id in new:  # so that the watch ends
        demo_store.request_cancel(run_id)
    watched = cli(*words[1:], expect=1)  # 1: the runs were cancelled; a usage error would be 2
    assert "Invalid value" not in watched.stderr
    for run_id in new:
        assert f"run {run_id} " in watched.stderr


# --- 4. sample boundaries are published at once -------------------------------------------

@pytest.mark.sqlite_only(reason="worker-process timing does not depend on the backend")
def test_the_progress_row_names_a_sample_as_soon_as_it_starts(db, demo_store):
    from inpaint_tui.jobs.execute import CRASH_ENV
    from tests.worker_processes import ENV, queue_small, start_worker

    run_id = queue_small(demo_store, steps=3)
    # The worker dies in the first step callback of the second sample, before that step's
    # own (throttled) progress write: what the row says then is what begin_sample wrote.
    worker = start_worker(db, "--once", env={**ENV, CRASH_ENV: "step:1:1"})
    output = worker.communicate(timeout=300)[0]
    assert worker.returncode == -signal.SIGKILL, output
    second = demo_store.run_detail(run_id).samples[1]
    progress = demo_store.run_progress(run_id)
    assert (progress.sample_position, progress.sample_name, progress.samples_done) == (1, second.sample_name, 1)
