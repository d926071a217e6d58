"""The TUI's keys, driven with Textual's Pilot on the TUI test database: pager keys in every
table, area keys that always open the area's main screen, `?` listing the current screen's
bindings (read from the bindings), reverse sorts, a sort scrolling its column into view, and
the readability checks the snapshot tests rely on (they must be able to fail)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input
from textual_image.widget import HalfcellImage
from tui_helpers import assert_readable, until

from inpaint_tui.tui.app import InpaintApp
from inpaint_tui.tui.base import Table
from inpaint_tui.tui.screens.help import HelpScreen
from inpaint_tui.tui.screens.leaderboard import LeaderboardScreen
from inpaint_tui.tui.screens.runs import RunsScreen


def make_app(store, **options) -> InpaintApp:
    return InpaintApp(store, image_class=HalfcellImage, refresh_seconds=60, offer_demo=False, **options)


async def wait_for(pilot, condition, what: str = "condition", timeout: float = 15.0) -> None:
    await until(pilot, condition, what, timeout)


async def show(app, pilot, key: str, screen: type):
    await pilot.press(key)
    await wait_for(pilot, lambda: type(app.screen) is screen, f"{screen.__name__} shown")
    return app.screen


async def open_compare(app, pilot, ids) -> None:
    """A comparison pushed on the current area, shown and loaded (a screen popped while its
    header is still mounting trips Textual 8.2's Header: wait for it to settle)."""
    app.open_compare(ids["finished"][0], ids["finished"][1])
    await wait_for(pilot, lambda: type(app.screen).__name__ == "CompareScreen" and app.screen.data is not None,
                   "compare loaded")
    await pilot.pause(0.2)


def cursor(table: DataTable) -> int:
    return table.cursor_coordinate.row


def column_in_view(table: DataTable, key: str) -> bool:
    """Whether the column is wholly inside the table's visible window (fixed columns aside)."""
    x = table._row_label_column_width
    for column in table.ordered_columns:
        width = column.get_render_width(table)
        if column.key.value == key:
            left = table._get_fixed_offset().left
            view = table.scrollable_content_region.width
            return x - table.scroll_x >= left and x + width - table.scroll_x <= view
        x += width
    raise KeyError(key)


async def test_home_end_j_k_page_keys_move_the_cursor_in_a_table(tui_store):
    app = make_app(tui_store, start_screen="runs")
    async with app.run_test(size=(120, 12)) as pilot:  # short: ten runs are more than a page
        table = app.screen.query_one("#runs", Table)
        await wait_for(pilot, lambda: table.row_count == 10, "ten runs")
        assert cursor(table) == 0
        await pilot.press("j", "j")
        assert cursor(table) == 2
        await pilot.press("k")
        assert cursor(table) == 1
        await pilot.press("end")
        assert cursor(table) == 9
        await pilot.press("home")
        assert cursor(table) == 0
        await pilot.press("pagedown")
        assert 0 < cursor(table) < 9
        await pilot.press("pageup")
        assert cursor(table) == 0


async def test_every_screen_table_is_the_shared_table_with_the_pager_keys(tui_store):
    app = make_app(tui_store)
    async with app.run_test(size=(120, 40)) as pilot:
        for key in "dsrlw":
            await pilot.press(key)
            await pilot.pause(0.2)
            tables = list(app.screen.query(DataTable))
            assert tables and all(isinstance(table, Table) for table in tables), type(app.screen).__name__


async def test_an_area_key_opens_the_areas_main_screen_whatever_was_stacked_on_it(tui_store):
    ids = tui_store.ids
    app = make_app(tui_store)
    async with app.run_test(size=(120, 40)) as pilot:
        board = await show(app, pilot, "l", LeaderboardScreen)
        await open_compare(app, pilot, ids)
        await show(app, pilot, "l", LeaderboardScreen)  # from the compare pushed on it
        assert app.screen is board and app.screen_stack == [board]

        await open_compare(app, pilot, ids)
        await show(app, pilot, "r", RunsScreen)
        app.open_run(ids["finished"][0])
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunDetailScreen" and app.screen.data is not None,
                       "run detail")
        await pilot.pause(0.2)
        await show(app, pilot, "l", LeaderboardScreen)  # another area, then back: not the old compare
        assert app.screen is board and len(app.screen_stack) == 1
        await show(app, pilot, "r", RunsScreen)  # the runs area's detail closed too
        assert len(app.screen_stack) == 1

        await open_compare(app, pilot, ids)
        app.open_area("runs")  # what the palette's "Open ..." calls
        await wait_for(pilot, lambda: type(app.screen) is RunsScreen and len(app.screen_stack) == 1, "runs again")


def _ids(bindings) -> set[str]:
    return {binding.id for binding in bindings if binding.id}


@pytest.mark.parametrize("key, screen", [("l", LeaderboardScreen), ("r", RunsScreen)])
async def test_help_lists_the_current_screens_bindings_its_tables_and_the_global_ones(tui_store, key, screen):
    app = make_app(tui_store)
    async with app.run_test(size=(120, 40)) as pilot:
        await show(app, pilot, key, screen)
        await show(app, pilot, "question_mark", HelpScreen)
        sections = dict(app.screen.sections)
        title = next(name for name in sections if name.endswith(" screen"))
        assert {row.id for row in sections[title]} == _ids(screen.BINDINGS)
        assert {row.id for row in sections["In tables"]} == _ids(Table.BINDINGS)
        assert {row.id for row in sections["Everywhere"]} == _ids(InpaintApp.BINDINGS) | {"app.palette"}
        other = LeaderboardScreen if screen is RunsScreen else RunsScreen
        assert not _ids(other.BINDINGS) & {row.id for rows in sections.values() for row in rows}
        # each row is the binding's own key and description, and the text shows them
        described = {binding.id: binding for binding in screen.BINDINGS}
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(app.screen.content)  # what the help screen shows, scrolled or not
        text = " ".join(console.export_text().split())
        for row in sections[title]:
            binding = described[row.id]
            assert row.description == binding.description and row.tooltip == binding.tooltip
            assert row.description in text and row.id in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen) is screen, "help closed")


