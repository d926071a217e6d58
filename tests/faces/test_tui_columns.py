"""The runs screen's column chooser (C), driven with Pilot on the TUI test database: every
column the runs can fill is offered, the chosen ones are shown in the chosen order with the
cells of read/listing (checked against the store's own values), reordering, the defaults
again, escape, sorting by a chosen parameter or metric, and the choice kept for the session."""

from __future__ import annotations

import math

from textual.widgets import SelectionList

from engine.spec import recorded_params
from inpaint_tui.read.listing import available_columns, cell_forms, list_column
from inpaint_tui.tui.base import Table
from inpaint_tui.tui.screens.columns import ColumnsScreen
from inpaint_tui.tui.screens.runs import DEFAULT_COLUMNS, RunsScreen
from tests.faces.test_tui_keys import column_in_view, make_app, wait_for


def column_keys(table: Table) -> list[str]:
    return [column.key.value for column in table.ordered_columns]


def listed(listing: SelectionList) -> list[tuple[str, bool]]:
    """(key, checked) in the chooser's order."""
    checked = set(listing.selected)
    return [(option.value, option.value in checked) for option in listing.options]


async def open_chooser(pilot) -> SelectionList:
    await pilot.press("C")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ColumnsScreen), "the column chooser")
    await pilot.pause(0.1)
    return pilot.app.screen.query_one("#columns", SelectionList)


async def highlight(pilot, listing: SelectionList, key: str) -> None:
    listing.highlighted = [option.value for option in listing.options].index(key)
    await pilot.pause()


async def toggle(pilot, listing: SelectionList, key: str, press: str = "space") -> None:
    await highlight(pilot, listing, key)
    await pilot.press(press)


async def runs_shown(app, pilot, store) -> tuple[RunsScreen, Table]:
    screen = app.screen
    table = screen.query_one("#runs", Table)
    await wait_for(pilot, lambda: table.row_count == len(store.runs()), "every run")
    return screen, table


async def test_chosen_columns_show_in_order_with_the_listing_cells(tui_store):
    runs = {run.id: run for run in tui_store.runs()}
    metrics = tui_store.run_metric_values(list(runs))
    app = make_app(tui_store, start_screen="runs")
    async with app.run_test(size=(120, 40)) as pilot:
        screen, table = await runs_shown(app, pilot, tui_store)
        assert column_keys(table) == list(DEFAULT_COLUMNS)
        listing = await open_chooser(pilot)
        offered = listed(listing)
        assert offered[:len(DEFAULT_COLUMNS)] == [(key, True) for key in DEFAULT_COLUMNS]
        assert not any(checked for _, checked in offered[len(DEFAULT_COLUMNS):])
        keys = [key for key, _ in offered]
        # every metric a run has and every parameter of the runs' techniques, from the store
        assert {f"metric.{name}" for values in metrics.values() for name in values} <= set(keys)
        assert {f"param.{name}" for run in runs.values() for name in recorded_params(run.technique, {})} <= set(keys)
        assert {"model", "set", "seed", "steps", "guidance", "tag", "note", "created"} <= set(keys)
        assert len(keys) == len(set(keys)) and "sweep" not in keys

        await toggle(pilot, listing, "note")  # hide
        await toggle(pilot, listing, "param.blend_start", press="enter")  # show (enter toggles too)
        await toggle(pilot, listing, "metric.bg_psnr")
        await pilot.press("a")
        await wait_for(pilot, lambda: app.screen is screen, "the chooser closed")
        expected = [key for key in DEFAULT_COLUMNS if key != "note"] + ["param.blend_start", "metric.bg_psnr"]
        await wait_for(pilot, lambda: column_keys(table) == expected, "the chosen columns")
        assert [str(column.label) for column in table.ordered_columns][-2:] == ["blend_start", "bg_psnr"]

        for run_id in screen.row_run_ids:
            run, values = runs[run_id], metrics.get(run_id, {})
            for key in ("param.blend_start", "metric.bg_psnr", "metric.bg_mse", "status"):
                assert str(table.get_cell(str(run_id), key)) == cell_forms(run, list_column(key), values)[0], key
            # the same cells from the store's values directly, not through read/listing
            blend_start = str(table.get_cell(str(run_id), "param.blend_start"))
            defaults = recorded_params(run.technique, {})  # the technique's schema (engine), not listing's
            if "blend_start" in defaults:
                assert float(blend_start) == run.params.get("blend_start", defaults["blend_start"])
            else:
                assert blend_start == "-"
            psnr = str(table.get_cell(str(run_id), "metric.bg_psnr"))
            if "bg_psnr" in values:
                assert math.isclose(float(psnr), values["bg_psnr"], rel_tol=1e-2)
            else:
                assert psnr == "-"
        swept = [runs[run_id].params.get("blend_start") for run_id in tui_store.ids["swept"]]
        assert sorted(swept) == [0, 0.25]
        assert str(table.get_cell(str(tui_store.ids["swept"][swept.index(0.25)]), "param.blend_start")) == "0.25"

        # the choice stays for the session: another area and back
        await pilot.press("d")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "DashboardScreen", "the dashboard")
        await pilot.press("r")
        await wait_for(pilot, lambda: app.screen is screen, "the runs screen again")
        await pilot.pause(0.2)
        assert column_keys(table) == expected


