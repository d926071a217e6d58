"""The samples screen (sets, filter, preview, marking and building a set, jumping to a
sample) and the new-run form (schema-generated fields, validation, sweeps, prefill, and
submitting to a real background worker)."""

from __future__ import annotations

import os
import signal
import sys

import pytest
from textual.widgets import DataTable, Input, Label, Select, SelectionList, Static
from textual_image.widget import HalfcellImage
from tui_helpers import until

from engine.techniques import get_technique, technique_names
from inpaint_tui.store import RunStatus, SampleStatus, Store, StoreError
from inpaint_tui.tui.app import InpaintApp
from inpaint_tui.tui.base import ImageStrip, selected_key
from inpaint_tui.tui.forms import format_value
from engine.techniques import estimate_unet_calls
from inpaint_tui.tui.screens.new_run import NewRunScreen
from inpaint_tui.tui.screens.samples import SamplesScreen


def _cells(table, key: str) -> list[str]:
    """A row's cells as text (the screens put rich Text in cells, never markup strings)."""
    return [str(cell) for cell in table.get_row(key)]

def make_app(store, start_screen: str | None = None) -> InpaintApp:
    return InpaintApp(store, image_class=HalfcellImage, offer_demo=False, refresh_seconds=60,
                      start_screen=start_screen)


def record_notifications(app: InpaintApp) -> list[str]:
    messages: list[str] = []
    notify = app.notify

    def recording(message, *args, **kwargs):
        messages.append(str(message))
        return notify(message, *args, **kwargs)

    app.notify = recording
    return messages


async def wait_for(pilot, condition, *, timeout: float = 15.0, what: str = "the condition", step: float = 0.05):
    await until(pilot, condition, what, timeout, step)


def sample_rows(screen: SamplesScreen) -> list[str]:
    table = screen.query_one("#samples", DataTable)
    return [str(table.get_row(key)[2]) for key in (row.value for row in table.rows)]


async def open_samples(pilot, app) -> SamplesScreen:
    def ready() -> bool:
        tables = app.screen.query("#samples") if isinstance(app.screen, SamplesScreen) else []
        return bool(tables) and tables.first(DataTable).row_count > 0

    await wait_for(pilot, ready, what="the samples table")
    return app.screen


async def type_into(pilot, widget: Input, text: str) -> None:
    widget.focus()
    widget.value = ""
    await pilot.pause()
    await pilot.press(*text)
    await pilot.pause()


# --- the samples screen --------------------------------------------------------------------


async def test_samples_screen_lists_sets_and_filters(tui_store):
    app = make_app(tui_store, "samples")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_samples(pilot, app)
        sets = screen.query_one("#sets", DataTable)
        assert [row.value for row in sets.rows] == ["all", "set:demo"]
        assert _cells(sets, "set:demo") == ["demo", "6"]
        assert _cells(sets, "all") == ["all samples", "6"]

        sets.move_cursor(row=1)
        await wait_for(pilot, lambda: screen.set_key == "set:demo", what="the demo set")
        demo = tui_store.samples("demo")
        assert sample_rows(screen) == [s.name for s in demo]
        first = _cells(screen.query_one("#samples", DataTable), str(demo[0].id))
        assert first[:5] == ["", str(demo[0].id), demo[0].name, demo[0].prompt, f"{demo[0].width}×{demo[0].height}"]
        assert first[5] == "demo"

        # Substring of the name or the prompt, whatever the case.
        await type_into(pilot, screen.query_one("#filter", Input), "COFFEE")
        assert sample_rows(screen) == ["coffee-cup"]
        await type_into(pilot, screen.query_one("#filter", Input), "tabby")
        assert sample_rows(screen) == ["chelsea-eyes"]
        await type_into(pilot, screen.query_one("#filter", Input), "no such sample")
        assert sample_rows(screen) == []
        screen.query_one("#filter", Input).value = ""
        await pilot.pause()
        assert len(sample_rows(screen)) == 6


