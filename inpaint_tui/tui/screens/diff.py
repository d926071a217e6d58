"""What differs between two or more runs' configurations (inpaint_tui/read/diff.py, as
`inpaint-tui runs diff`): one row per field that differs, one column per run. Pushed from the
runs screen or the leaderboard with the runs marked there; escape goes back."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Label

from inpaint_tui.read.present import plural
from inpaint_tui.tui.base import LiveScreen, Table, sync_table

SHORT_COMMIT = 12  # a commit id's first characters: enough to tell commits apart, and 3 runs fit 80 columns


@dataclass(frozen=True)
class DiffData:
    differences: list  # of read.diff.Difference, values in the order of run_ids
    error: str | None = None  # a run is gone


def diff_rows(differences) -> list[tuple[str, tuple[str, ...]]]:
    """(field, cells per run) for the table, values formatted as `runs diff` prints them."""
    from inpaint_tui.read.diff import format_value

    rows = []
    for difference in differences:
        values = difference.values
        if difference.field == "git_commit":
            values = [value[:SHORT_COMMIT] if isinstance(value, str) else value for value in values]
        rows.append((difference.field, (difference.field, *map(format_value, values))))
    return rows


def run_names(run_ids) -> str:
    return " and ".join(", ".join(map(str, run_ids)).rsplit(", ", 1))


class DiffScreen(LiveScreen):
    live = False  # configurations are fixed once a run starts: loaded when shown
    BINDINGS = [Binding("escape", "back", "Back", id="diff.back")]
    DEFAULT_CSS = """
    DiffScreen #title { padding: 0 1; }
    """

    def __init__(self, run_ids) -> None:
        super().__init__()
        self.run_ids = list(run_ids)
        self.data: DiffData | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label(f"runs {run_names(self.run_ids)}: loading…", id="title", classes="section-title")
        yield Table(id="diff", cursor_type="row", zebra_stripes=True, fixed_columns=1)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#diff", DataTable)
        table.add_column("field", key="field")
        for run_id in self.run_ids:
            table.add_column(f"run {run_id}", key=str(run_id))
        table.focus()

    def fetch(self) -> DiffData:
        from inpaint_tui.read.diff import config_diff
        from inpaint_tui.store import NotFound

        store = self.app.store
        try:
            runs = [store.run(run_id) for run_id in self.run_ids]
        except NotFound as error:
            return DiffData([], str(error))
        return DiffData(config_diff(runs))

    def show(self, data: DiffData) -> None:
        self.data = data
        names = run_names(self.run_ids)
        if data.error is not None:
            title = f"runs {names}: {data.error}"
        elif not data.differences:
            title = f"runs {names}: the same configuration"
        else:
            title = f"runs {names}: {plural(len(data.differences), 'difference')}"
        self.query_one("#title", Label).update(title)
        sync_table(self.query_one("#diff", DataTable), diff_rows(data.differences))

    @property
    def fields(self) -> list[str]:
        return [row.key.value for row in self.query_one("#diff", DataTable).ordered_rows]

    def action_back(self) -> None:
        self.app.pop_screen()
