"""The TUI's filter box (runs screen, leaderboard) in the query language of `runs list
--filter`, its substring fallback and its error line, and the configuration diff screen;
on the varied store of tests/query_database.py (SQLite), with the CLI as the independent side."""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable, Input, Label
from typer.testing import CliRunner

from inpaint_tui.cli import app as cli
from inpaint_tui.read.present import format_params
from inpaint_tui.read.query import parse_filter
from inpaint_tui.tui.app import InpaintApp
from tests import query_database
from tests.faces.test_tui import make_app, wait_for
from tests.tui_helpers import assert_readable, screen_text

EXPRESSIONS = (
    "technique = 'blended'",
    "technique = 'blended' and param.blend_start >= 0.25",
    "metric.bg_mse < 0.02 or tag = 'paper'",
    "status in (finished, failed) and not tag = draft",
    "note ~ 'seam'",
    "tag is null and steps > 20",
)


@pytest.fixture(scope="module")
def query_store(tmp_path_factory):
    """(store, cli_ids): the varied store, and `cli_ids(expr)`, the run ids `runs list
    --filter expr --json` prints."""
    folder = tmp_path_factory.mktemp("tui-query")
    db = folder / "experiments.db"
    store, _ = query_database.build(db, data_dir=folder / "experiments_data")
    runner = CliRunner()

    def cli_diff(*run_ids: int) -> list[str]:
        result = runner.invoke(cli, ["--db", str(db), "runs", "diff", *map(str, run_ids), "--json"],
                               env={"INPAINT_TUI_DATA": str(folder / "experiments_data")})
        assert result.exit_code == 0, result.stdout + result.stderr
        return [difference["field"] for difference in json.loads(result.stdout)["differences"]]

    def cli_ids(expression: str, command: str = "runs list") -> set[int]:
        result = runner.invoke(cli, ["--db", str(db), *command.split(), "--filter", expression, "--json"],
                               env={"INPAINT_TUI_DATA": str(folder / "experiments_data")})
        assert result.exit_code == 0, result.stdout + result.stderr
        return {run["id" if "id" in run else "run_id"] for run in json.loads(result.stdout)}

    cli_ids.diff = cli_diff
    yield store, cli_ids
    store.close()


async def type_filter(pilot, text: str) -> None:
    box = pilot.app.screen.query_one("#filter", Input)
    box.value = text  # Input.Changed, as typing the last character would


def highlighted(label: Label) -> list[tuple[int, int, str]]:
    """(line, cell, text) of each run of reverse-video characters in the label's content (its
    padding aside): where the error line points, as the user sees it."""
    found = []
    for y in range(label.size.height):
        x = 0
        for segment in label.render_line(y):
            if segment.style is not None and segment.style.reverse:
                found.append((y, x, segment.text))
            x += len(segment.text)
    return found


def test_a_bad_expression_keeps_the_offending_span():
    from inpaint_tui.tui.filtering import parse_box

    error = parse_box("  techniqe = 'x'").error  # columns count in the box's text, spaces and all
    assert error.text == "  techniqe = 'x'" and error.text[error.start:error.end] == "techniqe"
    assert "(at column 3)" in str(error) and "\n" not in str(error)
    error = parse_box("technique = 'blended' and").error  # an expression cut short points past its end
    assert error.start == len(error.text)
    assert parse_box("technique = 'blended'").error is None and parse_box("blended").error is None


@pytest.mark.parametrize("area", ["runs", "leaderboard"])
async def test_the_filter_error_highlights_the_offending_characters(query_store, area):
    store, _ = query_store
    app = make_app(store, start_screen=area)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await pilot.pause(0.3)
        error = screen.query_one("#filter-error", Label)
        second_lt = "technique = 'blended' and metric.bg_mse << 2"
        for text, at, token in (("techniqe = 'x'", 0, "techniqe"), (second_lt, second_lt.index("<<") + 1, "<"),
                                ("status in (finished", len("status in (finished"), " ")):  # ended too soon
            await type_filter(pilot, text)
            await wait_for(pilot, lambda: error.display and text in "\n".join(screen_text(app)))
            await pilot.pause(0.1)
            lines = [line.strip() for line in str(error.render()).splitlines()]
            assert f"(at column {at + 1})" in lines[0] and lines[1] == text  # the message, then the expression
            assert highlighted(error) == [(error.size.height - 1, at, token)]  # the message may wrap
        await type_filter(pilot, "technique = 'blended'")
        await wait_for(pilot, lambda: not error.display)


async def test_the_runs_filter_box_is_the_cli_filter(query_store):
    store, cli_ids = query_store
    app: InpaintApp = make_app(store, start_screen="runs")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        table = screen.query_one("#runs", DataTable)
        total = len(store.runs())
        await wait_for(pilot, lambda: table.row_count == total)
        for expression in EXPRESSIONS:
            expected = cli_ids(expression)
            assert expected == set(store.query_run_ids(parse_filter(expression)))
            assert 0 < len(expected) < total, expression  # each expression narrows, so the check means something
            await type_filter(pilot, expression)
            await wait_for(pilot, lambda: set(screen.row_run_ids) == expected)
            assert not screen.query_one("#filter-error", Label).display

        # A bad expression: the parser's message with its column; the last good rows stay.
        kept = list(screen.row_run_ids)
        await type_filter(pilot, "metric.bg_mse < 'x")
        error = screen.query_one("#filter-error", Label)
        await wait_for(pilot, lambda: error.display)
        assert "column 17" in str(error.render()) and "quote" in str(error.render())
        await pilot.pause(0.2)
        assert screen.row_run_ids == kept

        # An empty box shows everything again.
        await type_filter(pilot, "")
        await wait_for(pilot, lambda: table.row_count == total)
        assert not error.display


