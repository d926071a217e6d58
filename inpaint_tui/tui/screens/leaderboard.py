"""Kept in one file: the screen's widgets, their live refresh and key actions (the data is built in leaderboard_view).

The leaderboard: one row per run (or per group: a configuration, seeds pooled, or every run
with the same value of a parameter or field, read/pooling), metrics as
mean [95% CI], the best value of each column highlighted, sorted by any metric best first;
filter by sample set and by the query language of `leaderboard --filter` (or a search
word), include unfinished runs, mark two runs and compare them.

Everything that scales with the number of runs (the SQL, sorting, grouping, formatting) runs
on a thread (leaderboard_view.py: BoardState, BoardView, build_view, no widgets); the event loop
only fills the table."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Input, Label, Select
from textual.widgets.data_table import ColumnKey
from textual.worker import get_current_worker

from engine.metrics.catalogue import higher_is_better
from inpaint_tui.read.pooling import SEED
from inpaint_tui.read.present import plural
from inpaint_tui.store import NotFound
from inpaint_tui.tui.base import LiveScreen, Table, selected_key, show_filter_error
from inpaint_tui.tui.filtering import PLACEHOLDER, FilterResult, parse_box
from inpaint_tui.tui.screens.leaderboard_view import BoardState, BoardView, build_view

ALL_SETS = "\x00all"  # the Select value for "all sets" (no set can be named so)
DEFAULT_SORT = "bg_mse"
CHUNK = 250  # rows added per event-loop turn
HEAD_ROWS = 60  # shown first on a large database: more than a tall terminal holds


class MarkCell(Text):
    """The mark column's cell ("A", "B", "●" or empty); it carries its row's key, so rows can
    be reordered in place (`DataTable.sort`)."""

    def __init__(self, row_key: str, index: int | None = None) -> None:
        mark = "" if index is None else "AB"[index] if index < 2 else "●"
        super().__init__(mark, style="bold reverse" if mark else "")
        self.row_key = row_key


class LeaderboardScreen(LiveScreen):
    BINDINGS = [
        Binding("enter", "open", "Open run", id="leaderboard.open", show=False),
        # Not in the footer (it would push q off at 80 columns): the box is on screen, `?` lists the key.
        Binding("slash", "filter", "Filter", id="leaderboard.filter", show=False,
                tooltip="an expression as in `leaderboard --filter`, or a word to search for; enter: back"),
        Binding("o", "cycle_sort", "Sort", id="leaderboard.sort", tooltip="rank by the next metric"),
        Binding("O", "reverse_sort", "Reverse", id="leaderboard.reverse", show=False,
                tooltip="the worst first, and back (so does sorting by the same column again)"),
        Binding("g", "choose_group", "Group", id="leaderboard.group",
                tooltip="choose what a row is: a run, a configuration (seeds pooled) or every run sharing a "
                        "parameter's value (pooled)"),
        Binding("a", "toggle_unfinished", "All", id="leaderboard.unfinished",
                tooltip="include unfinished runs, or finished only"),
        Binding("m", "mark", "Mark", id="leaderboard.mark", tooltip="mark the run as A, then B, for compare"),
        Binding("c", "compare", "Compare", id="leaderboard.compare", tooltip="the paired statistics of A and B"),
        Binding("D", "diff", "Diff", id="leaderboard.diff", show=False,
                tooltip="what differs between the marked runs' configurations (two or more)"),
        Binding("E", "export", "Export", id="leaderboard.export", show=False,
                tooltip="the ranked runs to CSV, JSON lines or Parquet"),
        Binding("P", "report", "Report", id="leaderboard.report", show=False,
                tooltip="an HTML + Markdown report on the marked (or ranked) runs"),
        Binding("J", "judge", "Judge", id="leaderboard.judge", show=False,
                tooltip="judge the marked runs' outputs blind, two at a time (a study: resumes where you left it)"),
    ]
    DEFAULT_CSS = """
    LeaderboardScreen #bar { height: 3; }
    LeaderboardScreen #bar Select { width: 30; }
    LeaderboardScreen #status { width: 1fr; height: 3; content-align: left middle; padding: 0 2; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.state = BoardState()
        self.marked: list[int] = []  # run ids, in the order marked (A, B)
        self.view: BoardView | None = None
        self._shown: tuple | None = None
        self._columns: tuple | None = None
        self._sets: list[str] | None = None
        self._marked_keys: set[str] = set()
        self._applied: BoardView | None = None  # what the table holds (or is being filled with)
        self._populated = True
        self._fetch_seconds = 0.0  # how long the last load took (on its thread)
        self._last_tick = 0.0
        self._scroll_to_sort = False  # a sort the user asked for: its column is scrolled into view
        self._good_filter = FilterResult("")  # the last filter that parsed (kept while the box holds a bad one)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="bar"):
            yield Select([("all sets", ALL_SETS)], value=ALL_SETS, allow_blank=False, id="set", prompt="sample set")
            yield Label("", id="status")
        yield Input(placeholder=PLACEHOLDER, id="filter", classes="filter")
        yield Label("", id="filter-error", classes="hint error")
        yield Table(id="board", cursor_type="row", zebra_stripes=True, fixed_columns=3)
        yield Footer()

    def on_mount(self) -> None:  # LiveScreen.on_mount (the first load) runs after this one
        self.state = dataclasses.replace(self.state, width=self.app.size.width)
        self.query_one("#board", DataTable).focus()
        self.query_one("#filter-error", Label).display = False

    def on_resize(self, event) -> None:
        # The intervals shown or not depend on the width: the same rows, built again.
        if event.size.width != self.state.width:
            self._set_state(width=event.size.width)
            self._refresh_view()

    # --- data -------------------------------------------------------------------------------

    def fetch(self) -> BoardView:
        started = time.monotonic()
        state = self.state
        store = self.app.store
        metric = state.sort or DEFAULT_SORT
        if self.view is None and state.group is None and not state.include_unfinished and state.sample_set is None \
                and not state.filter_text.strip():
            self._show_head(store, state, metric)
        sets = [info.name for info in store.sample_sets()]
        result = parse_box(state.filter_text)
        if result.error is None:
            self._good_filter = result
        chosen = self._good_filter
        try:
            rows = store.leaderboard(metric, descending=bool(higher_is_better(metric)), sample_set=state.sample_set,
                                     include_unfinished=state.include_unfinished, where=chosen.where)
        except NotFound:  # the chosen set is gone: show all sets
            state = dataclasses.replace(state, sample_set=None)
            rows = store.leaderboard(metric, descending=bool(higher_is_better(metric)),
                                     include_unfinished=state.include_unfinished, where=chosen.where)
        if chosen.needle is not None:
            rows = _search(store, rows, chosen.needle)
        view = build_view(rows, state, sets)
        view.filter_error = result.error
        self._fetch_seconds = time.monotonic() - started
        return view

    def _show_head(self, store, state: BoardState, metric: str) -> None:
        """On the first load, the best HEAD_ROWS runs (ranked by SQLite, milliseconds) go on
        screen before the whole ranking is read and formatted (seconds with 10 000 runs)."""
        head = store.leaderboard(metric, descending=bool(higher_is_better(metric)), limit=HEAD_ROWS)
        view = build_view(head, state, partial=True)  # the set choices come with the full load
        if view.sort == metric and len(head) == HEAD_ROWS and not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show, view)

    def _tick(self) -> None:
        """Live refresh, slowed down where a load is costly (thousands of runs): at most one
        load at a time, and idle at least four times as long as the last one took."""
        if not self.is_current or any(worker.group == "load" and not worker.is_finished
                                      for worker in self.workers if worker.node is self):
            return
        now = time.monotonic()
        if now - self._last_tick < 4 * self._fetch_seconds:
            return
        self._last_tick = now
        self.reload()

    @work(thread=True, exclusive=True, group="rebuild", exit_on_error=False)
    def _rebuild(self, view: BoardView) -> None:
        """The same rows for a new state (sort, grouping): no SQL, off the event loop."""
        built = build_view(view.raw, self.state, view.sets)
        built.filter_error = view.filter_error  # the same rows, so the same filter
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show, built)

    def _refresh_view(self) -> None:
        if self.view is not None and self.view.partial:  # only the head is here: the full load follows
            self.reload()
        elif self.view is not None:
            self._rebuild(self.view)

    def show(self, view: BoardView) -> None:
        if self.state.sample_set is not None and view.state.sample_set is None \
                and self.state.sample_set not in view.sets:  # the chosen set was deleted
            self._set_state(sample_set=None)
        self._update_sets(view.sets)
        if view.state != self.state:
            # built for an older choice: same SQL filter -> re-sort/re-group; else fetch again
            if (view.state.sample_set, view.state.include_unfinished, view.state.filter_text) == (
                    self.state.sample_set, self.state.include_unfinished, self.state.filter_text):
                self._rebuild(view)
            else:
                self.reload()
            return
        self.view = view
        self._update_status(view)
        show_filter_error(self.query_one("#filter-error", Label), view.filter_error)
        shown = (view.signature, tuple(self.marked))
        if shown == self._shown:
            return
        self._shown = shown
        table = self.query_one("#board", DataTable)
        columns = (("mark", " "),) + view.columns
        previous = self._applied
        if previous is not None and self._populated and self._columns is not None \
                and [key for key, _ in columns] == [key for key, _ in self._columns] \
                and len(previous.rows) == len(view.rows) and set(previous.keys) == set(view.keys):
            self._update_in_place(table, columns, previous, view)
        else:
            self._rebuild_table(table, columns, view)
        self._applied = view
        if self._scroll_to_sort and view.sort is not None:
            self._scroll_to_sort = False
            board = self.query_one("#board", Table)
            board.call_after_refresh(board.scroll_to_column, view.sort)  # once the cells are measured

    def _update_in_place(self, table: DataTable, columns: tuple, previous: BoardView, view: BoardView) -> None:
        """The same rows (a refresh, a new sort): header labels, the cells of rows that
        changed, and the order through `DataTable.sort`, without re-adding (and re-measuring)
        every row."""
        relabelled = False
        for (key, label), (_, old) in zip(columns, self._columns):
            if label != old:
                table.columns[ColumnKey(key)].label = Text(label)
                relabelled = True
        self._columns = columns
        old = previous.row_signatures
        column_keys = [key for key, _ in view.columns]
        for key, cells in view.rows:
            if old.get(key) != view.row_signatures[key]:
                for column, cell in zip(column_keys, cells):
                    if table.get_cell(key, column) != cell:  # re-measured: intervals come and go with the width
                        table.update_cell(key, column, cell, update_width=True)
        if relabelled or previous.keys != view.keys:
            selected = selected_key(table)
            position = {key: index for index, key in enumerate(view.keys)}
            table.sort("mark", key=lambda cell: position[cell.row_key])
            if selected is not None:
                table.move_cursor(row=position[selected], animate=False)

    def _rebuild_table(self, table: DataTable, columns: tuple, view: BoardView) -> None:
        """New rows or a new order: the first rows now, the rest in chunks that leave the
        event loop free between them (10 000 runs never freeze the screen)."""
        self.workers.cancel_group(self, "populate")
        selected = selected_key(table)
        if columns != self._columns:
            table.clear(columns=True)
            for key, label in columns:
                table.add_column(label, key=key)
            self._columns = columns
        else:
            table.clear()
        self._marked_keys = set()
        self._populated = False
        self._add_rows(table, view, 0, CHUNK, selected)
        if len(view.rows) > CHUNK:
            self._populate(view, selected)
        else:
            self._populated = True

    def _add_rows(self, table: DataTable, view: BoardView, start: int, stop: int, selected: str | None) -> None:
        marks = self._marks(view)
        for key, cells in view.rows[start:stop]:
            table.add_row(MarkCell(key, marks.get(key)), *cells, key=key)
        self._marked_keys |= {key for key in marks if key in table.rows}
        if selected is not None and selected in table.rows:
            position = view.keys.index(selected)
            if start <= position < stop:
                table.move_cursor(row=position, animate=False)

    @work(exclusive=True, group="populate", exit_on_error=False)
    async def _populate(self, view: BoardView, selected: str | None) -> None:
        table = self.query_one("#board", DataTable)
        for start in range(CHUNK, len(view.rows), CHUNK):
            await asyncio.sleep(0)  # the table measures the last chunk; keys are handled
            self._add_rows(table, view, start, start + CHUNK, selected)
            self._update_status(view, loaded=min(start + CHUNK, len(view.rows)))
        self._populated = True
        self._update_status(view)

    def _marks(self, view: BoardView) -> dict[str, int]:
        """Row key -> index of its mark (0: A, 1: B, ...)."""
        marks = {}
        for index, run_id in enumerate(self.marked):
            key = view.key_of.get(run_id)
            if key is not None:
                marks[key] = index
        return marks

    def _update_sets(self, sets: list[str]) -> None:
        if sets == self._sets:
            return
        self._sets = sets
        select = self.query_one("#set", Select)
        current = self.state.sample_set
        with select.prevent(Select.Changed):
            select.set_options([("all sets", ALL_SETS)] + [(name, name) for name in sets])
            select.value = current if current in sets else ALL_SETS

    def _update_status(self, view: BoardView, loaded: int | None = None) -> None:
        group = view.state.group
        what, whats = ("run", "runs") if group is None else ("configuration", "configurations") if group == SEED \
            else ("group", "groups")
        parts = [plural(len(view.rows), what, whats)]
        if view.partial:
            parts[0] = f"top {plural(len(view.rows), 'run')} (loading the rest)"
        elif view.total > len(view.rows):
            parts[0] = f"top {len(view.rows)} of {view.total} {whats}"
        if loaded is not None:
            parts[0] += f" (showing {loaded})"
        if group not in (None, SEED):  # what a row's numbers are
            parts[0] = f"grouped by {group}: {parts[0]}, mean [lowest–highest run value]"
        if view.sort:
            parts.append(f"sorted by {view.sort} ({'higher' if higher_is_better(view.sort) else 'lower'} is better"
                         + (", worst first)" if view.state.reverse else ")"))
        parts.append("unfinished included" if view.state.include_unfinished else "finished only")
        if view.score_studies > 1:
            parts.append(f"human from {view.score_studies} studies (not comparable)")
        if self.marked:
            parts.append("marked " + ", ".join(f"{'AB'[i] if i < 2 else '+'}={run}"
                                               for i, run in enumerate(self.marked)))
        self.query_one("#status", Label).update(" · ".join(parts))

    # --- what tests and other code read -------------------------------------------------------

    @property
    def row_keys(self) -> list[str]:
        return [row.key.value for row in self.query_one("#board", DataTable).ordered_rows]

    @property
    def row_members(self) -> list[tuple[int, ...]]:
        """The run ids behind each shown row, in table order."""
        if self.view is None:
            return []
        members = dict(zip((key for key, _ in self.view.rows), self.view.members))
        return [members[key] for key in self.row_keys if key in members]

    @property
    def row_run_ids(self) -> list[int]:
        """The shown rows' runs in table order (a group row: its first run)."""
        return [ids[0] for ids in self.row_members]

    @property
    def complete(self) -> bool:
        """Whether the table holds every row of the current view (it fills in chunks)."""
        # By signature: a reload that built the same content (on coming back from a dialog)
        # leaves the table as it is, filled from the equal view before it.
        return self.view is not None and not self.view.partial and self._applied is not None \
            and self._applied.signature == self.view.signature and self._populated

    @property
    def sort_metric(self) -> str | None:
        return self.view.sort if self.view is not None else None

    # --- actions ----------------------------------------------------------------------------

    def _set_state(self, **changes) -> None:
        self.state = dataclasses.replace(self.state, **changes)

    def action_cycle_sort(self) -> None:
        if self.view is None or not self.view.metrics:
            return
        metrics = self.view.metrics
        current = self.view.sort
        following = metrics[(metrics.index(current) + 1) % len(metrics)] if current in metrics else metrics[0]
        self._sort_by(following)

    def action_reverse_sort(self) -> None:
        if self.view is not None and self.view.sort is not None:
            self._sort_by(self.view.sort, reverse=not self.state.reverse)

    def _sort_by(self, metric: str, reverse: bool = False) -> None:
        self._set_state(sort=metric, reverse=reverse)
        best = "higher" if higher_is_better(metric) else "lower"
        self.notify(f"sorted by {metric}, " + (f"worst first ({best} is best)" if reverse else f"{best} first is best"),
                    timeout=2)
        self._scroll_to_sort = True
        self._refresh_view()

    @on(DataTable.HeaderSelected, "#board")
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A metric's header sorts by it; the same header again reverses the order."""
        metric = event.column_key.value
        if self.view is not None and metric in self.view.metrics:
            self._sort_by(metric, reverse=not self.state.reverse if metric == self.view.sort else False)

    def action_choose_group(self) -> None:
        """A chooser of what a row is: a run, a configuration, or the runs sharing a value of
        any key the loaded rows have; the current choice highlighted."""
        from inpaint_tui.tui.screens.dialogs import ChoiceScreen

        keys = [None, SEED] + [key for key, _ in (self.view.group_keys if self.view is not None else [])]
        labels = ["no grouping: one row per run", "seed: one row per configuration (seeds pooled)"]
        labels += [f"{key} ({plural(count, 'group')})" for key, count in self.view.group_keys] if self.view else []
        current = keys.index(self.state.group) if self.state.group in keys else None

        def chosen(index: int | None) -> None:
            if index is not None and keys[index] != self.state.group:
                self._set_state(group=keys[index])
                self._refresh_view()

        title = "Group the leaderboard's rows by (enter: choose, escape: cancel)"
        self.app.push_screen(ChoiceScreen(title, labels, current), chosen)

    def action_toggle_unfinished(self) -> None:
        self._set_state(include_unfinished=not self.state.include_unfinished)
        self.reload()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if event.value != self.state.filter_text:
            self._set_state(filter_text=event.value)
            self.reload()  # parsed and run in SQL on the fetch thread

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#board", DataTable).focus()

    @on(Select.Changed, "#set")
    def _set_changed(self, event: Select.Changed) -> None:
        sample_set = None if event.value in (ALL_SETS, Select.NULL) else event.value
        if sample_set != self.state.sample_set:
            self._set_state(sample_set=sample_set)
            self.reload()

    def _cursor_members(self) -> tuple[int, ...] | None:
        key = selected_key(self.query_one("#board", DataTable))
        if key is None or self.view is None:
            return None
        for row_key, ids in zip((k for k, _ in self.view.rows), self.view.members):
            if row_key == key:
                return ids
        return None

    def action_mark(self) -> None:
        ids = self._cursor_members()
        if ids is None:
            return
        if len(ids) > 1:
            self.notify("this row pools several runs: press g, choose no grouping to list runs one by one, then mark",
                        severity="warning")
            return
        run_id = ids[0]
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        self._update_marks()

    def _update_marks(self) -> None:
        """Only the mark cells that change are touched (cheap with many rows)."""
        if self.view is None:
            return
        table = self.query_one("#board", DataTable)
        marks = self._marks(self.view)
        for key in set(marks) | self._marked_keys:
            if key in table.rows:
                table.update_cell(key, "mark", MarkCell(key, marks.get(key)))
        self._marked_keys = {key for key in marks if key in table.rows}
        self._shown = (self.view.signature, tuple(self.marked))
        self._update_status(self.view)

    def action_export(self) -> None:
        """The runs behind the rows shown, in ranking order (every seed of a grouped row)."""
        from inpaint_tui.tui.actions import export_runs

        ranked = self._ranked_runs()
        if ranked:
            export_runs(self, ranked, "the ranked runs")

    def action_report(self) -> None:
        """A report on the ranked runs: the marked runs only where two or more are marked, the
        first marked (A) as baseline; else every ranked run, the best first."""
        from inpaint_tui.tui.actions import report_runs

        ranked = self._ranked_runs()
        if ranked:
            report_runs(self, self.marked if len(self.marked) >= 2 else ranked,
                        "the marked runs" if len(self.marked) >= 2 else "the ranked runs")

    def _ranked_runs(self) -> list[int]:
        if self.view is None or self.view.partial:
            self.notify("the ranking is still loading", severity="warning")
            return []
        return [run_id for ids in self.view.members for run_id in ids]

    def action_compare(self) -> None:
        if len(self.marked) != 2:
            self.notify(f"mark exactly two runs with m to compare them ({len(self.marked)} marked)",
                        severity="warning")
            return
        self.app.open_compare(*self.marked)

    def action_judge(self) -> None:
        if len(self.marked) < 2:
            self.notify(f"mark two or more runs with m to judge them ({len(self.marked)} marked)", severity="warning")
            return
        self.app.open_judging(self.marked)

    def action_diff(self) -> None:
        if len(self.marked) < 2:
            self.notify(f"mark two or more runs with m to diff them ({len(self.marked)} marked)", severity="warning")
            return
        self.app.open_diff(self.marked)

    @on(DataTable.RowSelected, "#board")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        ids = self._cursor_members()
        if ids is not None:
            self.app.open_run(ids[0])


def _search(store, rows: list, needle: str) -> list:
    """The rows whose run has the search word in its id, technique, parameters, model, set or
    status (on the row), or in a tag or its note (asked in SQL: the rows do not carry them)."""
    from inpaint_tui.read.query import parse_filter
    from inpaint_tui.tui.filtering import haystack

    # A search word has no quote characters (tui/filtering.py); only a backslash needs escaping.
    quoted = "'" + needle.replace("\\", "\\\\") + "'"
    tagged = set(store.query_run_ids(parse_filter(f"tag ~ {quoted} or note ~ {quoted}")))
    return [row for row in rows if row.run_id in tagged
            or needle in haystack(row.run_id, row.technique, row.params, (), row.model, row.sample_set, row.status)]
