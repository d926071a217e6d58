"""Helpers for tests that look at the TUI's screen."""

from __future__ import annotations

from textual.widgets import DataTable


async def settle_tables(pilot, timeout: float = 10.0) -> None:
    """Wait until every table on the screen has measured its columns and rows. DataTable does
    that when its message queue is idle; on a loaded machine a snapshot taken before shows
    columns as narrow as their headers (seen in CI: "runnin" for "running")."""
    waited = 0.0
    while waited < timeout:
        tables = list(pilot.app.screen.query(DataTable))
        if all(not table._require_update_dimensions and not table._updated_cells for table in tables):
            break
        await pilot.pause(0.05)
        waited += 0.05
    await pilot.pause()
