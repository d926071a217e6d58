"""The table every TUI screen uses redraws a cell whose column was re-measured. Textual's own
DataTable keeps a cell painted before the measurement at the old width ("runnin" for
"running") until the table's next update: seen as order-dependent snapshot failures (stops
10-11) and possible on any quiet screen of a busy machine."""

from textual.app import App, ComposeResult

from inpaint_tui.tui.base import Table


class OneTable(App):
    def compose(self) -> ComposeResult:
        yield Table()


def _lines(table: Table, count: int) -> list[str]:
    return [table.render_line(y).text.rstrip() for y in range(count)]


async def test_a_cell_painted_before_its_column_is_measured_is_redrawn_at_the_new_width():
    app = OneTable()
    async with app.run_test(size=(40, 6)) as pilot:
        table = app.query_one(Table)
        status, technique = table.add_columns("status", "technique")
        table.add_row("queued", "-", key="run-1")
        await pilot.pause(0.1)
        assert _lines(table, 2) == [" status  technique", " queued  -"]

        table.update_cell("run-1", status, "running", update_width=True)
        table.update_cell("run-1", technique, "latentpaint", update_width=True)
        app.export_screenshot()  # a paint before the table goes idle and measures the new cells
        await pilot.pause(0.1)

        assert [column.content_width for column in table.ordered_columns] == [7, 11]
        assert _lines(table, 2) == [" status   technique", " running  latentpaint"]
