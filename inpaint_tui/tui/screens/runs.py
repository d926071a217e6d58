"""Every run: status, technique, key parameters, progress, headline metrics, or the columns
the user chooses (C: any run field, parameter or metric, as `runs list --columns`); filter
and sort; cancel, resume, clone with edits, delete, tags and a note."""

from __future__ import annotations

import time
from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, Label

from inpaint_tui.read.listing import ListColumn, available_columns, cell_forms, column_value, list_column
from inpaint_tui.read.present import plural
from inpaint_tui.store import RunInfo, RunStatus
from inpaint_tui.tui.base import LiveScreen, Table, selected_key, show_filter_error, sync_table
from inpaint_tui.tui.filtering import PLACEHOLDER, FilterResult, haystack, parse_box

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
FULL_EVERY = 30.0  # seconds between full reloads (they also catch runs deleted elsewhere)
DISPLAY_LIMIT = 1000  # rows shown after filter and sort; formatting 10 000 would stall input
# The columns shown until the user chooses (C), as `runs list --columns` names them; the
# headline metrics before the long, variable columns, so they are on screen at 120 columns.
DEFAULT_COLUMNS = ("run", "status", "technique", "done", "metric.bg_mse", "metric.clip_local", "progress", "params",
                   "set", "model", "tag", "note")
FIXED_SORTS = ("id", "status", "technique")  # then each metric and parameter column shown
SORT_COLUMN = {"id": "run"}  # the column a sort orders by (the others: the column of its name)
SORTABLE = ("metric", "param")  # the sources of the columns `o` also sorts by
FREE_TEXT = {"note": 40, "error": 40, "negative_prompt": 40}  # cut (…) to keep one short line per run
FAILED = list_column("failed")
NO_METRICS: dict[str, float] = {}  # one shared empty dict, never mutated: rows are cached by identity


@dataclass(frozen=True)
class RunsData:
    runs: list[RunInfo]
    metrics: dict[int, dict[str, float]]
    filter: FilterResult = FilterResult("")
    matching: frozenset[int] | None = None  # the runs the filter keeps (None: every run)


