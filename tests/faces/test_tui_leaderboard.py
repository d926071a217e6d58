"""The leaderboard, compare and sweep-plot screens, driven with Textual's Pilot on the TUI
test database (tests/tui_database.py), checked against the store's own numbers; snapshots
of the leaderboard and the compare screen."""

from __future__ import annotations

import math

from rich.text import Text
from sqlalchemy import text
from textual.widgets import DataTable, Select
from textual_image.widget import HalfcellImage
from tui_helpers import settle_tables, until

from engine.metrics.catalogue import key_metrics
from inpaint_tui.read.compare import compare_runs
from inpaint_tui.read.present import format_summary
from inpaint_tui.store import LeaderboardRow, MetricSummary, NewSample, RunStatus
from inpaint_tui.tui.app import InpaintApp
from inpaint_tui.tui.screens.leaderboard import ALL_SETS
from inpaint_tui.tui.screens.leaderboard_view import BoardState, build_view
from tests.conftest import queue

SIZE = (120, 40)


def make_app(store, **options) -> InpaintApp:
    options.setdefault("offer_demo", False)
    return InpaintApp(store, image_class=HalfcellImage, refresh_seconds=60, **options)


async def wait_for(pilot, condition, timeout: float = 15.0, what: str = "condition"):
    """Let the app work (thread loads) until `condition()` holds, at most `timeout` seconds."""
    await until(pilot, condition, what, timeout)


async def open_leaderboard(app, pilot):
    await pilot.press("l")
    await wait_for(pilot, lambda: type(app.screen).__name__ == "LeaderboardScreen", what="leaderboard shown")
    screen = app.screen
    await wait_for(pilot, lambda: screen.view is not None and board(screen).row_count > 0, what="leaderboard rows")
    return screen


def board(screen) -> DataTable:
    return screen.query_one("#board", DataTable)


def column(screen, name: str) -> list:
    """The cells of one column (by key), in display order."""
    table = board(screen)
    return [table.get_cell(key, name) for key in screen.row_keys]


def label(screen, name: str) -> str:
    table = board(screen)
    return next(str(c.label).strip() for key, c in table.columns.items() if key.value == name)


def bold_green(cell) -> bool:
    return isinstance(cell, Text) and "bold" in str(cell.style) and "green" in str(cell.style)


def finish(store, technique: str, quality: float, *, seed: int = 0, sample_set: str = "demo", **params) -> int:
    """Queue a run and finish it with deterministic metrics, as tests/tui_database.py does."""
    import tui_database

    run_id = queue(store, technique=technique, params=params or None, model="tiny", sample_set=sample_set,
                       seed=seed, steps=20, guidance=7.5, eval_config=tui_database.EVAL)
    tui_database._finish(store, run_id, store.ids["worker"], quality)
    return run_id


# --- leaderboard ----------------------------------------------------------------------------------


