"""Exports (inpaint_tui/jobs/export.py, `inpaint-tui export`): every format read back gives
the stored values, checked against the store's own run details."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from inpaint_tui.read.export import FORMATS, ExportError, read_export, summary_path, write_export
from inpaint_tui.store import RunStatus


def _ended(store) -> list[int]:
    return [run.id for run in store.runs(statuses=list(RunStatus.ENDED))]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_round_trips_the_stored_values(tui_store, tmp_path, fmt):
    store = tui_store
    run_ids = _ended(store)
    samples_path, runs_path = write_export(store, run_ids, tmp_path / f"results.{fmt}")
    assert runs_path == tmp_path / f"results.runs.{fmt}" == summary_path(samples_path)
    sample_rows, run_rows = read_export(samples_path), read_export(runs_path)

    details = {run_id: store.run_detail(run_id) for run_id in run_ids}
    assert [row["run_id"] for row in run_rows] == run_ids
    assert [(row["run_id"], row["sample_id"]) for row in sample_rows] == [
        (run_id, sample.sample_id) for run_id in run_ids for sample in details[run_id].samples]
    assert len({tuple(row) for row in sample_rows}) == 1  # every row has the same columns
    metric_columns = {column for column in sample_rows[0] if column.startswith("metric.")}
    assert metric_columns  # the test database has per-sample metrics
    compared = 0
    for row in sample_rows:
        detail = details[row["run_id"]]
        sample = next(s for s in detail.samples if s.sample_id == row["sample_id"])
        assert (row["technique"], row["sample_name"], row["status"], row["seed"]) == (
            detail.run.technique, sample.sample_name, sample.status, sample.seed)
        for column in metric_columns:
            stored = sample.metrics.get(column.removeprefix("metric."))
            assert _same(row[column], stored), (column, row[column], stored)
            compared += stored is not None
        for name, value in detail.run.params.items():
            assert row[f"param.{name}"] == (json.dumps(value) if isinstance(value, (list, dict)) else value)
    assert compared > 20
    for row in run_rows:
        detail = details[row["run_id"]]
        assert (row["run_status"], row["done_count"], row["config_hash"]) == (
            detail.run.status, detail.run.done_count, detail.run.config_hash)
        assert json.loads(row["tags"]) == list(detail.run.tags)
        for name, summary in detail.summaries.items():
            assert _same(row[f"metric.{name}"], detail.metrics.get(name))
            for part in ("std", "ci_low", "ci_high", "n", "note"):
                assert _same(row[f"metric.{name}.{part}"], getattr(summary, part)), (name, part)
    assert any(row["metric.bg_mse.ci_low"] is not None for row in run_rows)


def test_export_keeps_awkward_values(populated_store, tmp_path):
    """A note with a comma, quotes and a newline, quoted and non-ASCII tags, and an infinite
    PSNR survive the store (on each backend) and every format; text columns come back as text."""
    from inpaint_tui.store import MetricSummary

    store = populated_store
    run_id = store.ids["finished"][0]
    store.annotate_run(run_id, tags=['"quoted"', "ünïcode"], note="line one,\nline \"two\"")
    store.record_run_metrics(run_id, {"bg_psnr": MetricSummary(value=math.inf, n=6)})
    for fmt in FORMATS:
        _, runs_path = write_export(store, [run_id], tmp_path / f"one.{fmt}")
        (row,) = read_export(runs_path)
        assert row["note"] == "line one,\nline \"two\""
        assert json.loads(row["tags"]) == ['"quoted"', "ünïcode"]
        assert row["metric.bg_psnr"] == math.inf
        assert isinstance(row["config_hash"], str)


def test_export_refuses_an_unknown_format_and_nothing_to_export(tui_store, tmp_path):
    with pytest.raises(ExportError, match="--format"):
        write_export(tui_store, _ended(tui_store), tmp_path / "out.xlsx")
    with pytest.raises(ExportError, match="no runs"):
        write_export(tui_store, [], tmp_path / "out.csv")


def _cli(*args, db):
    return subprocess.run([sys.executable, "-m", "inpaint_tui.cli", "--db", str(db), *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_export_runs_and_a_sweep(tui_store, tmp_path):
    db = tmp_path / "experiments.db"
    sweep = tui_store.sweep(tui_store.ids["sweep"])
    done = _cli("export", "--sweep", str(sweep.id), "--out", str(tmp_path / "sweep.csv"), db=db)
    assert done.returncode == 0, done.stderr
    assert {row["run_id"] for row in read_export(tmp_path / "sweep.runs.csv")} == set(sweep.run_ids)
    assert "sweep.runs.csv" in done.stdout

    run_id = tui_store.ids["finished"][0]
    done = _cli("export", str(run_id), "--format", "jsonl", "--out", str(tmp_path / "one.txt"), db=db)
    assert done.returncode == 0, done.stderr
    assert [row["run_id"] for row in read_export_jsonl(tmp_path / "one.txt")] == [run_id] * 6

    missing = _cli("export", "99999", "--out", str(tmp_path / "x.csv"), db=db)
    assert missing.returncode != 0 and "99999" in missing.stderr
    nothing = _cli("export", "--out", str(tmp_path / "x.csv"), db=db)
    assert nothing.returncode == 2 and "RUN" in nothing.stderr
    wrong = _cli("export", str(run_id), "--out", str(tmp_path / "x.xlsx"), db=db)
    assert wrong.returncode == 2 and "--format" in wrong.stderr


def read_export_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_tui_exports_the_runs_each_screen_shows(tui_store, tmp_path):
    """`E` on the runs screen and on the leaderboard writes the runs they show, in their order."""
    from textual.widgets import DataTable, Input
    from textual_image.widget import HalfcellImage

    from inpaint_tui.tui.app import InpaintApp

    app = InpaintApp(tui_store, image_class=HalfcellImage, refresh_seconds=60, offer_demo=False)

    async def wait_for(pilot, condition, what):
        for _ in range(300):
            if condition():
                return
            await pilot.pause(0.05)
        raise AssertionError(f"{what} not met")

    async def export_from(pilot, screen_name, out):
        await wait_for(pilot, lambda: type(app.screen).__name__ == screen_name, f"{screen_name} shown")
        screen = app.screen
        await wait_for(pilot, lambda: screen.query(DataTable).first().row_count > 0, "rows")
        await pilot.pause(0.3)
        await pilot.press("E")
        await wait_for(pilot, lambda: app.screen.query("#text"), "the export dialog")
        app.screen.query_one("#text", Input).value = str(out)
        await pilot.press("enter")
        await wait_for(pilot, lambda: summary_path(out).exists(), f"{out} written")
        await wait_for(pilot, lambda: not [w for w in screen.workers if w.group == "export" and not w.is_finished],
                       "the export worker done")
        return screen

    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("r")
        runs_screen = await export_from(pilot, "RunsScreen", tmp_path / "runs.jsonl")
        shown = [int(row.key.value) for row in runs_screen.query_one("#runs", DataTable).ordered_rows]
        assert [row["run_id"] for row in read_export(tmp_path / "runs.runs.jsonl")] == shown
        assert len(shown) == len(tui_store.runs())

        await pilot.press("l")
        board = await export_from(pilot, "LeaderboardScreen", tmp_path / "board.csv")
        ranked = [run_id for ids in board.view.members for run_id in ids]
        assert [row["run_id"] for row in read_export(tmp_path / "board.runs.csv")] == ranked
        finished = [r.id for r in tui_store.runs(statuses=[RunStatus.FINISHED, RunStatus.FINISHED_WITH_ERRORS])]
        assert sorted(ranked) == sorted(finished)


async def test_tui_export_to_a_bad_name_is_one_notification(tui_store, tmp_path):
    from textual.widgets import DataTable, Input
    from textual_image.widget import HalfcellImage

    from inpaint_tui.tui.app import InpaintApp

    app = InpaintApp(tui_store, image_class=HalfcellImage, refresh_seconds=60, offer_demo=False, start_screen="runs")
    async with app.run_test(size=(140, 40)) as pilot:
        for _ in range(200):
            if type(app.screen).__name__ == "RunsScreen" and app.screen.query_one("#runs", DataTable).row_count:
                break
            await pilot.pause(0.05)
        await pilot.press("E")
        await pilot.pause(0.2)
        app.screen.query_one("#text", Input).value = str(tmp_path / "results.xlsx")
        await pilot.press("enter")
        for _ in range(200):
            if any(n.title == "export failed" for n in app._notifications):
                break
            await pilot.pause(0.05)
        (failure,) = [n for n in app._notifications if n.title == "export failed"]  # one, no traceback
        assert "--format" in failure.message and app.is_running
        assert not list(tmp_path.glob("results*"))