class RunsScreen(LiveScreen):
    BINDINGS = [
        Binding("enter", "open", "Open", id="runs.open", show=False),
        Binding("slash", "filter", "Filter", id="runs.filter",
                tooltip="an expression as in `runs list --filter`, or a word to search for; enter: back"),
        Binding("o", "cycle_sort", "Sort", id="runs.sort",
                tooltip="by the next column: " + ", ".join(FIXED_SORTS) + ", then each metric and parameter column"),
        Binding("O", "reverse_sort", "Reverse", id="runs.reverse", show=False,
                tooltip="the same column the other way round"),
        Binding("c", "cancel", "Cancel", id="runs.cancel"),
        # show=False: at 80 columns the footer has no room left; `?` lists it.
        Binding("C", "columns", "Columns", id="runs.columns", show=False,
                tooltip="choose the columns and their order: any run field, parameter or metric"),
        Binding("m", "mark", "Mark", id="runs.mark", show=False, tooltip="mark the run (or unmark it), for a diff"),
        Binding("D", "diff", "Diff", id="runs.diff", show=False,
                tooltip="what differs between the marked runs' configurations (two or more)"),
        Binding("R", "resume", "Resume", id="runs.resume", show=False, tooltip="re-queue an interrupted run"),
        Binding("e", "clone", "Clone", id="runs.clone", tooltip="a new run from this one's settings, to edit"),
        Binding("x", "delete", "Delete", id="runs.delete", tooltip="the run, its metrics and its images"),
        Binding("t", "tags", "Tags", id="runs.tags", show=False),
        Binding("N", "note", "Note", id="runs.note", show=False),
        Binding("E", "export", "Export", id="runs.export", show=False,
                tooltip="the runs shown to CSV, JSON lines or Parquet"),
        Binding("P", "report", "Report", id="runs.report", show=False,
                tooltip="an HTML + Markdown report on the runs shown, the selected one the baseline"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sort = "id"
        self.sort_reversed = False  # the sort's other direction (O)
        self.data: RunsData | None = None
        self._last_full = 0.0
        self._full = True
        self._shown_view: tuple | None = None  # (sort, reverse, marked) the table shows
        self.marked: list[int] = []  # run ids, in the order marked (m), for a diff (D)
        self._filter_text = ""  # the box's text, for the fetch thread (which never reads widgets)
        self._rows: dict[int, tuple[RunInfo, dict, list[str]]] = {}  # run id -> (run, its metrics, row)
        # The table's columns; kept by this screen (one per app session) until chosen again.
        self.columns: tuple[ListColumn, ...] = tuple(map(list_column, DEFAULT_COLUMNS))
        self._shown_columns: tuple[ListColumn, ...] = ()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder=PLACEHOLDER, id="filter", classes="filter")
        yield Label("", id="filter-error", classes="hint error")
        yield Label("", id="shown", classes="hint")
        yield Table(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#runs", DataTable).focus()
        self.query_one("#filter-error", Label).display = False

    def fetch(self) -> RunsData:
        """The runs (see _fetch_runs) and the ids the filter keeps, chosen by the store in
        SQL for an expression. A bad expression keeps the last good choice."""
        store = self.app.store
        previous = self.data
        runs, metrics = self._fetch_runs(store, previous)
        text = self._filter_text
        if previous is not None and runs is previous.runs and text == previous.filter.text:
            return previous  # the same object: show() then has nothing to do
        result = parse_box(text)
        if result.error is not None:
            matching = previous.matching if previous is not None else None
        elif result.where is not None:
            matching = frozenset(store.query_run_ids(result.where))
        elif result.needle is not None:
            matching = frozenset(run.id for run in runs if result.needle in _haystack(run))
        else:
            matching = None
        return RunsData(runs=runs, metrics=metrics, filter=result, matching=matching)

    def _fetch_runs(self, store, previous: RunsData | None) -> tuple[list[RunInfo], dict[int, dict[str, float]]]:
        """Everything on first load, after an action here and every FULL_EVERY seconds;
        otherwise only what can have changed: runs that were active, are active now, or are
        new. With 10 000 runs a refresh then reads a handful of rows, not all of them; so
        does the reload on return to the screen (closing help must not cost a full read)."""
        if previous is None or self._full or time.monotonic() - self._last_full >= FULL_EVERY:
            self._full = False
            self._last_full = time.monotonic()
            runs = store.runs()
            return runs, store.run_metric_values()  # every run's: no ids bound (50 000 would exceed SQLite's cap)
        was_active = [r.id for r in previous.runs if r.status in ACTIVE]
        newest = max((r.id for r in previous.runs), default=0)
        changed = {r.id: r for r in store.runs(was_active)}
        changed.update({r.id: r for r in store.runs(statuses=list(ACTIVE))})
        changed.update({r.id: r for r in store.runs(newer_than=newest)})
        if not changed:
            return previous.runs, previous.metrics
        metrics = dict(previous.metrics)
        metrics.update(store.run_metric_values(list(changed)))
        runs = [changed.pop(r.id, r) for r in previous.runs] + sorted(changed.values(), key=lambda r: r.id)
        return runs, metrics

    def show(self, data: RunsData) -> None:
        """Rows are formatted only for runs that changed (carried-over runs and their metrics
        are the same objects from one refresh to the next): with 10 000 runs a refresh that
        finds one run progressing costs a sort, not 1000 formatted rows on the event loop."""
        if self.marked and (self.data is None or data.runs is not self.data.runs):
            # A run deleted here (x) or by another process (seen at a full reload) leaves the marks.
            present = {run.id for run in data.runs}
            self.marked = [run_id for run_id in self.marked if run_id in present]
        view = (self.sort, self.sort_reversed, tuple(self.marked), self.columns)
        if data is self.data and view == self._shown_view:
            return
        self.data = data
        self._shown_view = view
        table = self.query_one("#runs", DataTable)
        selected = selected_key(table)
        if self.columns != self._shown_columns:
            table.clear(columns=True)
            for column in self.columns:
                table.add_column(column.header, key=column.key)
            self._shown_columns = self.columns
            self._rows = {}  # formatted for other columns
        show_filter_error(self.query_one("#filter-error", Label), data.filter.error)
        runs = data.runs if data.matching is None else [run for run in data.runs if run.id in data.matching]
        runs = self._sorted(runs, data)
        self.query_one("#shown", Label).update(
            plural(len(runs), "run") + (f" · showing the first {DISPLAY_LIMIT}: filter to narrow" if len(runs) > DISPLAY_LIMIT
                                   else "") + f" · sorted by {self.sort}" + (" (reversed)" if self.sort_reversed else "")
            + (f" · marked {', '.join(map(str, self.marked))} (D: diff)" if self.marked else ""))
        runs = runs[:DISPLAY_LIMIT]
        previous_rows, self._rows = self._rows, {}
        marked = set(self.marked)
        rows = []
        for run in runs:
            values = data.metrics.get(run.id, NO_METRICS)
            cached = previous_rows.get(run.id)
            if cached is not None and cached[0] is run and cached[1] is values:
                row = cached[2]
            else:
                row = format_row(run, values, self.columns)
            self._rows[run.id] = (run, values, row)
            rows.append((run.id, [f"● {row[0]}", *row[1:]] if run.id in marked else row))
        sync_table(table, rows)
        if selected is not None and selected_key(table) != selected and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected), animate=False)  # new columns: same run

    @property
    def sorts(self) -> tuple[str, ...]:
        """What `o` cycles through: id, status, technique, then the metric and parameter
        columns shown, in the table's order."""
        return FIXED_SORTS + tuple(c.key for c in self.columns if c.field is not None and c.field.source in SORTABLE)

    def _sorted(self, runs: list[RunInfo], data: RunsData) -> list[RunInfo]:
        """Newest first by id; by a metric best first (its direction), by a parameter from
        the lowest value; runs without a value last either way; reversed, the other way round."""
        if self.sort == "id":
            return sorted(runs, key=lambda run: run.id, reverse=not self.sort_reversed)
        if self.sort in FIXED_SORTS:
            return sorted(runs, key=lambda run: (getattr(run, self.sort), run.id), reverse=self.sort_reversed)
        column = next(c for c in self.columns if c.key == self.sort)
        values = {run.id: column_value(run, column, data.metrics.get(run.id, NO_METRICS)) for run in runs}
        descending = self.sort_reversed
        if column.is_metric:
            from engine.metrics.catalogue import higher_is_better

            descending ^= higher_is_better(column.field.name)
        present = sorted((run for run in runs if values[run.id] is not None),
                         key=lambda run: (_orderable(values[run.id]), run.id), reverse=descending)
        return present + sorted((run for run in runs if values[run.id] is None), key=lambda run: run.id)

    @property
    def row_run_ids(self) -> list[int]:
        return [int(key.value) for key in self.query_one("#runs", DataTable).rows]

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._filter_text = event.value
        self.reload()  # parsed and run on the fetch thread; a newer keystroke cancels this load

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#runs", DataTable).focus()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_mark(self) -> None:
        if (run_id := self._selected()) is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        if self.data is not None:
            self.show(self.data)

    def action_diff(self) -> None:
        if len(self.marked) < 2:
            self.notify(f"mark two or more runs with m to diff them ({len(self.marked)} marked)", severity="warning")
            return
        self.app.open_diff(self.marked)

    def action_cycle_sort(self) -> None:
        sorts = self.sorts
        self.sort = sorts[(sorts.index(self.sort) + 1) % len(sorts)]
        self.sort_reversed = False
        self._resort()

    def action_columns(self) -> None:
        from inpaint_tui.tui.screens.columns import ColumnsScreen

        data = self.data
        found = available_columns(data.runs, data.metrics) if data is not None else []
        chosen = [column.key for column in self.columns]
        available = list(dict.fromkeys([*DEFAULT_COLUMNS, *chosen, *(column.key for column in found)]))

        def applied(keys: list[str] | None) -> None:
            if keys is None:
                return
            self.columns = tuple(map(list_column, keys))
            if self.sort not in self.sorts:  # its column is no longer shown
                self.sort, self.sort_reversed = "id", False
            self._resort()

        self.app.push_screen(ColumnsScreen(chosen, available, DEFAULT_COLUMNS), applied)

    def action_reverse_sort(self) -> None:
        self.sort_reversed = not self.sort_reversed
        self._resort()

    def _resort(self) -> None:
        if self.data is not None:
            self.show(self.data)
        table = self.query_one("#runs", Table)
        column = SORT_COLUMN.get(self.sort, self.sort)
        table.call_after_refresh(table.scroll_to_column, column)  # once the new cells are measured

    def _selected(self) -> int | None:
        key = selected_key(self.query_one("#runs", DataTable))
        return None if key is None else int(key)

    @on(DataTable.RowSelected, "#runs")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(int(event.row_key.value))

    def action_open(self) -> None:
        if (run_id := self._selected()) is not None:
            self.app.open_run(run_id)

    def action_cancel(self) -> None:
        if (run_id := self._selected()) is not None:
            self._act(run_id, "cancel")

    def action_resume(self) -> None:
        if (run_id := self._selected()) is not None:
            self._act(run_id, "resume")

    def action_delete(self) -> None:
        run_id = self._selected()
        if run_id is None:
            return
        from inpaint_tui.tui.screens.dialogs import ConfirmScreen

        def confirmed(answer: bool | None) -> None:
            if answer:
                self._act(run_id, "delete")

        self.app.push_screen(ConfirmScreen(f"Delete run {run_id}, its metrics and its image files?", "Delete"),
                             confirmed)

    def action_tags(self) -> None:
        run = self._selected_run()
        if run is None:
            return
        from inpaint_tui.tui.screens.dialogs import TextScreen

        def entered(text: str | None) -> None:
            if text is not None:
                self._act(run.id, "tags", text.split())

        self.app.push_screen(TextScreen(f"Tags of run {run.id} (space-separated)", " ".join(run.tags)), entered)

    def action_note(self) -> None:
        run = self._selected_run()
        if run is None:
            return
        from inpaint_tui.tui.screens.dialogs import TextScreen

        def entered(text: str | None) -> None:
            if text is not None:
                self._act(run.id, "note", text)

        self.app.push_screen(TextScreen(f"Note on run {run.id}", run.note), entered)

    def action_export(self) -> None:
        """Every run the table shows (the filter applies), in its order."""
        from inpaint_tui.tui.actions import export_runs

        export_runs(self, self._shown_run_ids(), "the runs shown")

    def action_report(self) -> None:
        """A report on the runs shown; the selected run is the baseline."""
        from inpaint_tui.tui.actions import report_runs

        shown = self._shown_run_ids()
        selected = self._selected_run()
        if selected is not None and selected.id in shown:
            shown.remove(selected.id)
            shown.insert(0, selected.id)
        report_runs(self, shown, "the runs shown")

    def _shown_run_ids(self) -> list[int]:
        return [int(row.key.value) for row in self.query_one("#runs", DataTable).ordered_rows]

    def action_clone(self) -> None:
        run = self._selected_run()
        if run is None:
            return
        self.app.switch_mode("new_run")
        screen = self.app.screen
        if hasattr(screen, "prefill"):
            screen.prefill(run)

    def _selected_run(self) -> RunInfo | None:
        run_id = self._selected()
        if run_id is None or self.data is None:
            return None
        return next((run for run in self.data.runs if run.id == run_id), None)

    @work(thread=True, group="actions", exit_on_error=False)
    def _act(self, run_id: int, action: str, value=None) -> None:
        """Store actions off the event loop; a refused one (e.g. resume of a finished run)
        comes back as a notification, not a traceback."""
        from inpaint_tui.jobs.worker import STALE_AFTER_SECONDS
        from inpaint_tui.store import StoreError

        store = self.app.store
        try:
            if action == "cancel":
                status = store.request_cancel(run_id)
                message = f"run {run_id} " + ("cancelled" if status == RunStatus.CANCELLED else
                                              "cancel requested: its worker stops at the next step")
            elif action == "resume":
                from inpaint_tui.jobs.launch import ensure_worker

                store.requeue_for_resume(run_id, stale_after=STALE_AFTER_SECONDS)
                worker_id, started = ensure_worker(store)
                message = f"run {run_id} re-queued; worker {worker_id} " + ("started" if started else "takes it up")
            elif action == "delete":
                removed = store.delete_run(run_id, stale_after=STALE_AFTER_SECONDS)
                message = f"run {run_id} deleted ({removed} files)"
            elif action == "tags":
                store.annotate_run(run_id, tags=value)
                message = f"run {run_id} tags: {' '.join(store.run(run_id).tags) or '-'}"
            else:
                store.annotate_run(run_id, note=value)
                message = f"run {run_id} note saved"
        except StoreError as error:
            self.app.call_from_thread(self.notify, str(error), severity="warning")
            return
        self._full = True
        self.app.call_from_thread(self.notify, message)
        self.app.call_from_thread(self.reload)


def _haystack(run: RunInfo) -> str:
    return haystack(run.id, run.technique, run.params, run.tags, run.status, run.sample_set, run.model, run.note)


def format_row(run: RunInfo, values: dict[str, float], columns: tuple[ListColumn, ...]) -> list[str]:
    """The run's cells: each column's richest form from read/listing (the table scrolls
    sideways instead of compacting), `done` with the failures beside it, long free text cut."""
    cells = []
    for column in columns:
        text = cell_forms(run, column, values)[0]
        if column.key == "done" and run.failed_count:
            text += f" ({cell_forms(run, FAILED, values)[0]} failed)"
        limit = FREE_TEXT.get(column.key)
        if limit is not None and len(text) > limit:
            text = text[:limit - 1] + "…"
        cells.append(text)
    return cells


def _orderable(value) -> tuple:
    """A parameter's or metric's value as a sort key: numbers (and on/off) before text, so
    the values of one parameter always compare."""
    return (0, float(value)) if isinstance(value, (int, float)) else (1, str(value))