async def test_samples_preview_follows_the_cursor(tui_store):
    app = make_app(tui_store, "samples")
    samples = tui_store.samples()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_samples(pilot, app)
        strip = screen.query_one("#preview", ImageStrip)

        def captions() -> list[str]:
            return [str(label.render()) for label in strip.query(Label)]

        for index in (0, 3):
            sample = samples[index]
            screen.query_one("#samples", DataTable).move_cursor(row=index)
            expected = ["image + mask", "mask"] + (["reference"] if sample.reference_path else [])
            await wait_for(pilot, lambda: screen._previewed == sample.id and captions() == expected
                           and len(strip.query(HalfcellImage)) == len(expected), what=f"the preview of {sample.name}")
            assert sample.prompt in str(screen.query_one("#prompt", Static).render())


async def test_marking_two_samples_and_building_a_set(tui_store):
    from inpaint_tui.tui.screens.dialogs import TextScreen

    app = make_app(tui_store, "samples")
    samples = tui_store.samples()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_samples(pilot, app)
        table = screen.query_one("#samples", DataTable)
        table.focus()
        await pilot.press("space", "down", "down", "space")
        assert list(screen.marked) == [samples[0].id, samples[2].id]
        assert str(screen.query_one("#marked", Label).render()) == "2 marked"
        assert _cells(table, str(samples[0].id))[0] == "●" and _cells(table, str(samples[1].id))[0] == ""
        # space again unmarks; marking it once more puts it back
        await pilot.press("space")
        assert list(screen.marked) == [samples[0].id]
        await pilot.press("space")

        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, TextScreen), what="the set name dialog")
        await pilot.press(*"picked", "enter")
        await wait_for(pilot, lambda: "picked" in [s.name for s in tui_store.sample_sets()], what="the new set")
        assert tui_store.set_sample_ids("picked") == [samples[0].id, samples[2].id]
        # The screen shows the new set, with its 2 samples and no marks left.
        await wait_for(pilot, lambda: screen.set_key == "set:picked" and len(sample_rows(screen)) == 2,
                       what="the new set on screen")
        assert sample_rows(screen) == [samples[0].name, samples[2].name]
        assert selected_key(screen.query_one("#sets", DataTable)) == "set:picked"
        assert screen.marked == {}
        assert _cells(screen.query_one("#sets", DataTable), "set:picked") == ["picked", "2"]

        # b with nothing marked asks for marks instead of a name
        await pilot.press("b")
        await pilot.pause()
        assert not isinstance(app.screen, TextScreen)


def test_create_sample_set_appends_in_order_and_checks(tui_store):
    ids = [s.id for s in tui_store.samples()]
    report = tui_store.create_sample_set(" mine ", [ids[4], ids[1]])
    assert (report.set_name, report.added, report.already_present, report.total_in_set) == ("mine", 2, 0, 2)
    report = tui_store.create_sample_set("mine", [ids[1], ids[0], ids[0]])
    assert (report.added, report.already_present, report.total_in_set) == (1, 1, 3)
    assert tui_store.set_sample_ids("mine") == [ids[4], ids[1], ids[0]]
    assert tui_store.set_sample_ids("demo") == ids  # other sets untouched
    with pytest.raises(StoreError, match="non-empty name"):
        tui_store.create_sample_set("  ", ids[:1])
    with pytest.raises(StoreError, match="no samples"):
        tui_store.create_sample_set("empty", [])
    with pytest.raises(StoreError, match="no sample with id 999"):
        tui_store.create_sample_set("ghost", [ids[0], 999])
    assert [s.name for s in tui_store.sample_sets()] == ["demo", "mine"]  # nothing half-made