async def test_leaderboard_ranks_finished_runs_by_each_metric_best_first_and_highlights_the_best(tui_store):
    app = make_app(tui_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_leaderboard(app, pilot)

        expected = tui_store.leaderboard("bg_mse", descending=False)
        assert screen.row_run_ids == [row.run_id for row in expected]
        ids = tui_store.ids
        assert set(screen.row_run_ids) == {*ids["finished"], ids["with_errors"], *ids["swept"]}
        assert screen.sort_metric == "bg_mse" and label(screen, "bg_mse") == "bg_mse ▲"
        assert [str(c) for c in column(screen, "rank")] == [str(i) for i in range(1, len(expected) + 1)]
        assert [str(c) for c in column(screen, "run")] == [str(row.run_id) for row in expected]
        # the columns: what names the row, the metrics present (key order; values are mean
        # [95% CI] from the store), then what describes it (params last: they can be long)
        keys = [key.value for key in board(screen).columns]
        assert keys[:4] == ["mark", "rank", "run", "technique"] and keys[-3:] == ["done", "set", "params"]
        assert keys[4:-3] == key_metrics(expected[0].metrics)
        for name in ("bg_mse", "bg_psnr"):
            assert [str(c) for c in column(screen, name)] == [format_summary(row.summaries[name]) for row in expected]
        assert "[" in str(column(screen, "bg_mse")[0])  # the interval is shown
        # the best cell of each column (its direction known) is highlighted, and only that one
        mse, psnr = column(screen, "bg_mse"), column(screen, "bg_psnr")
        assert bold_green(mse[0]) and not any(bold_green(c) for c in mse[1:])
        assert bold_green(psnr[0]) and not any(bold_green(c) for c in psnr[1:])
        assert not any(bold_green(c) for c in column(screen, "unet_calls"))  # all equal: nothing stands out
        # finished with errors is shown as such
        errors = screen.row_run_ids.index(ids["with_errors"])
        assert str(column(screen, "done")[errors]) == "5 (errors)"

        await pilot.press("o")  # next metric: bg_psnr, higher is better
        expected = tui_store.leaderboard("bg_psnr", descending=True)
        await wait_for(pilot, lambda: screen.sort_metric == "bg_psnr", what="sorted by bg_psnr")
        assert screen.row_run_ids == [row.run_id for row in expected]
        values = [row.metrics["bg_psnr"] for row in expected]
        assert values == sorted(values, reverse=True)
        assert label(screen, "bg_psnr") == "bg_psnr ▼" and label(screen, "bg_mse") == "bg_mse"
        assert bold_green(column(screen, "bg_psnr")[0])

        await pilot.press("o", "o")  # unet_calls, seconds (lower is better), then back to bg_mse
        await wait_for(pilot, lambda: screen.sort_metric == "seconds", what="sorted by seconds")
        expected = tui_store.leaderboard("seconds", descending=False)
        assert [row.metrics["seconds"] for row in expected] == sorted(row.metrics["seconds"] for row in expected)
        assert screen.row_run_ids == sorted(screen.row_run_ids, key=lambda i: (
            next(r.metrics["seconds"] for r in expected if r.run_id == i), i))
        assert bold_green(column(screen, "seconds")[0])
        await pilot.press("o")
        await wait_for(pilot, lambda: screen.sort_metric == "bg_mse", what="sort cycles back")

        # clicking a metric's header sorts by it
        table = board(screen)
        index = [key.value for key in table.columns].index("bg_psnr")
        table.post_message(DataTable.HeaderSelected(table, list(table.columns)[index], index, Text("bg_psnr")))
        await wait_for(pilot, lambda: screen.sort_metric == "bg_psnr", what="header click sorts")
        assert screen.row_run_ids == [row.run_id for row in tui_store.leaderboard("bg_psnr", descending=True)]

        # the same header again: the worst first (the arrow turns); O turns it back
        table.post_message(DataTable.HeaderSelected(table, list(table.columns)[index], index, Text("bg_psnr")))
        worst_first = [row.run_id for row in tui_store.leaderboard("bg_psnr", descending=False)]
        await wait_for(pilot, lambda: screen.row_run_ids == worst_first, what="header click again reverses")
        assert label(screen, "bg_psnr") == "bg_psnr ▲" and "worst first" in str(screen.query_one("#status").render())
        await pilot.press("O")
        await wait_for(pilot, lambda: screen.row_run_ids == worst_first[::-1], what="O reverses back")
        assert label(screen, "bg_psnr") == "bg_psnr ▼"


async def test_leaderboard_filters_by_sample_set_and_adds_unfinished_runs_on_demand(tui_store):
    # a second set (three demo samples) with one finished run
    demo = tui_store.samples("demo")[:3]
    tui_store.import_samples("trio", [
        NewSample(key=s.key, name=s.name, prompt=s.prompt, image_png=s.image_path.read_bytes(),
                  mask_png=s.mask_path.read_bytes(), reference_png=None, width=s.width, height=s.height,
                  source=s.source) for s in demo])
    trio_run = finish(tui_store, "vanilla", 0.5, sample_set="trio")
    ids = tui_store.ids
    app = make_app(tui_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_leaderboard(app, pilot)
        everything = [row.run_id for row in tui_store.leaderboard("bg_mse", descending=False)]
        assert screen.row_run_ids == everything and screen.row_run_ids[0] == trio_run

        select = screen.query_one("#set", Select)
        assert select.value == ALL_SETS
        select.value = "trio"  # an option (a value that is not one raises)
        await wait_for(pilot, lambda: screen.row_run_ids == [trio_run], what="set filter trio")
        assert str(column(screen, "set")[0]) == "trio" and str(column(screen, "done")[0]) == "3"
        select.value = "demo"
        demo_runs = [row.run_id for row in tui_store.leaderboard("bg_mse", descending=False, sample_set="demo")]
        await wait_for(pilot, lambda: screen.row_run_ids == demo_runs, what="set filter demo")
        assert trio_run not in demo_runs and len(demo_runs) == len(everything) - 1
        select.value = ALL_SETS
        await wait_for(pilot, lambda: screen.row_run_ids == everything, what="all sets again")

        await pilot.press("a")  # unfinished runs too: running (live mean), queued, failed, cancelled
        expected = [row.run_id for row in tui_store.leaderboard("bg_mse", descending=False, include_unfinished=True)]
        await wait_for(pilot, lambda: screen.row_run_ids == expected, what="unfinished included")
        assert {ids["running"], ids["queued"], ids["failed"], ids["cancelled"]} <= set(screen.row_run_ids)
        done = dict(zip(screen.row_run_ids, (str(c) for c in column(screen, "done"))))
        assert done[ids["running"]] == "2 running" and done[ids["queued"]] == "0 queued"
        assert done[ids["failed"]] == "0 failed"
        ranks = dict(zip(screen.row_run_ids, (str(c) for c in column(screen, "rank"))))
        assert ranks[ids["queued"]] == ranks[ids["failed"]] == "-"  # without the metric: unranked, last
        assert set(screen.row_run_ids[-3:]) == {ids["queued"], ids["failed"], ids["cancelled"]}
        await pilot.press("a")
        await wait_for(pilot, lambda: screen.row_run_ids == everything, what="finished only again")


def test_intervals_are_dropped_only_where_they_do_not_fit_and_no_cell_is_cut(tui_store):
    rows = tui_store.leaderboard("bg_mse", descending=False)
    wide, narrow = build_view(rows, BoardState(width=120)), build_view(rows, BoardState(width=80))
    assert wide.intervals and not narrow.intervals
    at = [key for key, _ in wide.columns].index("bg_mse")
    assert [str(cells[at]) for _, cells in wide.rows] == [format_summary(row.summaries["bg_mse"]) for row in rows]
    assert [str(cells[at]) for _, cells in narrow.rows] == [f"{row.metrics['bg_mse']:.4f}" for row in rows]
    assert build_view(rows, BoardState()).intervals  # no width given: always
    assert not any("…" in str(cell) for view in (wide, narrow) for _, cells in view.rows for cell in cells)


def test_an_unfinished_runs_partial_mean_is_ranked_but_never_the_highlighted_best():
    def row(run_id, status, mse):
        return LeaderboardRow(run_id=run_id, technique="vanilla", params={}, model="tiny", steps=20, seed=run_id,
                              sample_set="demo", status=status, samples_done=6, metrics={"bg_mse": mse},
                              summaries={"bg_mse": MetricSummary(value=mse, n=6)})

    view = build_view([row(1, RunStatus.FINISHED, 0.03), row(2, RunStatus.RUNNING, 0.01),
                       row(3, RunStatus.FINISHED, 0.02)], BoardState(include_unfinished=True))
    assert view.members == [(2,), (3,), (1,)]
    at = [key for key, _ in view.columns].index("bg_mse")
    mse = [cells[at] for _, cells in view.rows]
    assert [bold_green(cell) for cell in mse] == [False, True, False]


async def test_grouping_pools_runs_differing_only_in_seed_not_the_sweep_points(tui_store):
    ids = tui_store.ids
    vanilla = ids["finished"][0]
    other_seed = finish(tui_store, "vanilla", 3.5, seed=5)
    app = make_app(tui_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_leaderboard(app, pilot)
        ungrouped = list(screen.row_members)
        assert len(ungrouped) == 7 and all(len(m) == 1 for m in ungrouped)

        await choose_group(app, pilot, "seed")
        await wait_for(pilot, lambda: len(screen.row_members) == 6, what="grouped rows")
        members = screen.row_members
        assert (vanilla, other_seed) in members
        # the two sweep points differ in blend_start: not pooled; nor with blended progressive_shrink=2
        assert (ids["swept"][0],) in members and (ids["swept"][1],) in members and (ids["finished"][1],) in members
        row = members.index((vanilla, other_seed))
        values = tui_store.run_metric_values([vanilla, other_seed])
        pooled = (values[vanilla]["bg_mse"] + values[other_seed]["bg_mse"]) / 2
        cell = str(column(screen, "bg_mse")[row])
        assert cell.startswith(f"{pooled:.4f} ["), cell  # mean of the run values [lowest–highest]
        assert str(column(screen, "run")[row]).startswith("2 runs")
        assert "seeds 0,5" in str(column(screen, "params")[row])
        assert str(column(screen, "done")[row]) == "12"
        # still ranked by the pooled value, best first
        pooled_values = [float(str(c).split()[0]) for c in column(screen, "bg_mse")]
        assert pooled_values == sorted(pooled_values)

        board(screen).move_cursor(row=row)
        await pilot.press("m")  # a pooled row cannot be marked
        await wait_for(pilot, lambda: any("pools several runs" in n.message for n in app._notifications),
                       what="warning on marking a group")
        await choose_group(app, pilot, None)
        await wait_for(pilot, lambda: len(screen.row_members) == 7, what="ungrouped again")
        assert screen.row_members == ungrouped


async def choose_group(app, pilot, key: str | None, *, cancel: bool = False) -> None:
    """`g`, then the arrow keys to the option of `key` (None: no grouping) and enter (or
    escape with `cancel`), as a user does; the chooser starts on the current choice."""
    from textual.widgets import OptionList

    board_screen = app.screen
    await pilot.press("g")
    await wait_for(pilot, lambda: type(app.screen).__name__ == "ChoiceScreen", what="the group chooser")
    options = app.screen.query_one(OptionList)
    keys = [None, "seed"] + [k for k, _ in board_screen.view.group_keys]
    assert options.option_count == len(keys)
    target = keys.index(key)
    assert options.highlighted == keys.index(board_screen.state.group)  # the current one
    steps = target - options.highlighted
    await pilot.press(*(["down"] * steps if steps > 0 else ["up"] * -steps))
    assert options.highlighted == target
    await pilot.press("escape" if cancel else "enter")
    await wait_for(pilot, lambda: app.screen is board_screen, what="back on the leaderboard")


async def test_grouping_by_a_parameter_pools_every_run_with_its_value_ranked_by_the_metrics_direction(tui_store):
    ids = tui_store.ids
    # blend_start 0.25 again (another seed and a tdpaint run: two configurations) and a vanilla
    # run, whose technique has no blend_start: the "(none)" group
    extra_blended = finish(tui_store, "blended", 0.4, seed=7, blend_start=0.25)
    extra_tdpaint = finish(tui_store, "tdpaint", 2.6, blend_start=0.25)
    extra_vanilla = finish(tui_store, "vanilla", 0.2, seed=9)
    runs = {row.run_id: row for row in tui_store.leaderboard("bg_mse", descending=False)}
    # by hand: the store's recorded parameter, else blended's and tdpaint's default (0.0)
    expected = {"blend_start=0.25": sorted([ids["swept"][1], extra_blended, extra_tdpaint]),
                "blend_start=0.0": sorted([ids["swept"][0], ids["finished"][1], ids["finished"][2]]),
                "blend_start=(none)": sorted([ids["finished"][0], ids["with_errors"], extra_vanilla])}
    assert {run.params.get("blend_start") for run in runs.values() if run.run_id in expected["blend_start=0.0"]} \
        <= {0.0, None}
    assert sorted(run_id for members in expected.values() for run_id in members) == sorted(runs)
    values = tui_store.run_metric_values(list(runs))

    def mean(label, metric):
        return sum(values[r][metric] for r in expected[label]) / len(expected[label])

    app = make_app(tui_store)
    async with app.run_test(size=(160, 40)) as pilot:  # wide enough for the pooled rows' intervals
        screen = await open_leaderboard(app, pilot)
        ungrouped = list(screen.row_members)
        await choose_group(app, pilot, "param.blend_start", cancel=True)  # escape: nothing changes
        await pilot.pause(0.2)
        assert screen.state.group is None and screen.row_members == ungrouped

        await choose_group(app, pilot, "param.blend_start")
        await wait_for(pilot, lambda: screen.complete and "group" in [k.value for k in board(screen).columns],
                       what="rows per blend_start")
        labels = [str(c) for c in column(screen, "group")]
        assert sorted(labels) == sorted(expected)
        assert [list(m) for m in screen.row_members] == [expected[label] for label in labels]
        # ranked by the pooled bg_mse, lower first (its direction in the catalogue)
        means = [mean(label, "bg_mse") for label in labels]
        assert means == sorted(means) and [str(c) for c in column(screen, "rank")] == ["1", "2", "3"]
        for label, cell in zip(labels, column(screen, "bg_mse")):
            low = min(values[r]["bg_mse"] for r in expected[label])
            high = max(values[r]["bg_mse"] for r in expected[label])
            assert str(cell) == f"{mean(label, 'bg_mse'):.4f} [{low:.4f}–{high:.4f}]", (label, str(cell))
        assert bold_green(column(screen, "bg_mse")[0]) and not any(bold_green(c) for c in column(screen, "bg_mse")[1:])
        runs_cells = dict(zip(labels, (str(c) for c in column(screen, "run"))))
        assert runs_cells["blend_start=0.25"] == "3 runs: " + ",".join(map(str, expected["blend_start=0.25"]))
        configs = dict(zip(labels, (str(c) for c in column(screen, "configs"))))
        assert configs == {"blend_start=0.25": "2", "blend_start=0.0": "3", "blend_start=(none)": "2"}
        techniques = dict(zip(labels, (str(c) for c in column(screen, "technique"))))
        assert techniques["blend_start=0.25"] == "(mixed)"
        status = str(screen.query_one("#status").render())
        assert "grouped by param.blend_start: 3 groups, mean [lowest–highest run value]" in status

        await pilot.press("o")  # bg_psnr: higher is better, the highest pooled mean first
        await wait_for(pilot, lambda: screen.sort_metric == "bg_psnr" and screen.complete, what="by bg_psnr")
        labels = [str(c) for c in column(screen, "group")]
        psnr = [mean(label, "bg_psnr") for label in labels]
        assert psnr == sorted(psnr, reverse=True) and len(set(psnr)) == 3
        await pilot.press("O")  # the worst first
        await wait_for(pilot, lambda: screen.state.reverse and screen.complete, what="worst first")
        assert [str(c) for c in column(screen, "group")] == labels[::-1]

        board(screen).move_cursor(row=0)
        await pilot.press("enter")  # a group row opens its first run
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunDetailScreen", what="run detail")
        assert app.screen.run_id == expected[labels[-1]][0]
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="back")

        await choose_group(app, pilot, "seed")  # back to configurations, then to runs
        await wait_for(pilot, lambda: screen.complete and "group" not in [k.value for k in board(screen).columns],
                       what="configurations")
        assert (ids["swept"][1], extra_blended) in screen.row_members
        assert (ids["finished"][0], extra_vanilla) in screen.row_members
        await choose_group(app, pilot, None)
        await wait_for(pilot, lambda: screen.complete and len(screen.row_members) == len(runs), what="runs again")
        assert sorted(screen.row_run_ids) == sorted(runs)


async def test_marking_two_runs_and_c_opens_compare_with_the_paired_statistics(tui_store):
    app = make_app(tui_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_leaderboard(app, pilot)
        order = screen.row_run_ids
        await pilot.press("m")
        await pilot.press("c")  # only one marked: a warning, no screen
        await wait_for(pilot, lambda: any("exactly two" in n.message for n in app._notifications),
                       what="warning with one mark")
        assert type(app.screen).__name__ == "LeaderboardScreen"
        await pilot.press("down", "down", "m")
        run_a, run_b = order[0], order[2]
        assert screen.marked == [run_a, run_b]
        assert [str(c) for c in column(screen, "mark")][:3] == ["A", "", "B"]
        await pilot.press("m")  # unmark B, mark again
        assert screen.marked == [run_a] and str(column(screen, "mark")[2]) == ""
        await pilot.press("m")
        await pilot.press("o")  # re-sorting keeps the marks on their runs
        await wait_for(pilot, lambda: screen.sort_metric == "bg_psnr", what="resorted")
        marks = dict(zip(screen.row_run_ids, (str(c) for c in column(screen, "mark"))))
        assert marks[run_a] == "A" and marks[run_b] == "B" and list(marks.values()).count("") == len(marks) - 2

        await pilot.press("c")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CompareScreen", what="compare shown")
        compare = app.screen
        assert (compare.run_a, compare.run_b) == (run_a, run_b)
        await wait_for(pilot, lambda: compare.data is not None, what="compare loaded")
        expected = compare_runs(tui_store, run_a, run_b)
        assert compare.statistics == expected
        stats = compare.query_one("#statistics", DataTable)
        assert stats.row_count == len(expected)
        first = [str(c) for c in stats.get_row_at(0)]
        entry = expected[0]
        assert first[0] == entry["metric"] == "bg_mse" and first[1] == "6"
        assert first[4] == f"{entry['difference']:.4f}" and first[7] == f"{entry['p_value']:.3g}"
        assert first[5] == f"run {run_b} worse"  # run_b (3rd by bg_mse) has the larger error

        per_sample = compare.query_one("#per-sample", DataTable)
        await wait_for(pilot, lambda: per_sample.row_count == 6, what="per-sample rows")
        a_values = tui_store.sample_metric_values(run_a)["bg_mse"]
        b_values = tui_store.sample_metric_values(run_b)["bg_mse"]
        for key in per_sample.rows:
            sample_id = int(key.value)
            row = [str(c) for c in per_sample.get_row(key)]
            assert row[1] == f"{a_values[sample_id]:.4f}" and row[2] == f"{b_values[sample_id]:.4f}"
            assert row[3] == f"{b_values[sample_id] - a_values[sample_id]:.4f}"
        await pilot.press("o")
        assert compare.metric == "bg_psnr"
        first_sample = int(next(iter(per_sample.rows)).value)
        assert str(per_sample.get_row_at(0)[1]) == \
            f"{tui_store.sample_metric_values(run_a)['bg_psnr'][first_sample]:.4f}"
        # the highlighted sample's images: input with mask, both outputs, the reference
        strip = compare.query_one("#images")
        await wait_for(pilot, lambda: len(strip.query(HalfcellImage)) == 4, what="four images")
        captions = [str(lbl.render()) for lbl in strip.query("Label")]
        assert captions == ["input + mask", f"A: run {run_a}", f"B: run {run_b}", "reference"]
        await pilot.press("down")
        await wait_for(pilot, lambda: compare._image_key is not None and "0001-" in str(compare._image_key[2]),
                       what="images follow the cursor")

        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "LeaderboardScreen", what="back")
        assert app.screen is screen and screen.marked == [run_a, run_b]


async def test_compare_pairs_only_common_samples_shows_failures_and_swaps(tui_store):
    ids = tui_store.ids
    run_a, run_b = ids["with_errors"], ids["finished"][0]  # A failed one sample
    app = make_app(tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await open_leaderboard(app, pilot)
        app.open_compare(run_a, run_b)
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CompareScreen" and app.screen.data is not None,
                       what="compare loaded")
        compare = app.screen
        assert compare.statistics == compare_runs(tui_store, run_a, run_b)
        assert [entry["n"] for entry in compare.statistics] == [5, 5, 5, 5]  # the failed sample is left out
        per_sample = compare.query_one("#per-sample", DataTable)
        await wait_for(pilot, lambda: per_sample.row_count == 6, what="per-sample rows")
        failed = [[str(c) for c in per_sample.get_row_at(i)] for i in range(6) if str(per_sample.get_row_at(i)[1])
                  == "failed"]
        assert len(failed) == 1 and failed[0][3] == "-"
        await pilot.press("x")  # swap: B − A the other way round
        await wait_for(pilot, lambda: compare.data is not None and (compare.run_a, compare.run_b) == (run_b, run_a),
                       what="swapped")
        assert compare.statistics == compare_runs(tui_store, run_b, run_a)
        assert compare.statistics[0]["difference"] == -compare_runs(tui_store, run_a, run_b)[0]["difference"]


async def test_compare_at_80_columns_shows_the_interval_and_p_whole(tui_store):
    """At 80 columns the statistics in their full order run off the right edge inside the
    interval; narrow, the difference, interval, p and verdict come first and are all on
    screen, the means after them. Widening the terminal restores the full order."""
    from tui_helpers import screen_text

    from inpaint_tui.read.present import format_interval, format_number, format_p_value
    from inpaint_tui.tui.screens.compare import NARROW_ORDER, STATISTICS_COLUMNS

    run_a, run_b = tui_store.ids["finished"][:2]
    app = make_app(tui_store)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_leaderboard(app, pilot)
        app.open_compare(run_a, run_b)
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CompareScreen" and app.screen.data is not None,
                       what="compare loaded")
        compare = app.screen
        await settle_tables(pilot)
        stats = compare.query_one("#statistics", DataTable)
        assert [c.key.value for c in stats.ordered_columns] == list(NARROW_ORDER)
        lines = "\n".join(screen_text(app))
        for entry in compare_runs(tui_store, run_a, run_b):
            if "difference" not in entry:
                continue
            for text in (format_number(entry["difference"]),
                         format_interval(entry["ci_low"], entry["ci_high"], number=format_number, separator=", "),
                         format_p_value(entry["p_value"])):
                assert text in lines, (text, lines)
        await pilot.resize_terminal(160, 40)
        await wait_for(pilot, lambda: not compare.narrow, what="the full order when wide")
        assert [c.key.value for c in stats.ordered_columns] == [key for key, _ in STATISTICS_COLUMNS]
        assert [str(c) for c in stats.get_row_at(0)][0] == "bg_mse"


async def test_enter_opens_the_run_detail(tui_store):
    app = make_app(tui_store)
    opened = []
    original = app.open_run

    def open_run(run_id: int) -> None:
        opened.append(run_id)
        original(run_id)

    app.open_run = open_run
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_leaderboard(app, pilot)
        await pilot.press("down", "enter")
        assert opened == [screen.row_run_ids[1]]
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunDetailScreen", what="run detail shown")
        assert app.screen.run_id == screen.row_run_ids[1]


async def test_leaderboard_handles_ten_thousand_runs(tui_store, monkeypatch):
    """Rows are built on a thread; the table shows the top DISPLAY_LIMIT, says how many there
    are, and re-sorts them (the top of the new ranking, from all 10 000)."""
    from inpaint_tui.tui.screens.leaderboard_view import DISPLAY_LIMIT

    rows = []
    for i in range(10_000):
        mse = ((i * 7919) % 10_007) / 1e5
        metrics = {"bg_mse": mse, "bg_psnr": math.inf if i == 5 else 20 + ((i * 104_729) % 10_007) / 1000}
        rows.append(LeaderboardRow(
            run_id=i + 1, technique=("vanilla", "blended", "tdpaint")[i % 3], params={}, model="tiny", steps=20,
            seed=i, sample_set="demo", status=RunStatus.FINISHED, samples_done=6, metrics=metrics,
            summaries={n: MetricSummary(value=v, ci_low=v * 0.9, ci_high=v * 1.1, n=6) for n, v in metrics.items()}))
    monkeypatch.setattr(type(tui_store), "leaderboard", lambda self, metric, **kw: list(rows))
    app = make_app(tui_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_leaderboard(app, pilot)
        await wait_for(pilot, lambda: screen.complete, timeout=60, what="10 000 rows")
        assert board(screen).row_count == DISPLAY_LIMIT
        assert f"top {DISPLAY_LIMIT} of 10000 runs" in str(screen.query_one("#status").render())
        by_mse = sorted(rows, key=lambda r: (r.metrics["bg_mse"], r.run_id))
        assert screen.row_run_ids == [r.run_id for r in by_mse][:DISPLAY_LIMIT]
        await pilot.press("o")
        await wait_for(pilot, lambda: screen.sort_metric == "bg_psnr" and screen.complete, timeout=60,
                       what="resorted 10 000")
        assert label(screen, "bg_psnr") == "bg_psnr ▼"
        by_psnr = sorted(rows, key=lambda r: (-r.metrics["bg_psnr"], r.run_id))
        assert screen.row_run_ids == [r.run_id for r in by_psnr][:DISPLAY_LIMIT] and by_psnr[0].run_id == 6  # inf first
        assert str(column(screen, "bg_psnr")[0]).startswith("inf") and bold_green(column(screen, "bg_psnr")[0])
        assert [str(c) for c in column(screen, "rank")[:3]] == ["1", "2", "3"]


# --- sweep plot -----------------------------------------------------------------------------------


async def test_sweep_plot_shows_the_sweep_points_and_draws(tui_store):
    ids = tui_store.ids
    app = make_app(tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("w")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SweepPlotScreen", what="sweeps shown")
        screen = app.screen
        points = screen.query_one("#points", DataTable)
        await wait_for(pilot, lambda: points.row_count == 2, what="two points")
        assert screen.query_one("#sweep", Select).value == ids["sweep"]
        assert (screen.metric, screen.x) == ("bg_mse", "blend_start")
        values = tui_store.run_metric_values(ids["swept"])
        rows = [[str(c) for c in points.get_row_at(i)] for i in range(2)]
        assert [r[0] for r in rows] == [str(i) for i in ids["swept"]]
        assert [r[2] for r in rows] == ["0.0", "0.25"]
        assert [r[-1] for r in rows] == [f"{values[i]['bg_mse']:.4f}" for i in ids["swept"]]
        (series,) = screen.series
        assert series.label == "blended" and series.xs == [0.0, 0.25]
        assert series.ys == [values[i]["bg_mse"] for i in ids["swept"]]
        summaries = tui_store.run_metrics(ids["swept"])[1]
        assert series.bars == [(summaries[i]["bg_mse"].ci_low, summaries[i]["bg_mse"].ci_high) for i in ids["swept"]]
        assert "bars: 95% bootstrap interval over samples" in str(screen.query_one("#summary").render())
        plot = screen.query_one("#plot")
        drawn = plot.render().plain
        assert "bg_mse against blend_start" in drawn and "blended" in drawn

        await pilot.press("m")  # next metric
        assert screen.metric == "bg_psnr" and screen.query_one("#metric", Select).value == "bg_psnr"
        assert screen.series[0].ys == [values[i]["bg_psnr"] for i in ids["swept"]]
        await pilot.pause()
        assert "bg_psnr against blend_start" in plot.render().plain
        assert [str(points.get_row_at(i)[-1]) for i in range(2)] == [f"{values[i]['bg_psnr']:.4f}"
                                                                      for i in ids["swept"]]


def test_sweep_series_pool_seeds_and_use_categories_for_non_numeric_axes():
    from datetime import datetime

    from inpaint_tui.read.sweep_series import SweepData, axis_values, build_series
    from inpaint_tui.store import SweepInfo

    sweep = SweepInfo(id=1, name=None, spec={}, command=None, created_at=datetime(2026, 1, 1), run_ids=[1, 2, 3, 4, 5],
                      points=[{"technique": "blended", "post_condition": False, "seed": 0},
                              {"technique": "blended", "post_condition": False, "seed": 1},
                              {"technique": "blended", "post_condition": True, "seed": 0},
                              {"technique": "tdpaint", "post_condition": True, "seed": 0},
                              {"technique": "tdpaint", "post_condition": False, "seed": 0}],
                      reused=[False] * 5)
    values = {1: {"bg_mse": 1.0}, 2: {"bg_mse": 3.0}, 3: {"bg_mse": 5.0}, 4: {"bg_mse": 7.0}, 5: {}}
    series, axis, numeric = build_series(SweepData([sweep], sweep, {}, values), "bg_mse", "post_condition")
    assert axis == [False, True] and not numeric
    assert [(s.label, s.xs, s.ys) for s in series] == [("blended", [False, True], [2.0, 5.0]),
                                                       ("tdpaint", [True], [7.0])]
    assert axis_values([50.0, math.inf, 10.0]) == ([10.0, 50.0, math.inf], False)  # inf: a category
    assert axis_values([0.5, 0, 0.25]) == ([0, 0.25, 0.5], True)


def test_sweep_series_bars_are_the_run_interval_or_the_spread_over_seeds():
    from datetime import datetime

    from inpaint_tui.read.sweep_series import SweepData, bar_caption, build_series
    from inpaint_tui.store import MetricSummary, SweepInfo

    def sweep_of(points):
        return SweepInfo(id=1, name=None, spec={}, command=None, created_at=datetime(2026, 1, 1),
                         run_ids=list(range(1, len(points) + 1)), points=points, reused=[False] * len(points))

    summaries = {1: {"bg_mse": MetricSummary(value=2.0, ci_low=1.5, ci_high=2.5, n=6)},
                 2: {"bg_mse": MetricSummary(value=4.0, ci_low=3.0, ci_high=5.0, n=6)},
                 3: {"bg_mse": MetricSummary(value=6.0, n=6)}}  # no interval stored: no bar
    values = {run_id: {"bg_mse": s["bg_mse"].value} for run_id, s in summaries.items()}
    one_seed = sweep_of([{"technique": "blended", "blend_start": b} for b in (0, 0.25, 0.5)])
    [line], _, _ = build_series(SweepData([one_seed], one_seed, {}, values, summaries), "bg_mse", "blend_start")
    assert line.bars == [(1.5, 2.5), (3.0, 5.0), None] and not line.pooled
    assert bar_caption([line]) == "bars: 95% bootstrap interval over samples"

    seeds = sweep_of([{"technique": "blended", "blend_start": 0, "seed": seed} for seed in (0, 1, 2)])
    [line], _, _ = build_series(SweepData([seeds], seeds, {}, values, summaries), "bg_mse", "blend_start")
    assert line.ys == [4.0] and line.bars == [(2.0, 6.0)] and line.pooled
    assert bar_caption([line]) == "bars: lowest to highest value over seeds"

    [line], _, _ = build_series(SweepData([one_seed], one_seed, {}, values), "bg_mse", "blend_start")
    assert line.bars == [None, None, None] and bar_caption([line]) == ""


async def test_sweep_screen_says_so_when_there_are_no_sweeps(tui_store):
    with tui_store.engine.begin() as connection:
        connection.execute(text("DELETE FROM sweep_run"))
        connection.execute(text("DELETE FROM sweep"))
    app = make_app(tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("w")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SweepPlotScreen", what="sweeps shown")
        screen = app.screen
        empty = screen.query_one("#empty")
        await wait_for(pilot, lambda: screen.data is not None, what="sweeps loaded")
        assert empty.display and not screen.query_one("#body").display
        assert "No sweeps yet" in str(empty.render())


# --- snapshots ------------------------------------------------------------------------------------


def _stable(app) -> None:
    app.sub_title = "experiments.db"  # not the temporary path


def test_leaderboard_snapshot(tui_store, snap_compare):
    app = make_app(tui_store, start_screen="leaderboard")

    async def ready(pilot):
        _stable(app)
        await wait_for(pilot, lambda: type(app.screen).__name__ == "LeaderboardScreen" and app.screen.view
                       is not None and board(app.screen).row_count > 0, what="leaderboard rows")
        await wait_for(pilot, lambda: app.screen.complete, what="the whole ranking")
        await pilot.press("down", "down", "m", "up", "up", "m")
        await pilot.pause()
        await settle_tables(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_compare_snapshot(tui_store, snap_compare):
    ids = tui_store.ids
    app = make_app(tui_store, start_screen="leaderboard")

    async def ready(pilot):
        _stable(app)
        await wait_for(pilot, lambda: type(app.screen).__name__ == "LeaderboardScreen", what="leaderboard")
        app.open_compare(ids["finished"][0], ids["finished"][1])
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CompareScreen" and app.screen.data is not None,
                       what="compare loaded")
        strip = app.screen.query_one("#images")
        await wait_for(pilot, lambda: len(strip.query(HalfcellImage)) == 4, what="images")
        await pilot.pause(0.2)
        await settle_tables(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


async def test_first_load_shows_the_head_of_the_ranking_then_the_whole(tui_store, monkeypatch):
    """On a large database the best runs are shown before the whole ranking is read: the
    head must be exactly the top of the full view, with no "best" highlight (the best of a
    column may lie further down), and be replaced by the full view."""
    from inpaint_tui.tui.screens import leaderboard, leaderboard_view

    monkeypatch.setattr(leaderboard, "HEAD_ROWS", 2)
    shown = []
    original = leaderboard.LeaderboardScreen.show
    monkeypatch.setattr(leaderboard.LeaderboardScreen, "show", lambda self, view: (shown.append(view), original(self, view)))
    app = make_app(tui_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_leaderboard(app, pilot)
        await wait_for(pilot, lambda: screen.complete, what="the full ranking")
        head, full = shown[0], shown[-1]
        assert head.partial and not full.partial
        assert len(head.rows) == 2 and len(full.rows) > 2
        assert head.keys == full.keys[:2]
        assert not any(cell.style == leaderboard_view.BEST_STYLE for _, cells in head.rows for cell in cells)
        assert any(cell.style == leaderboard_view.BEST_STYLE for _, cells in full.rows for cell in cells)
        assert screen.row_keys == full.keys
        assert "loading" not in str(screen.query_one("#status").render())


async def test_grouped_rows_follow_the_filter_box_unfinished_runs_and_mark_a_one_run_group(tui_store):
    from textual.widgets import Input

    ids = tui_store.ids

    def techniques(**options):  # by hand: technique -> run ids, from the store's own ranking
        found: dict = {}
        for row in sorted(tui_store.leaderboard("bg_mse", descending=False, **options), key=lambda r: r.run_id):
            found.setdefault(f"technique={row.technique}", []).append(row.run_id)
        return found

    def shown():
        return dict(zip((str(c) for c in column(screen, "group")), (list(m) for m in screen.row_members)))

    app = make_app(tui_store)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_leaderboard(app, pilot)
        await choose_group(app, pilot, "technique")
        await wait_for(pilot, lambda: screen.complete and "group" in [k.value for k in board(screen).columns]
                       and shown() == techniques(), what="rows per technique")
        assert shown()["technique=blended"] == sorted([ids["finished"][1], *ids["swept"]])

        screen.query_one("#filter", Input).value = "param.blend_start = 0.25 or technique = vanilla"
        await wait_for(pilot, lambda: screen.complete and set(shown()) == {"technique=blended", "technique=vanilla"},
                       what="the filter applied to the groups")
        assert shown() == {"technique=blended": [ids["swept"][1]], "technique=vanilla": [ids["finished"][0]]}
        screen.query_one("#filter", Input).value = ""
        await wait_for(pilot, lambda: screen.complete and shown() == techniques(), what="the filter cleared")
        screen.query_one("#board", DataTable).focus()

        await pilot.press("a")  # unfinished runs join their technique's group
        unfinished = techniques(include_unfinished=True)
        await wait_for(pilot, lambda: screen.complete and shown() == unfinished, what="unfinished included")
        assert ids["running"] in unfinished["technique=blended"] and "technique=repaint" in unfinished
        await pilot.press("a")
        await wait_for(pilot, lambda: screen.complete and shown() == techniques(), what="finished only again")

        row = list(shown()).index("technique=tdpaint")  # one run: `m` marks it
        board(screen).move_cursor(row=row)
        await pilot.press("m")
        await wait_for(pilot, lambda: screen.marked == [ids["finished"][2]], what="the tdpaint run marked")
        assert str(column(screen, "mark")[row]) == "A"
        assert screen.state.group == "technique"  # kept through every reload
