"""Helpers for tests that look at the TUI's screen."""

from __future__ import annotations

from rich.cells import cell_len
from textual.widgets import DataTable


def _narrow_columns(table: DataTable) -> list[str]:
    """Columns whose measured width is below their widest cell (not measured yet)."""
    narrow = []
    for column in table.ordered_columns:
        widest = max((cell_len(str(table.get_cell(row.key, column.key))) for row in table.ordered_rows), default=0)
        if column.content_width < widest:
            narrow.append(f"{column.key.value} ({column.content_width} < {widest})")
    return narrow


async def settle_tables(pilot, timeout: float = 20.0) -> None:
    """Wait until every table on the screen has measured its columns. DataTable measures new
    rows when its message queue goes idle; a snapshot taken before shows columns as narrow as
    their headers. (Cells painted before the measurement and kept at the old width afterwards
    were Textual's cache, fixed in `tui.base.Table`.) Each wait nudges the tables' idle
    processing; a table still unmeasured after `timeout` fails here, by name."""
    waited = 0.0
    while True:
        tables = list(pilot.app.screen.query(DataTable))
        pending = {table.id: _narrow_columns(table) for table in tables}
        pending = {name: columns for name, columns in pending.items() if columns}
        if not pending and not any(t._require_update_dimensions or t._updated_cells for t in tables):
            break
        if waited >= timeout:
            raise AssertionError(f"tables not measured after {timeout} s: {pending}")
        for table in tables:
            table.check_idle()
        await pilot.pause(0.05)
        waited += 0.05
    await pilot.pause()
