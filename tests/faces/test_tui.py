"""The TUI's dashboard, runs and run-detail screens, navigation, dialogs, the command palette
and error handling, driven with Textual's Pilot on a database built by the test
(tests/tui_database.py: finished, running, failed, cancelled and queued runs)."""

import json
import subprocess
import sys
from pathlib import Path

from textual.widgets import DataTable
from textual_image.widget import HalfcellImage
from tui_helpers import until

from inpaint_tui.store import RunStatus, Store
from inpaint_tui.tui.app import InpaintApp

ROOT = Path(__file__).resolve().parents[2]


def make_app(store, **options) -> InpaintApp:
    options.setdefault("offer_demo", False)
    return InpaintApp(store, image_class=HalfcellImage, refresh_seconds=60, **options)


async def wait_for(pilot, condition, timeout: float = 10.0, what: str = "condition"):
    """Let the app work (thread loads, refreshes) until `condition()` holds."""
    await until(pilot, condition, what, timeout)


def rows(table: DataTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(index)] for index in range(table.row_count)]


async def test_dashboard_shows_active_runs_with_progress_workers_and_latest_results(tui_store):
    ids = tui_store.ids
    app = make_app(tui_store)
    async with app.run_test(size=(120, 40)) as pilot:
        active = app.screen.query_one("#active", DataTable)
        await wait_for(pilot, lambda: active.row_count == 2)
        running, queued = rows(active)
        assert running[0] == str(ids["running"]) and running[2] == "running"
        assert "3/6 chelsea-eyes" in running[7] and running[4] == "7/20" and running[5] == "3.5"
        assert queued[0] == str(ids["queued"]) and queued[2] == "queued"
        workers = rows(app.screen.query_one("#workers", DataTable))
        # every box: its host and its view of the data root (the GPU columns are for this box's GPUs only)
        assert workers == [[str(ids["worker"]), "gpu-box-1", "daemon", "running", "cuda:0", str(ids["running"]),
                            "alive", "-", "-", "-", "/mnt/lab/inpaint_data"]]
        recent = rows(app.screen.query_one("#recent", DataTable))
        assert [row[0] for row in recent] == [str(i) for i in sorted(
            [*ids["finished"], ids["failed"], ids["with_errors"], ids["cancelled"], *ids["swept"]], reverse=True)]
        stored = tui_store.run_metric_values([ids["finished"][0]])[ids["finished"][0]]["bg_mse"]
        vanilla = next(row for row in recent if row[0] == str(ids["finished"][0]))
        assert vanilla[4] == f"{stored:.4f}"

        # Live: progress written by a worker appears at the next refresh without any key press.
        claim = tui_store.run(ids["running"])
        tui_store.write_progress(ids["running"], 1, ids["worker"], phase="generating", samples_done=3, sample_count=6,
                                 sample_position=3, sample_name="rocket-launchpad", step=12, steps=20,
                                 steps_per_second=4.0, seconds_per_sample=5.0)
        app.screen.reload()
        await wait_for(pilot, lambda: rows(active)[0][4] == "12/20")
        assert "4/6 rocket-launchpad" in rows(active)[0][7] and claim.status == RunStatus.RUNNING


async def test_areas_are_one_key_away_and_help_lists_them(tui_store):
    app = make_app(tui_store)
    async with app.run_test(size=(120, 40)) as pilot:
        for key, screen in (("r", "RunsScreen"), ("d", "DashboardScreen"), ("r", "RunsScreen")):
            await pilot.press(key)
            await wait_for(pilot, lambda: type(app.screen).__name__ == screen)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        keys = {row.keys for _, rows in app.screen.sections for row in rows}
        assert set("dsnrlw") <= keys
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunsScreen")


