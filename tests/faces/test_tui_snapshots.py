"""Snapshots of the main screens (pytest-textual-snapshot), on the test database with images
drawn as half-blocks so the pictures are deterministic. Update after an intended change with
`pytest tests/faces/test_tui_snapshots.py --snapshot-update` and look at the SVGs."""

from textual.widgets import DataTable
from textual_image.widget import HalfcellImage
from tui_helpers import settle_tables

from inpaint_tui.tui.app import InpaintApp


def _app(store, **options):
    return InpaintApp(store, image_class=HalfcellImage, refresh_seconds=3600, offer_demo=False, **options)


async def _settle(pilot, table_selector: str, rows: int) -> None:
    """Wait for the rows and for no load in flight (a slow CI machine may still be showing one)."""
    for _ in range(400):
        screen = pilot.app.screen
        tables = screen.query(table_selector)
        if tables and tables.first(DataTable).row_count >= rows and not screen._loading():
            break
        await pilot.pause(0.05)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.3)
    await settle_tables(pilot)


def test_dashboard_snapshot(snap_compare, tui_store):
    async def loaded(pilot):
        await _settle(pilot, "#recent", 8)

    assert snap_compare(_app(tui_store), terminal_size=(120, 40), run_before=loaded)


def test_dashboard_at_80x24_snapshot(snap_compare, tui_store):
    async def loaded(pilot):
        await _settle(pilot, "#recent", 8)

    assert snap_compare(_app(tui_store), terminal_size=(80, 24), run_before=loaded)


def test_runs_snapshot(snap_compare, tui_store):
    async def loaded(pilot):
        await _settle(pilot, "#runs", 10)

    assert snap_compare(_app(tui_store, start_screen="runs"), terminal_size=(140, 36), run_before=loaded)


def test_run_detail_snapshot(snap_compare, tui_store):
    async def opened(pilot):
        pilot.app.open_run(tui_store.ids["with_errors"])
        await pilot.pause(0.2)
        await _settle(pilot, "#samples", 6)
        for _ in range(200):
            if len(pilot.app.screen.query("ImageStrip HalfcellImage")) == 4:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        await settle_tables(pilot)

    assert snap_compare(_app(tui_store), terminal_size=(120, 45), run_before=opened)
