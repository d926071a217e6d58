"""Snapshots of every screen at 80×24 and 120×40 (pytest-textual-snapshot), on the test
database with images drawn as half-blocks so the pictures are deterministic. Each also checks
the screen's text: no input or select too narrow for its value, no number cut to "…", no
column drawn narrower than its cells, no footer key off the screen (at 200×60 too). Update after an intended change with
`pytest tests/faces/test_tui_snapshots.py --snapshot-update` and look at the SVGs."""

import pytest
from textual.widgets import DataTable, SelectionList
from textual_image.widget import HalfcellImage
from tui_helpers import assert_readable, settle_tables, until

from inpaint_tui.tui.app import InpaintApp

SIZES = {"80x24": (80, 24), "120x40": (120, 40)}


def _app(store, **options):
    return InpaintApp(store, image_class=HalfcellImage, refresh_seconds=3600, offer_demo=False, **options)


async def _settle(pilot, table_selector: str, rows: int) -> None:
    """Wait for the rows and for no load in flight (a slow CI machine may still be showing one)."""
    await until(pilot, lambda: (tables := pilot.app.screen.query(table_selector)) and tables.first(DataTable).row_count
                 >= rows and not pilot.app.screen._loading(), f"{rows} rows in {table_selector}")
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.3)
    await settle_tables(pilot)


async def _images(pilot, count: int) -> None:
    await until(pilot, lambda: len(pilot.app.screen.query("ImageStrip HalfcellImage")) >= count, f"{count} images")
    await pilot.pause(0.3)


async def dashboard(pilot, store):
    await _settle(pilot, "#recent", 8)


async def samples(pilot, store):
    await pilot.app.action_area("samples")
    await _settle(pilot, "#samples", 6)
    await _images(pilot, 2)


async def new_run(pilot, store):
    await pilot.app.action_area("new_run")
    screen = pilot.app.screen
    await until(pilot, lambda: screen.set_name() == "demo", "the sample sets")
    screen.query_one("#techniques", SelectionList).select("blended")  # its form under the run settings
    await until(pilot, lambda: screen.technique_fields("blended"), "the blended form")
    await pilot.pause(0.3)
    screen.form("blended").scroll_visible(animate=False, top=True)  # its parameter fields in view
    await pilot.pause(0.3)


async def runs(pilot, store):
    await pilot.app.action_area("runs")
    await _settle(pilot, "#runs", 10)


async def leaderboard(pilot, store):
    await pilot.app.action_area("leaderboard")
    await until(pilot, lambda: getattr(pilot.app.screen, "complete", False), "the whole ranking")
    await pilot.pause(0.2)
    await settle_tables(pilot)


async def leaderboard_grouped(pilot, store):
    """Grouped by a parameter through the chooser (g, the arrows, enter), as a user does."""
    await leaderboard(pilot, store)
    screen = pilot.app.screen
    keys = [key for key, _ in screen.view.group_keys]
    await pilot.press("g")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "ChoiceScreen", "the group chooser")
    await pilot.press(*["down"] * (2 + keys.index("param.blend_start")), "enter")
    await until(pilot, lambda: pilot.app.screen is screen and screen.state.group == "param.blend_start"
                 and screen.complete and screen.view.state.group == "param.blend_start", "rows per blend_start")
    await pilot.pause(0.2)
    await settle_tables(pilot)


async def run_detail(pilot, store):
    pilot.app.open_run(store.ids["with_errors"])
    await _settle(pilot, "#samples", 6)
    await _images(pilot, 4)
    await settle_tables(pilot)


async def compare(pilot, store):
    await leaderboard(pilot, store)
    pilot.app.open_compare(store.ids["finished"][0], store.ids["finished"][1])
    await until(pilot, lambda: getattr(pilot.app.screen, "data", None) is not None, "the comparison")
    await _images(pilot, 4)
    await settle_tables(pilot)


async def sweeps(pilot, store):
    await pilot.app.action_area("sweeps")
    await _settle(pilot, "#points", 2)


async def _press_for(pilot, key: str, screen_name: str) -> None:
    """Press `key` and wait for the screen (a dialog, help) it opens."""
    await pilot.press(key)
    await until(pilot, lambda: type(pilot.app.screen).__name__ == screen_name, screen_name)
    await pilot.pause(0.2)


async def help_keys(pilot, store):
    await leaderboard(pilot, store)
    await _press_for(pilot, "question_mark", "HelpScreen")


async def tags_dialog(pilot, store):
    await runs(pilot, store)
    await _press_for(pilot, "t", "TextScreen")


async def columns_dialog(pilot, store):
    await runs(pilot, store)
    await _press_for(pilot, "C", "ColumnsScreen")


async def diff(pilot, store):
    await runs(pilot, store)
    pilot.app.open_diff([store.ids["finished"][0], store.ids["finished"][1], store.ids["with_errors"]])
    await until(pilot, lambda: getattr(pilot.app.screen, "data", None) is not None
                 and type(pilot.app.screen).__name__ == "DiffScreen", "the diff")
    await pilot.pause(0.2)
    await settle_tables(pilot)


async def judging(pilot, store):
    """From the leaderboard: mark two runs, J, as a researcher starting a judging session."""
    await leaderboard(pilot, store)
    await pilot.press("m", "down", "m", "J")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "JudgeScreen", "the judging screen")
    screen = pilot.app.screen
    await until(pilot, lambda: not screen.busy and len(screen.query("ImageStrip HalfcellImage")) == 3, "a trial")
    pilot.app.clear_notifications()  # it names the rater, who differs from machine to machine
    await pilot.pause(0.3)


SCREENS = [dashboard, samples, new_run, runs, leaderboard, leaderboard_grouped, run_detail, compare, sweeps, help_keys,
           tags_dialog, columns_dialog, diff, judging]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("prepare", SCREENS, ids=[f.__name__ for f in SCREENS])
def test_screen_snapshot(snap_compare, tui_store, prepare, size):
    async def ready(pilot):
        await prepare(pilot, tui_store)
        assert_readable(pilot.app)

    assert snap_compare(_app(tui_store), terminal_size=SIZES[size], run_before=ready)


@pytest.mark.parametrize("prepare", SCREENS, ids=[f.__name__ for f in SCREENS])
async def test_screen_is_readable_at_200x60(tui_store, prepare):
    """A wide terminal: the same checks, without a snapshot (the layouts only grow)."""
    app = _app(tui_store)
    async with app.run_test(size=(200, 60)) as pilot:
        await prepare(pilot, tui_store)
        assert_readable(app)