async def test_runs_screen_filters_sorts_and_opens_a_run(tui_store):
    ids = tui_store.ids
    app = make_app(tui_store, start_screen="runs")
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(tui_store.runs()))
        assert app.screen.row_run_ids == sorted(app.screen.row_run_ids, reverse=True)  # newest first
        failed = next(row for row in rows(table) if row[0] == str(ids["with_errors"]))
        assert failed[1] == "finished_with_errors" and failed[3] == "5/6 (1 failed)"

        await pilot.press("slash")
        await pilot.press(*"blended")
        await wait_for(pilot, lambda: table.row_count == 4)
        assert {row[2] for row in rows(table)} == {"blended"}
        await pilot.press("enter")  # leaves the filter for the table
        for _ in range(3):
            await pilot.press("o")  # id -> status -> technique -> bg_mse
        assert app.screen.sort == "metric.bg_mse"
        values = [tui_store.run_metric_values([r])[r].get("bg_mse") for r in app.screen.row_run_ids]
        present = [v for v in values if v is not None]
        assert present == sorted(present) and values[len(present):] == [None] * (len(values) - len(present))

        top = app.screen.row_run_ids[0]
        table.move_cursor(row=0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunDetailScreen")
        assert app.screen.run_id == top


async def test_runs_screen_cancels_tags_notes_resumes_and_deletes(tui_store):
    ids = tui_store.ids
    app = make_app(tui_store, start_screen="runs")
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count > 0)

        async def select(run_id: int) -> None:
            table.move_cursor(row=app.screen.row_run_ids.index(run_id))
            await pilot.pause()

        await select(ids["queued"])
        await pilot.press("c")
        await wait_for(pilot, lambda: tui_store.run(ids["queued"]).status == RunStatus.CANCELLED)
        await select(ids["running"])
        await pilot.press("c")
        await wait_for(pilot, lambda: tui_store.run(ids["running"]).cancel_requested)
        assert tui_store.run(ids["running"]).status == RunStatus.RUNNING  # its worker stops it at the next step
        await wait_for(pilot, lambda: "(cancelling)" in rows(table)[app.screen.row_run_ids.index(ids["running"])][1])

        await select(ids["finished"][1])
        await pilot.press("t")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TextScreen")
        await pilot.press(*"paper best", "enter")
        await wait_for(pilot, lambda: tui_store.run(ids["finished"][1]).tags == ["best", "paper"])
        await pilot.press("N")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TextScreen")
        await pilot.press(*"clean seams", "enter")
        await wait_for(pilot, lambda: tui_store.run(ids["finished"][1]).note == "clean seams")
        await pilot.press("slash", *"paper", "enter")
        await wait_for(pilot, lambda: app.screen.row_run_ids == [ids["finished"][1]])
        await pilot.press("ctrl+a", "backspace")  # clear the filter again
        app.screen.query_one("#filter").value = ""
        await wait_for(pilot, lambda: table.row_count == len(tui_store.runs()))

        # A finished run cannot be resumed: said in a notification, nothing changes.
        await select(ids["finished"][0])
        await pilot.press("R")
        await wait_for(pilot, lambda: any("nothing to resume" in n.message for n in app._notifications))
        assert tui_store.run(ids["finished"][0]).status == RunStatus.FINISHED

        await select(ids["failed"])
        await pilot.press("x")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        await pilot.click("#no")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunsScreen")
        assert tui_store.run(ids["failed"]).status == RunStatus.FAILED
        await pilot.press("x")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        await pilot.click("#yes")
        await wait_for(pilot, lambda: ids["failed"] not in app.screen.row_run_ids)
        assert ids["failed"] not in [r.id for r in tui_store.runs()]


