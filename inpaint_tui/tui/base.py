"""What every screen shares: loading from the store on a thread, live refresh while shown,
tables updated in place (the cursor stays where the user left it), captioned image strips."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from PIL import Image as PILImage
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Label, Static
from textual.worker import Worker, get_current_worker


class LiveScreen(Screen):
    """A screen that fetches its data on a thread (`fetch`, never touching widgets) and
    shows it on the event loop (`show`). It reloads every `app.refresh_seconds` while it is
    the current screen, so progress refresh never blocks input."""

    live = True

    def on_mount(self) -> None:
        self.reload()
        if self.live:
            self.set_interval(self.app.refresh_seconds, self._tick)

    def on_screen_resume(self) -> None:
        if not self._loading():  # a screen shown for the first time is already loading (on_mount)
            self.reload()

    def _tick(self) -> None:
        # A load slower than the interval is left to finish rather than restarted forever.
        if self.is_current and not self._loading():
            self.reload()

    def _loading(self) -> bool:
        return any(worker.node is self and worker.group == "load" and not worker.is_finished
                   for worker in self.workers)

    def reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load(self) -> None:
        data = self.fetch()
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show, data)

    def _show(self, data: Any) -> None:
        if self.is_attached:
            self.show(data)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.report_worker_error(event)

    def fetch(self) -> Any:  # on a thread: store calls only
        raise NotImplementedError

    def show(self, data: Any) -> None:  # on the event loop: widgets only
        raise NotImplementedError


class Table(DataTable):
    """The DataTable every screen uses: the keys of a pager (Home/End to the first and last
    row, PageUp/PageDown, j/k), and cells redrawn when their column is re-measured.

    Textual (8.2) caches a rendered cell by row, column, style and update count but not by
    width, and measures columns only when the table goes idle, without counting that as an
    update. A paint between `update_cell` and that measurement (likely on a busy machine)
    caches cells at the old width, and they stay cut ("runnin" for "running") until the
    table's next update, forever on a quiet screen. Counting a change of width as an update
    makes those cache entries unreachable."""

    # DataTable's own home/end scroll sideways with a row cursor; here they move the cursor,
    # as in a pager. show=False: the footer has no room for them, `?` lists them.
    BINDINGS = [
        Binding("home", "scroll_top", "First row", id="table.first", show=False),
        Binding("end", "scroll_bottom", "Last row", id="table.last", show=False),
        Binding("pageup", "page_up", "Page up", id="table.page_up", show=False),
        Binding("pagedown", "page_down", "Page down", id="table.page_down", show=False),
        Binding("j", "cursor_down", "Next row", id="table.down", show=False),
        Binding("k", "cursor_up", "Previous row", id="table.up", show=False),
    ]

    _measured_widths: tuple[int, ...] = ()

    def scroll_to_column(self, key: str) -> None:
        """Scroll sideways so that the column `key` is in view (a sort by a column far to the
        right shows it; the fixed columns stay where they are)."""
        index = next((i for i, column in enumerate(self.ordered_columns) if column.key.value == key), None)
        if index is not None and index >= self.fixed_columns:
            self.scroll_to_region(self._get_column_region(index), spacing=self._get_fixed_offset(), animate=False,
                                  y_axis=False, force=True)

    def _update_dimensions(self, new_rows: Iterable[Any]) -> None:
        super()._update_dimensions(new_rows)
        widths = (self._label_column.content_width, *(c.content_width for c in self.ordered_columns))
        if widths != self._measured_widths:
            self._measured_widths = widths
            self._update_count += 1
            self.refresh()


def sync_table(table: DataTable, rows: Sequence[tuple[Any, Sequence[Any]]]) -> None:
    """Make `table` show `rows` ((key, cells) in order). Same keys in the same order: only
    the cells that changed since the last call are updated (a refresh of 10 000 rows costs a
    tuple comparison each); otherwise the rows are rebuilt and the cursor returns to the row
    it was on. Strings are shown as they are, never read as Rich markup (a tag "[x]")."""
    rows = [(str(key), tuple(cells)) for key, cells in rows]
    keys = [key for key, _ in rows]
    shown: dict[str, tuple] = getattr(table, "_synced_cells", {})
    current = [row.key.value for row in table.ordered_rows]  # display order (table.rows: insertion order)
    if keys == current:
        columns = list(table.columns)
        for key, cells in rows:
            before = shown.get(key)
            if before == cells:
                continue
            for index, (column, cell) in enumerate(zip(columns, cells)):
                if before is None or index >= len(before) or before[index] != cell:
                    table.update_cell(key, column, _plain(cell), update_width=True)
    else:
        selected = selected_key(table)
        table.clear()
        for key, cells in rows:
            table.add_row(*map(_plain, cells), key=key)
        if selected in keys:
            table.move_cursor(row=keys.index(selected), animate=False)
    table._synced_cells = dict(rows)


def _plain(cell: Any) -> Any:
    return Text(cell) if isinstance(cell, str) else cell


def selected_key(table: DataTable) -> str | None:
    """The key of the row under the cursor, or None for an empty table."""
    if table.row_count == 0:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:  # cursor beyond the rows while the table is being rebuilt
        return None


def show_filter_error(label: Label, error) -> None:
    """The filter box's error in `label` (hidden when `error` is None): the parser's message,
    then the expression with the offending characters in reverse video, so the wrong token
    stands out where the CLI draws a caret line. `error`: a tui.filtering.BoxError."""
    label.display = error is not None
    if error is None:
        label.update("")
        return
    shown = error.text.replace("\n", " ").replace("\t", " ")  # one cell per character, as the CLI's
    # An expression that ended too soon points at the cell after its end.
    expression = Text(shown if error.start < len(shown) else shown + " ")
    expression.stylize("bold reverse", error.start, min(error.end, len(expression)))
    label.update(Text.assemble(error.message, "\n", expression))


class ImageStrip(Horizontal):
    """Images side by side, each with a caption (input | mask | output | reference ...)."""

    DEFAULT_CSS = """
    ImageStrip { height: 1fr; }
    ImageStrip > Vertical { width: 1fr; height: 1fr; align-horizontal: center; }
    ImageStrip Label { width: 1fr; text-align: center; color: $text-muted; }
    ImageStrip .image { width: 1fr; height: 1fr; }
    """
    _count = 1  # the columns shown (images and dashes)
    _sized: list = []  # (image widget, width / height) of each image shown; replaced, never mutated

    def set_images(self, items: Iterable[tuple[str, PILImage.Image | None]]) -> None:
        """Replace the strip's content; a missing image shows as a dash under its caption.
        Each image is sized to fit its column whole, keeping its aspect ratio (terminal cells
        are about twice as tall as wide)."""
        items = list(items)
        if not (self.size.width and self.size.height):  # not laid out yet: size after the next refresh
            self.call_after_refresh(self.set_images, items)
            return
        self.remove_children()
        image_class = self.app.image_class
        columns, self._sized = [], []
        for caption, image in items:
            if image is None:
                body = Static("-", classes="image")
            else:
                body = image_class(image, classes="image")
                self._sized.append((body, image.width / max(1, image.height)))
            columns.append(Vertical(Label(caption), body))
        self._count = len(items)
        self._fit()
        self.mount_all(columns)

    def _fit(self) -> None:
        """Size each image to the strip as it is now: the screen may lay the strip out again
        after the images arrived (a table above it filled), and they must fit the new box."""
        box_width = max(1, self.size.width // max(1, self._count) - 1)
        box_height = max(1, self.size.height - 1)  # one line for the caption
        for body, aspect in self._sized:
            height = max(1, min(box_height, round(box_width / (2 * aspect))))
            body.styles.width = max(1, min(box_width, round(2 * aspect * height)))
            body.styles.height = height

    def on_resize(self) -> None:
        self._fit()

    def compose(self) -> ComposeResult:
        yield from ()
