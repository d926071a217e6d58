"""Helpers for tests that look at the TUI's screen."""

from __future__ import annotations

import re

from rich.cells import cell_len
from textual.widgets import DataTable


def _narrow_columns(table: DataTable, rendered: bool = False) -> list[str]:
    """Columns whose measured width (with `rendered`, the width drawn: a column given a fixed
    width is drawn at it) is below their widest cell (not measured yet)."""
    narrow = []
    for column in table.ordered_columns:
        widest = max((cell_len(str(table.get_cell(row.key, column.key))) for row in table.ordered_rows), default=0)
        width = column.get_render_width(table) - 2 * table.cell_padding if rendered else column.content_width
        if width < widest:
            narrow.append(f"{column.key.value} ({width} < {widest})")
    return narrow


async def until(pilot, condition, what: str = "condition", timeout: float = 20.0, interval: float = 0.05) -> None:
    """Let the app run until `condition()` holds; fail naming `what` after `timeout` seconds
    (of the app's pauses, polling every `interval`)."""
    waited = 0.0
    while not condition():
        if waited >= timeout:
            raise AssertionError(f"{what} not met within {timeout} s")
        await pilot.pause(interval)
        waited += interval


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


def screen_text(app) -> list[str]:
    """The characters on the terminal, one string per line (what a user reads)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, color_system="truecolor",
                      record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False).splitlines()


CUT_NUMBER = re.compile(r"[\d.]…|…[\d.]")


def assert_readable(app) -> None:
    """What 80 columns must never do: an input or a select too narrow for its value, a number
    cut to "…", a footer whose keys run off the screen."""
    from textual.widgets import Footer, Input, Select

    screen = app.screen
    problems = []

    def shown(widget) -> bool:  # not hidden, nor inside something hidden (a collapsed section)
        return all(node.display for node in widget.ancestors_with_self if node is not app)

    for field in screen.query(Input):
        if shown(field) and field.value and cell_len(field.value) >= field.content_size.width:
            problems.append(f"input #{field.id} shows {field.content_size.width} cells of {field.value!r}")
    for select in screen.query(Select):
        current = select.query_one("SelectCurrent")
        label = current.label
        width = current.query_one("#label").content_size.width
        if shown(select) and label is not Select.NULL and cell_len(str(label)) > width:
            problems.append(f"select #{select.id} shows {width} cells of {label!r}")
    lines = screen_text(app)
    problems += [f"number cut on line {index}: {line.strip()!r}" for index, line in enumerate(lines)
                 if CUT_NUMBER.search(line)]
    for table in screen.query(DataTable):  # a column given a width draws longer cells cut, without "…"
        problems += [f"table #{table.id} column {column}" for column in _narrow_columns(table, rendered=True)]
    for footer in screen.query(Footer):  # a modal screen has none: the one under it was checked
        keys = [key for key in footer.query("FooterKey") if not key.has_class("-command-palette")]
        palette = [key for key in footer.query("FooterKey") if key.has_class("-command-palette")]
        right = palette[0].region.x if palette else footer.region.right
        hidden = [key.description for key in keys if key.region.right > right]
        if shown(footer) and hidden:
            problems.append(f"footer keys off the screen or under the palette: {hidden}: {lines[-1].strip()!r}")
    assert not problems, "\n".join(problems) + "\n" + "\n".join(lines)