async def test_run_detail_shows_configuration_samples_images_errors_and_live_preview(tui_store):
    ids = tui_store.ids
    app = make_app(tui_store)
    async with app.run_test(size=(120, 45)) as pilot:
        app.open_run(ids["with_errors"])
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunDetailScreen" and app.screen.query("#samples"))
        screen = app.screen
        table = screen.query_one("#samples", DataTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        config = str(screen.query_one("#config").render())
        assert "latentpaint" in config and "reproduce  inpaint-tui run -t latentpaint" in config
        assert tui_store.run(ids["with_errors"]).config_hash[:16] in config
        statuses = [row[2] for row in rows(table)]
        assert statuses == ["done"] * 4 + ["failed", "done"]
        captions = lambda: [str(label.render()) for label in screen.query("ImageStrip Label")]  # noqa: E731
        await wait_for(pilot, lambda: captions() == ["input + mask", "mask", "output", "reference"])
        with_reference = tui_store.samples("demo")[0].reference_path is not None
        assert len(screen.query("ImageStrip HalfcellImage")) == 3 + with_reference  # a dash where there is none
        table.move_cursor(row=4)
        await wait_for(pilot, lambda: "RuntimeError: boom" in str(screen.query_one("#error").render()))

        await pilot.press("escape")
        app.open_run(ids["running"])
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunDetailScreen" and app.screen.run_id == ids["running"]
                       and app.screen.query("#samples"))
        screen = app.screen
        table = screen.query_one("#samples", DataTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        table.move_cursor(row=2)  # the sample in progress
        await wait_for(pilot, lambda: "live preview (step 5)" in captions())
        assert "sample 3/6 step 7/20" in str(screen.query_one("#summary").render())


async def test_a_failing_background_load_is_reported_once_not_raised(tui_store):
    app = make_app(tui_store)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_run(999)
        await wait_for(pilot, lambda: any("no run with id 999" in n.message for n in app._notifications))
        assert app.is_running and sum("no run with id 999" in n.message for n in app._notifications) == 1


async def test_command_palette_jumps_to_a_run(tui_store):
    ids = tui_store.ids
    app = make_app(tui_store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*f"run {ids['with_errors']}: latentpaint")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunDetailScreen")
        assert app.screen.run_id == ids["with_errors"]


async def test_an_empty_database_offers_the_demo(tmp_path):
    store = Store(tmp_path / "empty.db")
    app = InpaintApp(store, image_class=HalfcellImage, refresh_seconds=60)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: type(app.screen).__name__ == "FirstStartScreen")
        assert "no samples yet" in str(app.screen.query_one("Static").render())
        await pilot.click("#empty")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "DashboardScreen")
    assert store.sample_sets() == []


def test_the_tui_process_never_imports_torch(tui_store, tmp_path):
    """Every screen opened in a real app, in a fresh interpreter: no torch, no diffusers."""
    probe = f"""
import asyncio, json, sys
from textual_image.widget import HalfcellImage
from inpaint_tui.store import Store
from inpaint_tui.tui.app import InpaintApp

async def main():
    app = InpaintApp(Store({str(tui_store.url.removeprefix("sqlite:///"))!r}), image_class=HalfcellImage,
                     offer_demo=False, refresh_seconds=60)
    async with app.run_test(size=(120, 40)) as pilot:
        for key in "dsnrlw":
            await pilot.press(key)
            await pilot.pause(0.5)
        app.open_run({tui_store.ids["running"]})
        await pilot.pause(0.5)
        app.open_compare(*{tui_store.ids["finished"][:2]})
        await pilot.pause(0.5)
        print(json.dumps(sorted({{m.split(".")[0] for m in list(sys.modules)}})))  # threads may be importing

asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "textual" in loaded
    assert not loaded & {"torch", "diffusers", "transformers", "torchmetrics"}, loaded


async def test_deleting_a_marked_run_unmarks_it_here_or_in_another_process(tui_store):
    """`m` marks for a diff; a run deleted with `x` (or by another process, seen at the next
    full reload) leaves the marks and the status line."""
    ids = tui_store.ids
    app = make_app(tui_store, start_screen="runs")
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        table = screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(tui_store.runs()))
        shown = lambda: str(screen.query_one("#shown").render())  # noqa: E731
        kept, deleted, elsewhere = ids["finished"][0], ids["failed"], ids["cancelled"]
        for run_id in (kept, deleted, elsewhere):
            table.move_cursor(row=screen.row_run_ids.index(run_id))
            await pilot.press("m")
        assert screen.marked == [kept, deleted, elsewhere] and f"marked {kept}, {deleted}, {elsewhere}" in shown()

        table.move_cursor(row=screen.row_run_ids.index(deleted))
        await pilot.press("x")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        await pilot.click("#yes")
        await wait_for(pilot, lambda: deleted not in screen.row_run_ids)
        assert screen.marked == [kept, elsewhere]
        assert f"marked {kept}, {elsewhere} (D: diff)" in shown()

        from inpaint_tui.jobs.worker import STALE_AFTER_SECONDS

        tui_store.delete_run(elsewhere, stale_after=STALE_AFTER_SECONDS)  # as `runs delete` in another shell
        screen._full = True  # what FULL_EVERY seconds would bring
        screen.reload()
        await wait_for(pilot, lambda: elsewhere not in screen.row_run_ids)
        assert screen.marked == [kept] and f"marked {kept} (D: diff)" in shown()