async def test_select_sample(tui_store):
    samples = tui_store.samples()
    tui_store.create_sample_set("pair", [samples[0].id, samples[1].id])
    app = make_app(tui_store)
    async with app.run_test(size=(120, 40)) as pilot:
        # As the command palette does: switch, then select at once (the screen is not built yet).
        app.switch_mode("samples")
        app.screen.select_sample(samples[4].id)
        screen = await open_samples(pilot, app)
        table = screen.query_one("#samples", DataTable)
        await wait_for(pilot, lambda: selected_key(table) == str(samples[4].id), what="the cursor on the sample")

        # Shown in a set that lacks it, behind a filter that hides it: back to all samples.
        screen.query_one("#sets", DataTable).move_cursor(row=2)  # all, demo, pair
        await wait_for(pilot, lambda: screen.set_key == "set:pair" and len(sample_rows(screen)) == 2, what="pair")
        screen.query_one("#filter", Input).value = samples[1].name
        await pilot.pause()
        screen.select_sample(samples[5].id)
        await wait_for(pilot, lambda: selected_key(table) == str(samples[5].id), what="the cursor on sample 6")
        assert screen.set_key == "all" and screen.query_one("#filter", Input).value == ""
        assert selected_key(screen.query_one("#sets", DataTable)) == "all"

        # Already on screen: only the cursor moves.
        screen.select_sample(samples[2].id)
        await wait_for(pilot, lambda: selected_key(table) == str(samples[2].id), what="the cursor on sample 3")
        await wait_for(pilot, lambda: screen._previewed == samples[2].id, what="the preview of sample 3")


# --- the new-run form ----------------------------------------------------------------------


async def open_form(pilot, app, techniques=()) -> NewRunScreen:
    def ready() -> bool:
        screen = app.screen
        return isinstance(screen, NewRunScreen) and bool(screen.query("#sample_set")) and screen.set_name() is not None

    await wait_for(pilot, ready, what="the new-run form")
    screen = app.screen
    for name in techniques:
        screen.query_one("#techniques", SelectionList).select(name)
    await wait_for(pilot, lambda: all(screen.form(name) is not None and screen.form(name).fields()
                                      for name in techniques), what="the technique forms")
    if techniques:
        await wait_for(pilot, lambda: screen.plan is not None, what="the summary")
    return screen


def param_input(screen: NewRunScreen, technique: str, name: str) -> Input:
    return screen.query_one(f"#param-{technique}-{name}", Input)


def summary(screen: NewRunScreen) -> str:
    return str(screen.query_one("#summary", Static).render())