async def test_a_plain_word_is_a_substring_search(query_store):
    store, _ = query_store
    runs = store.runs()

    def having(word: str) -> set[int]:
        return {run.id for run in runs if word in " ".join([str(run.id), run.status, run.technique, run.sample_set,
                                                            run.model, format_params(run.params), *run.tags,
                                                            run.note]).lower()}

    app = make_app(store, start_screen="runs")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        table = screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(runs))
        await type_filter(pilot, "blended")
        blended = having("blended")
        assert 0 < len(blended) < len(runs) and {run.id for run in runs if run.technique == "blended"} <= blended
        await wait_for(pilot, lambda: set(screen.row_run_ids) == blended)
        await type_filter(pilot, "PAPER")  # any case
        paper = having("paper")
        assert 0 < len(paper) < len(runs)
        await wait_for(pilot, lambda: set(screen.row_run_ids) == paper)
        assert not screen.query_one("#filter-error", Label).display
        assert "word" in screen.query_one("#filter", Input).placeholder


async def test_the_leaderboard_filter_box_is_the_cli_filter(query_store):
    store, cli_ids = query_store
    app = make_app(store, start_screen="leaderboard")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.complete and screen.row_run_ids, timeout=20)
        everything = set(screen.row_run_ids)
        assert everything == cli_ids("id > 0", "leaderboard")  # finished runs only, as the CLI's
        await pilot.press("slash")
        assert screen.focused is screen.query_one("#filter", Input)
        for expression in EXPRESSIONS:
            expected = cli_ids(expression, "leaderboard")
            assert expected < everything, expression
            await type_filter(pilot, expression)
            await wait_for(pilot, lambda: screen.complete and set(screen.row_run_ids) == expected)
            assert not screen.query_one("#filter-error", Label).display
        kept = list(screen.row_run_ids)
        await type_filter(pilot, "param.blend_start >> 1")
        error = screen.query_one("#filter-error", Label)
        await wait_for(pilot, lambda: error.display)
        assert "(at column" in str(error.render())
        await pilot.pause(0.2)
        assert screen.row_run_ids == kept

        # A search word: technique, parameters, tags (the rows do not show tags).
        found = {run.id for run in store.runs() if run.id in everything and "draft" in " ".join(
            [str(run.id), run.technique, format_params(run.params), run.model, run.sample_set, run.status, *run.tags,
             run.note]).lower()}
        assert {run.id for run in store.runs() if "draft" in run.tags} & everything <= found < everything
        await type_filter(pilot, "Draft")
        await wait_for(pilot, lambda: screen.complete and set(screen.row_run_ids) == found and not error.display)
        await type_filter(pilot, "")
        await wait_for(pilot, lambda: screen.complete and set(screen.row_run_ids) == everything)
        await pilot.press("enter")
        assert isinstance(screen.focused, DataTable)


def _pick(store, count: int) -> list[int]:
    """Finished runs of one technique (their parameters comparable) with different settings."""
    from collections import defaultdict

    by_technique = defaultdict(list)
    for run in store.runs(statuses=["finished"]):
        by_technique[run.technique].append(run)
    runs = max(by_technique.values(), key=len)
    assert len(runs) >= count
    return [run.id for run in runs[:count]]


async def test_marked_runs_open_a_diff_of_what_differs_readable_at_80x24(query_store):
    store, cli_ids = query_store
    app = make_app(store, start_screen="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(store.runs()))
        await pilot.press("D")  # nothing marked: a notification, no screen
        assert type(app.screen).__name__ == "RunsScreen"
        assert any("mark two or more" in n.message for n in app._notifications)
        for count in (2, 3):
            chosen = _pick(store, count)
            for run_id in chosen:
                table.move_cursor(row=screen.row_run_ids.index(run_id))
                await pilot.press("m")
            assert screen.marked == chosen
            await pilot.press("D")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "DiffScreen" and app.screen.data is not None)
            diff = app.screen
            expected = cli_ids.diff(*chosen)
            assert diff.fields == expected and expected  # exactly the differing fields, in the CLI's order
            runs = [store.run(run_id) for run_id in chosen]
            assert "technique" not in expected  # one technique: only what differs
            for name in ("model", "steps", "seed", "guidance", "sample_set"):  # by hand, beside the CLI
                assert (name in expected) == (len({getattr(run, name) for run in runs}) > 1), name
            if "seed" in expected:
                cells = diff.query_one("#diff", DataTable).get_row("seed")
                assert [str(cell) for cell in cells] == ["seed", *(str(run.seed) for run in runs)]
            text = "\n".join(screen_text(app))
            assert f"{len(expected)} difference" in text and all(f"run {run_id}" in text for run_id in chosen)
            await pilot.pause(0.2)
            assert_readable(app)
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is screen)
            for run_id in chosen:  # unmark
                table.move_cursor(row=screen.row_run_ids.index(run_id))
                await pilot.press("m")
            assert screen.marked == []


async def test_the_leaderboard_diffs_its_marked_runs(query_store):
    store, cli_ids = query_store
    app = make_app(store, start_screen="leaderboard")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.complete and screen.row_run_ids, timeout=20)
        chosen = screen.row_run_ids[:3]
        table = screen.query_one("#board", DataTable)
        for index in range(3):
            table.move_cursor(row=index)
            await pilot.press("m")
        await pilot.press("D")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "DiffScreen" and app.screen.data is not None)
        assert app.screen.run_ids == chosen and app.screen.fields == cli_ids.diff(*chosen)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