async def test_footers_show_the_main_keys_and_leave_the_rest_to_help(tui_store):
    app = make_app(tui_store)
    async with app.run_test(size=(120, 40)) as pilot:
        await show(app, pilot, "r", RunsScreen)
        footer = app.screen.query_one(Footer)
        await pilot.pause(0.2)
        shown = {key.description for key in footer.query("FooterKey")}
        assert {"Filter", "Sort", "Keys", "Quit"} <= shown
        assert not {"Export", "Report", "Tags", "Note", "Dashboard", "Leaderboard"} & shown


async def test_runs_sort_reverses_and_scrolls_the_sorted_column_into_view(tui_store):
    app = make_app(tui_store, start_screen="runs")
    async with app.run_test(size=(60, 24)) as pilot:  # narrow: the metrics are off to the right
        screen = app.screen
        table = screen.query_one("#runs", Table)
        await wait_for(pilot, lambda: table.row_count == 10, "ten runs")
        newest_first = screen.row_run_ids
        assert newest_first == sorted(newest_first, reverse=True)
        await pilot.press("O")
        await wait_for(pilot, lambda: screen.row_run_ids == newest_first[::-1], "oldest first")
        assert not column_in_view(table, "metric.bg_mse")
        await pilot.press("o", "o", "o")  # status, technique, bg_mse
        assert screen.sort == "metric.bg_mse" and not screen.sort_reversed
        await wait_for(pilot, lambda: column_in_view(table, "metric.bg_mse"), "metric.bg_mse scrolled into view")
        best_first = screen.row_run_ids
        await pilot.press("O")  # the worst first; runs without a value stay last
        values = tui_store.run_metric_values(best_first)
        measured = [run for run in best_first if "bg_mse" in values.get(run, {})]
        await wait_for(pilot, lambda: screen.row_run_ids[:len(measured)] == measured[::-1], "worst first")
        await pilot.press("o", "o")  # clip_local, then id again: back to the left
        await wait_for(pilot, lambda: screen.sort == "id" and column_in_view(table, "run"), "back to the id column")


async def test_leaderboard_sort_scrolls_the_metric_into_view(tui_store):
    app = make_app(tui_store, start_screen="leaderboard")
    async with app.run_test(size=(52, 24)) as pilot:
        screen = app.screen
        table = screen.query_one("#board", Table)
        await wait_for(pilot, lambda: screen.complete, "the ranking")
        assert not column_in_view(table, "seconds")
        await pilot.press("o", "o", "o")  # bg_psnr, unet_calls, seconds
        await wait_for(pilot, lambda: screen.sort_metric == "seconds", "sorted by seconds")
        await wait_for(pilot, lambda: column_in_view(table, "seconds"), "seconds scrolled into view")
        await pilot.press("o")  # bg_mse, the first metric, again
        await wait_for(pilot, lambda: screen.sort_metric == "bg_mse" and column_in_view(table, "bg_mse"),
                       "back to bg_mse")


# --- the readability checks of the snapshot tests catch what they are for -------------------------


class Cramped(App):
    BINDINGS = [Binding(key, f"notify({key!r})", f"Action number {key}", id=f"cramped.{key}") for key in "abcdefgh"]

    def compose(self) -> ComposeResult:
        yield Input("a value of thirty characters..", id="narrow")
        yield Table(id="cells")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#narrow").styles.width = 12
        table = self.query_one("#cells", Table)
        table.styles.height = 3
        table.add_column("value", width=6, key="value")
        table.add_row("0.012345678")  # drawn cut to the column's width
        self.query_one("#narrow").value += "…0.5"  # and a number cut by "…" in the text
        table.focus()


async def test_the_readability_check_flags_a_cut_input_a_cut_number_and_a_long_footer():
    app = Cramped()
    async with app.run_test(size=(60, 10)) as pilot:
        def problems() -> str:
            try:
                assert_readable(app)
            except AssertionError as failure:
                return str(failure)
            return ""

        # On a loaded machine the footer and table may render after a fixed pause: wait for all four.
        await until(pilot, lambda: all(part in problems() for part in ("input #narrow", "number cut", "table #cells",
                                                                       "footer keys off the screen")),
                    "every cramped widget flagged")
        message = problems()
        assert "input #narrow" in message and "number cut" in message and "table #cells column value (6 < 11)" in message
        assert "footer keys off the screen" in message and "Action number h" in message


async def test_leaderboard_intervals_follow_the_width_and_stay_readable(tui_store):
    from tui_helpers import settle_tables

    app = make_app(tui_store, start_screen="leaderboard")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one("#board", Table)
        await wait_for(pilot, lambda: screen.complete, "the ranking")

        def intervals() -> bool:
            return all("[" in str(table.get_cell(key, "bg_mse")) for key in screen.row_keys)

        assert not any("[" in str(table.get_cell(key, "bg_mse")) for key in screen.row_keys)
        await pilot.resize_terminal(120, 40)
        await wait_for(pilot, intervals, "intervals at 120 columns")
        await settle_tables(pilot)
        assert_readable(app)
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: not any("[" in str(table.get_cell(key, "bg_mse")) for key in screen.row_keys),
                       "no intervals at 80 columns")
        await settle_tables(pilot)
        assert_readable(app)