async def test_form_defaults_follow_the_schemas(tui_store):
    app = make_app(tui_store, "new_run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(pilot, app, technique_names())
        for name in technique_names():
            for param in get_technique(name).full_schema:
                value = param_input(screen, name, param.name).value
                assert value == format_value(param.default), (name, param.name)
                assert param.parse(value, technique=name) == param.default
        assert screen.query_one("#model", Select).value == "tiny"
        assert screen.set_name() == "demo"
        assert screen.query_one("#animation", Select).value == "none"
        assert {name: screen.query_one(f"#{name}", Input).value
                for name in ("seeds", "steps", "guidance", "negative_prompt", "metrics", "preview_every",
                             "batch_size")} == {
            "seeds": "0", "steps": "50", "guidance": "", "negative_prompt": "", "metrics": "background,clip,precision,kid",
            "preview_every": "0", "batch_size": "1"}
        assert summary(screen).startswith("6 runs × 6 samples, ≈")  # diffdiff's count is an estimate
        assert screen.plan.evaluation.models == "tiny" and screen.plan.options == {}

        # Only one technique: an exact count (latentpaint: 2 calls per propagating step).
        screen.query_one("#techniques", SelectionList).deselect_all()
        screen.query_one("#techniques", SelectionList).select("latentpaint")
        await pilot.pause()
        assert summary(screen) == "1 run × 6 samples, about 600 UNet calls"
        assert [f.technique.name for f in screen.query("TechniqueForm") if f.display] == ["latentpaint"]


def test_unet_call_counts():
    assert estimate_unet_calls("blended", {}, 50) == (50, True)
    assert estimate_unet_calls("blended", {"blend_start": 0.25}, 50) == (38, True)
    assert estimate_unet_calls("tdpaint", {"blend_start": 0.5}, 20) == (10, True)
    assert estimate_unet_calls("latentpaint", {"propagate_until": 0.5}, 20) == (30, True)
    # RePaint's count, as its docstring states: 250 steps with (10, 10) make 2410 UNet calls.
    assert estimate_unet_calls("repaint", {"jump_length": 10, "jump_n_sample": 10}, 250) == (2410, True)
    assert estimate_unet_calls("vanilla", {"strength": 0.5}, 50) == (25, True)
    assert estimate_unet_calls("vanilla", {"scheduler": "pndm"}, 50) == (51, False)
    assert estimate_unet_calls("diffdiff", {"strength": 0.5}, 50) == (25, False)
    assert estimate_unet_calls("blended", {"post_condition": True, "post_strength": 0.2}, 50) == (60, True)


async def test_invalid_value_shows_the_error_and_blocks_submit(tui_store):
    app = make_app(tui_store, "new_run")
    runs_before = tui_store.run_count()
    async with app.run_test(size=(120, 40)) as pilot:
        notes = record_notifications(app)
        screen = await open_form(pilot, app, ["blended"])
        assert summary(screen) == "1 run × 6 samples, about 300 UNet calls"
        field = param_input(screen, "blended", "progressive_shrink")
        await type_into(pilot, field, "x")
        assert field.value == "x" and field.has_class("-invalid")
        error = str(field.parent.parent.query_one(".field-error", Static).render())
        assert "progressive_shrink" in error and "expected an integer" in error
        assert field.parent.parent.query_one(".field-error").display
        assert "progressive_shrink" in summary(screen) and screen.query_one("#summary").has_class("-invalid")

        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert tui_store.run_count() == runs_before
        assert isinstance(app.screen, NewRunScreen)
        assert any("progressive_shrink" in note for note in notes)

        # Out of range and empty list items are errors too; a valid value clears the message.
        await type_into(pilot, field, "11")
        assert "above the maximum 10" in summary(screen)
        await type_into(pilot, field, "1,")
        assert "empty value" in summary(screen)
        await type_into(pilot, field, "2")
        assert not field.has_class("-invalid") and not field.parent.parent.query_one(".field-error").display
        assert summary(screen) == "1 run × 6 samples, about 300 UNet calls"
        await type_into(pilot, screen.query_one("#steps", Input), "0")
        assert "steps: 0 is below the minimum 1" in summary(screen)
        await type_into(pilot, screen.query_one("#metrics", Input), "background,fid")
        assert "steps: 0" in summary(screen)  # the first problem in the form's order
        await type_into(pilot, screen.query_one("#steps", Input), "50")
        assert "metrics: 'fid' is not one of background, clip, precision, kid" in summary(screen)
        await type_into(pilot, screen.query_one("#metrics", Input), "background,fid")
        assert "'fid' is not one of" in summary(screen)
        await type_into(pilot, screen.query_one("#metrics", Input), "background")
        await type_into(pilot, screen.query_one("#batch_size", Input), "0")
        assert "batch_size must be a whole number >= 1 or 'auto', got 0" in summary(screen)
        await type_into(pilot, screen.query_one("#batch_size", Input), "auto")
        assert screen.plan.options == {"batch_size": "auto"}
        await type_into(pilot, screen.query_one("#batch_size", Input), "4")
        assert screen.plan.options == {"batch_size": 4}
        await type_into(pilot, screen.query_one("#batch_size", Input), "many")
        await pilot.click("#submit")
        await pilot.pause(0.3)
        assert tui_store.run_count() == runs_before


async def test_a_model_not_downloaded_is_refused_before_anything_is_queued(fresh_store, tmp_path, monkeypatch):
    """As the CLI: a hub model neither cached nor reachable is one notification naming the
    download command, and no run or worker is created (no worker on another box could take it)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    app = make_app(fresh_store, "new_run")
    async with app.run_test(size=(120, 40)) as pilot:
        notes = record_notifications(app)
        screen = await open_form(pilot, app, ["blended"])
        screen.query_one("#model", Select).value = "sd15"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: len(notes) > 0, timeout=10, what="a notification")
        await pilot.pause(0.2)
        assert isinstance(app.screen, NewRunScreen) and not screen.query_one("#submit").disabled
    assert fresh_store.run_count() == 0 and fresh_store.workers(include_ended=True) == []
    assert len(notes) == 1 and "not in the local cache" in notes[0] and "hf download" in notes[0], notes


async def test_sweep_summary_counts_runs(tui_store):
    app = make_app(tui_store, "new_run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(pilot, app, ["blended"])
        param_input(screen, "blended", "blend_start").value = "0,0.25"
        screen.query_one("#seeds", Input).value = "0,1"
        await pilot.pause()
        # (50 + 38 UNet calls) × 2 seeds × 6 samples
        assert summary(screen) == ("4 runs × 6 samples, about 1,056 UNet calls; a sweep (identical finished or "
                                   "queued runs are reused)")
        assert [(p.params, p.seed, p.swept) for p in screen.plan.points] == [
            ({"blend_start": 0.0}, 0, {"blend_start": 0.0, "seed": 0}),
            ({"blend_start": 0.0}, 1, {"blend_start": 0.0, "seed": 1}),
            ({"blend_start": 0.25}, 0, {"blend_start": 0.25, "seed": 0}),
            ({"blend_start": 0.25}, 1, {"blend_start": 0.25, "seed": 1}),
        ]
        # A second technique multiplies the grid; the technique is one of the swept values.
        screen.query_one("#techniques", SelectionList).select("tdpaint")
        await wait_for(pilot, lambda: screen.form("tdpaint") is not None and screen.form("tdpaint").fields(),
                       what="the tdpaint form")
        screen.query_one("#steps", Input).value = "20,40"
        await pilot.pause()
        assert summary(screen).startswith("12 runs × 6 samples")
        assert {p.swept["technique"] for p in screen.plan.points} == {"blended", "tdpaint"}


async def test_on_a_flux_model_the_form_takes_its_default_guidance_and_refuses_what_does_not_apply(tui_store):
    app = make_app(tui_store, "new_run")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(pilot, app, ["vanilla", "blended"])
        screen.query_one("#model", Select).value = "tiny-flux"
        await wait_for(pilot, lambda: screen.plan is not None and screen.plan.model == "tiny-flux",
                       what="the plan on tiny-flux")
        specs = {p.technique: p.spec(model="tiny-flux") for p in screen.plan.points}
        assert {name: spec.guidance for name, spec in specs.items()} == {"vanilla": 30.0, "blended": 3.5}
        screen.query_one("#techniques", SelectionList).select("repaint")
        await wait_for(pilot, lambda: "does not apply to model 'tiny-flux'" in summary(screen),
                       what="the refusal in the summary")
        assert screen.plan is None
        screen.query_one("#techniques", SelectionList).deselect("repaint")
        await type_into(pilot, screen.query_one("#guidance", Input), "12")
        await wait_for(pilot, lambda: screen.plan is not None and screen.plan.points[0].guidance == 12.0,
                       what="an explicit guidance")


async def test_sweep_submit_reuses_identical_runs(tui_store):
    """The test database has the sweep blended blend_start=0,0.25 (steps 20, seed 0, background
    metrics on tiny models) finished, and blended seed 1 running: only the fourth point is new.
    Its (fake, live) worker serves the queue, so nothing is spawned."""
    app = make_app(tui_store, "new_run")
    before = {run.id for run in tui_store.runs()}
    async with app.run_test(size=(120, 40)) as pilot:
        notes = record_notifications(app)
        screen = await open_form(pilot, app, ["blended"])
        param_input(screen, "blended", "blend_start").value = "0,0.25"
        for name, value in (("seeds", "0,1"), ("steps", "20"), ("metrics", "background")):
            screen.query_one(f"#{name}", Input).value = value
        await pilot.pause()
        assert summary(screen).startswith("4 runs × 6 samples")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.current_mode == "dashboard", what="the dashboard")
        new = [run for run in tui_store.runs() if run.id not in before]
        assert [(run.technique, run.params["blend_start"], run.seed, run.status) for run in new] == [
            ("blended", 0.25, 1, RunStatus.QUEUED)]
        sweep = tui_store.sweeps()[-1]
        reused = sorted(tui_store.ids["swept"] + [tui_store.ids["running"]])
        assert sorted(run_id for run_id, was in zip(sweep.run_ids, sweep.reused) if was) == reused
        note = next(note for note in notes if note.startswith(f"sweep {sweep.id}"))
        assert f"queued run {new[0].id}" in note
        assert f"reused 3 identical runs already finished, running or queued ({', '.join(map(str, reused))})" in note
        assert f"worker {tui_store.ids['worker']} serves them" in note


async def test_prefill_from_a_run(tui_store):
    blended = tui_store.run(tui_store.ids["finished"][1])  # blended, progressive_shrink=2
    app = make_app(tui_store)
    async with app.run_test(size=(120, 40)) as pilot:
        # As the runs screen's "clone with edits" does: switch, then prefill at once.
        app.switch_mode("new_run")
        app.screen.prefill(blended)
        screen = await open_form(pilot, app)
        await wait_for(pilot, lambda: screen.form("blended") is not None and screen.form("blended").fields(),
                       what="the blended form")
        assert screen.selected_techniques() == ["blended"]
        assert param_input(screen, "blended", "progressive_shrink").value == "2"
        assert param_input(screen, "blended", "blend_start").value == "0.0"
        values = {name: screen.query_one(f"#{name}", Input).value
                  for name in ("seeds", "steps", "guidance", "metrics", "preview_every")}
        assert values == {"seeds": "0", "steps": "20", "guidance": "7.5", "metrics": "background",
                          "preview_every": "0"}
        assert screen.set_name() == "demo" and screen.query_one("#model", Select).value == "tiny"
        assert summary(screen) == "1 run × 6 samples, about 120 UNet calls"
        assert screen.plan.points[0].params == {"progressive_shrink": 2}

        # On the form already shown: another run replaces the selection and the values.
        tdpaint = tui_store.run(tui_store.ids["finished"][2])
        queued = tui_store.run(tui_store.ids["queued"])
        screen.prefill(tdpaint)
        await wait_for(pilot, lambda: screen.form("tdpaint") is not None and screen.form("tdpaint").fields(),
                       what="the tdpaint form")
        assert screen.selected_techniques() == ["tdpaint"]
        assert param_input(screen, "tdpaint", "t_bg").value == "50.0"
        screen.query_one("#steps", Input).value = "7"  # an edit, then prefill with a third run
        screen.prefill(queued)  # vanilla, seed 2
        await wait_for(pilot, lambda: screen.form("vanilla") is not None and screen.form("vanilla").fields(),
                       what="the vanilla form")
        assert screen.selected_techniques() == ["vanilla"]
        assert screen.query_one("#seeds", Input).value == "2"
        assert screen.query_one("#steps", Input).value == "20"
        # A form prefilled earlier keeps the values it was given; blended is merely hidden.
        assert param_input(screen, "blended", "progressive_shrink").value == "2"
        assert not screen.form("blended").display


# --- end to end: a real worker process -----------------------------------------------------


@pytest.fixture
def fresh_store(tmp_path, monkeypatch):
    """A database with only the demo set, and spawned workers that exit when idle."""
    from inpaint_tui.jobs.samples import ensure_demo

    monkeypatch.setenv("INPAINT_TUI_IDLE_EXIT", "2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    store = Store(tmp_path / "experiments.db")
    ensure_demo(store)
    yield store
    for worker in store.workers():  # never leave a worker behind (it would idle-exit in 2 s anyway)
        if worker.pid and worker.pid != os.getpid() and _serves(worker.pid, store):
            try:
                os.kill(worker.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    store.close()


def _serves(pid: int, store: Store) -> bool:
    """Whether the process is still a worker on this database (a pid can be reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            arguments = handle.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    return "worker" in arguments and str(store.data_dir) in arguments


async def submit_blended(pilot, app, store, *, steps: str) -> int:
    notes = record_notifications(app)
    screen = await open_form(pilot, app, ["blended"])
    screen.query_one("#steps", Input).value = steps
    screen.query_one("#metrics", Input).value = "background"
    await pilot.pause()
    assert summary(screen) == f"1 run × 6 samples, about {6 * int(steps):,} UNet calls"
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: app.current_mode == "dashboard", timeout=30, what="the dashboard")
    [run] = store.runs()
    note = next(note for note in notes if note.startswith("queued run"))
    [worker] = store.workers()
    assert note == f"queued run {run.id}; worker {worker.id} started"
    assert worker.pid and worker.pid != os.getpid()
    return run.id


@pytest.mark.slow
async def test_submit_executes_in_a_real_worker(fresh_store):
    app = make_app(fresh_store, "new_run")
    async with app.run_test(size=(120, 40)) as pilot:
        run_id = await submit_blended(pilot, app, fresh_store, steps="2")
        await wait_for(pilot, lambda: fresh_store.run(run_id).status in RunStatus.ENDED, timeout=180, step=0.5,
                       what="the run to end")
    detail = fresh_store.run_detail(run_id)
    assert detail.run.status == RunStatus.FINISHED, detail.run.error
    assert (detail.run.technique, detail.run.steps, detail.run.eval_config["groups"]) == ("blended", 2, ["background"])
    assert detail.run.command == "inpaint-tui (new run form)"
    assert all(s.status == SampleStatus.DONE and s.image_path.exists() for s in detail.samples)
    assert len(detail.samples) == 6 and "bg_mse" in detail.metrics


@pytest.mark.slow
async def test_cancel_a_running_submitted_run(fresh_store):
    app = make_app(fresh_store, "new_run")
    async with app.run_test(size=(120, 40)) as pilot:
        # Enough steps that the run is still going after its first sample (here ~10 s a sample;
        # polled often, so a much faster machine still cancels it with samples left).
        run_id = await submit_blended(pilot, app, fresh_store, steps="20")
        await wait_for(pilot, lambda: fresh_store.run(run_id).done_count >= 1, timeout=180, step=0.1,
                       what="the first sample to finish")
        run = fresh_store.run(run_id)
        assert run.status == RunStatus.RUNNING and run.progress is not None
        fresh_store.request_cancel(run_id)
        await wait_for(pilot, lambda: fresh_store.run(run_id).status in RunStatus.ENDED, timeout=60, step=0.5,
                       what="the cancellation")
    detail = fresh_store.run_detail(run_id)
    assert detail.run.status == RunStatus.CANCELLED
    done = [s for s in detail.samples if s.status == SampleStatus.DONE]
    assert 1 <= len(done) < 6
    assert all(s.image_path is not None and s.image_path.exists() for s in done)
    assert all(s.status == SampleStatus.PENDING for s in detail.samples if s not in done)


def test_screens_are_torch_free():
    import subprocess

    code = ("import sys; import inpaint_tui.tui.screens.samples, inpaint_tui.tui.screens.new_run, "
            "inpaint_tui.tui.forms, inpaint_tui.jobs.runs, inpaint_tui.jobs.sweeps, inpaint_tui.jobs.launch; "
            "from engine.techniques import estimate_unet_calls as u; "
            "[u(t, {}, 10) for t in ('vanilla', 'blended', 'diffdiff', 'latentpaint', 'repaint', 'tdpaint')]; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