async def test_reorder_restore_the_defaults_and_escape(tui_store):
    app = make_app(tui_store, start_screen="runs")
    async with app.run_test(size=(120, 40)) as pilot:
        screen, table = await runs_shown(app, pilot, tui_store)
        selected = tui_store.ids["finished"][1]
        table.move_cursor(row=screen.row_run_ids.index(selected))

        listing = await open_chooser(pilot)
        await highlight(pilot, listing, "metric.bg_mse")
        await pilot.press("K", "K", "shift+up", "K")  # from fifth to first
        await highlight(pilot, listing, "run")
        await pilot.press("J", "shift+down")  # from second to fourth
        await toggle(pilot, listing, "seed")  # unlisted columns can follow
        await highlight(pilot, listing, "seed")
        for _ in range([key for key, _ in listed(listing)].index("seed")):
            await pilot.press("K")
        assert [key for key, checked in listed(listing) if checked][:5] == [
            "seed", "metric.bg_mse", "status", "technique", "run"]
        await pilot.click("#apply")
        expected = ["seed", "metric.bg_mse", "status", "technique", "run", "done", "metric.clip_local", "progress",
                    "params", "set", "model", "tag", "note"]
        await wait_for(pilot, lambda: column_keys(table) == expected, "the new order")
        assert screen.row_run_ids[table.cursor_coordinate.row] == selected  # the cursor stays on its run
        seed = str(table.get_row(str(selected))[0])
        assert seed == str(tui_store.run(selected).seed)

        # escape: nothing changes, whatever was toggled or moved
        listing = await open_chooser(pilot)
        assert [key for key, checked in listed(listing) if checked] == expected
        await toggle(pilot, listing, "seed")
        await pilot.press("J")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, "the chooser closed")
        await pilot.pause(0.2)
        assert column_keys(table) == expected

        # nothing checked is refused; the defaults come back with r
        listing = await open_chooser(pilot)
        listing.deselect_all()
        await pilot.press("a")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ColumnsScreen) and any("at least one" in n.message for n in app._notifications)
        await pilot.press("r")
        assert listed(listing)[:len(DEFAULT_COLUMNS)] == [(key, True) for key in DEFAULT_COLUMNS]
        await pilot.press("a")
        await wait_for(pilot, lambda: column_keys(table) == list(DEFAULT_COLUMNS), "the default columns")


async def test_sorting_marking_and_filtering_with_chosen_columns(tui_store):
    runs = {run.id: run for run in tui_store.runs()}
    metrics = tui_store.run_metric_values(list(runs))
    app = make_app(tui_store, start_screen="runs")
    async with app.run_test(size=(80, 24)) as pilot:  # narrow: the chosen columns are off to the right
        screen, table = await runs_shown(app, pilot, tui_store)
        listing = await open_chooser(pilot)
        await toggle(pilot, listing, "param.blend_start")
        await toggle(pilot, listing, "metric.bg_psnr")
        await pilot.press("a")
        await wait_for(pilot, lambda: "metric.bg_psnr" in column_keys(table), "the chosen columns")
        assert screen.sorts == ("id", "status", "technique", "metric.bg_mse", "metric.clip_local",
                                "param.blend_start", "metric.bg_psnr")

        await pilot.press(*"ooooo")  # status, technique, bg_mse, clip_local, blend_start
        assert screen.sort == "param.blend_start"
        await wait_for(pilot, lambda: column_in_view(table, "param.blend_start"), "blend_start scrolled into view")
        order = screen.row_run_ids
        having = [run_id for run_id in order if "blend_start" in recorded_params(runs[run_id].technique, {})]
        assert 0 < len(having) < len(order) and order[:len(having)] == having  # runs without the parameter last
        values = [recorded_params(runs[run_id].technique, runs[run_id].params)["blend_start"] for run_id in having]
        assert values == sorted(values) and values[-1] == 0.25
        assert "sorted by param.blend_start" in str(screen.query_one("#shown").render())

        await pilot.press("o")  # bg_psnr: higher is better, the best first
        await wait_for(pilot, lambda: screen.sort == "metric.bg_psnr" and column_in_view(table, "metric.bg_psnr"),
                       "bg_psnr scrolled into view")
        measured = [run_id for run_id in screen.row_run_ids if "bg_psnr" in metrics.get(run_id, {})]
        psnr = [metrics[run_id]["bg_psnr"] for run_id in measured]
        assert psnr == sorted(psnr, reverse=True) and screen.row_run_ids[:len(measured)] == measured
        await pilot.press("O")
        await wait_for(pilot, lambda: screen.row_run_ids[:len(measured)] == measured[::-1], "the worst first")

        # marks prefix whatever column comes first; a filter keeps the columns
        top = screen.row_run_ids[0]
        table.move_cursor(row=0)
        await pilot.press("m")
        await wait_for(pilot, lambda: str(table.get_row(str(top))[0]) == f"● {top}", "the mark")
        screen.query_one("#filter").value = "technique = 'blended'"
        await wait_for(pilot, lambda: {runs[run_id].technique for run_id in screen.row_run_ids} == {"blended"},
                       "the filter")
        assert "metric.bg_psnr" in column_keys(table)

        # hiding the column sorted by: back to the id sort
        listing = await open_chooser(pilot)
        await toggle(pilot, listing, "metric.bg_psnr")
        await pilot.press("a")
        await wait_for(pilot, lambda: "metric.bg_psnr" not in column_keys(table), "bg_psnr hidden")
        assert screen.sort == "id" and not screen.sort_reversed


def test_available_columns_name_every_field_parameter_and_metric_the_runs_have(tui_store):
    runs = tui_store.runs()
    metrics = tui_store.run_metric_values([run.id for run in runs])
    keys = [column.key for column in available_columns(runs, metrics)]
    present = {name for values in metrics.values() for name in values}
    assert [key for key in keys if key.startswith("metric.")] == [
        key for key in keys if key.startswith("metric.") and key[len("metric."):] in present]
    assert {f"metric.{name}" for name in present} <= set(keys)
    own = [key for key in keys if key.startswith("param.")]
    assert own.index("param.blend_start") < own.index("param.background")  # a technique's own before the options
    assert keys[:3] == ["run", "technique", "model"] and "params" in keys and "progress" in keys
    for key in keys:  # each is a column `runs list --columns` takes
        assert list_column(key).key == key
    assert not [key for key in available_columns([], {}) if key.key.startswith(("param.", "metric."))]
