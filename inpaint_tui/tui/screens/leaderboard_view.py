"""The leaderboard's data preparation: the store's rows grouped (read/pooling: seeds pooled,
or every run with the same value of a key), sorted best first, formatted into cells with the
best values marked, as a `BoardView` the screen only shows. No Textual here (Rich text cells
only), so it is built on a thread and tested without an app; the screen in leaderboard.py
holds the widgets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from rich.text import Text

from engine.metrics.catalogue import higher_is_better, key_metrics
from engine.spec import changed_params
from inpaint_tui.read.pooling import SEED, RunGroup, best_first, group_keys, group_runs, has_value
from inpaint_tui.read.present import best_values, format_metric, format_params, format_summary, plural
from inpaint_tui.store import LeaderboardRow, MetricSummary, RunStatus
from inpaint_tui.tui.filtering import BoxError

FINISHED = (RunStatus.FINISHED, RunStatus.FINISHED_WITH_ERRORS)
BEST_STYLE = "bold green"
# Rows formatted and shown: the top of the ranking. Formatting and measuring 10 000 rows of
# mean [CI] cells takes seconds; a set filter or grouping narrows to the rest.
DISPLAY_LIMIT = 1000
# Before the metrics: what identifies a row; after them: what describes it (params can be long,
# so they come last and never push the ranking metric off a narrow screen).
LEAD_COLUMNS = (("rank", "#"), ("run", "run"), ("technique", "technique"))
TAIL_COLUMNS = (("done", "n done"), ("set", "set"), ("params", "params"))
# Grouped by a key, the group's value names the row; a group may mix techniques, sets and
# parameters (`configs` says how many configurations it pools), so those describe it after.
GROUP_LEAD_COLUMNS = (("rank", "#"), ("group", "group"), ("run", "runs"))
GROUP_TAIL_COLUMNS = (("configs", "configs"), ("technique", "technique"), ("done", "n done"), ("set", "set"),
                      ("params", "params"))
MIXED = "(mixed)"
CELL_PADDING = 2  # DataTable's cell padding, one column each side
STATUS_NOTE = {RunStatus.FINISHED: "", RunStatus.FINISHED_WITH_ERRORS: " (errors)"}


@dataclass(frozen=True)
class BoardState:
    """What the user chose; the view built for it says which state it shows."""

    sort: str | None = None  # None: the first key metric present
    group: str | None = None  # None: one row per run; `seed`: per configuration; else a key (read/pooling)
    include_unfinished: bool = False
    sample_set: str | None = None
    reverse: bool = False  # the worst first
    width: int | None = None  # the table's width: intervals are dropped when they do not fit; None: always shown
    filter_text: str = ""  # the filter box (tui/filtering.py): an expression, a search word or empty


@dataclass(repr=False)
class BoardView:
    """Everything the table shows, built off the event loop."""

    state: BoardState
    sort: str | None  # the metric actually sorted by
    metrics: list[str]  # the metric columns, in order
    columns: tuple[tuple[str, str], ...]  # (key, label) after the mark column
    rows: list[tuple[str, tuple[Any, ...]]]  # (row key, cells after the mark column)
    members: list[tuple[int, ...]]  # run ids behind each row, in row order
    signature: int  # equal signatures: the table already shows this
    row_signatures: dict[str, int] = field(default_factory=dict, repr=False)  # per row: changed or not
    key_of: dict[int, str] = field(default_factory=dict, repr=False)  # run id -> its row's key
    raw: list[LeaderboardRow] = field(default_factory=list, repr=False)  # to rebuild without SQL
    sets: list[str] = field(default_factory=list)
    total: int = 0  # rows before the display limit
    partial: bool = False  # only the head of the ranking, shown while the whole loads
    intervals: bool = True  # whether the metric cells show their 95% intervals
    filter_error: BoxError | None = None  # the filter box's expression does not parse: the rows are the last good ones
    group_keys: list[tuple[str, int]] = field(default_factory=list)  # keys to group by, with their number of values
    score_studies: int = 0  # judging studies behind the human scores shown (more than one: not comparable)

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.rows]

    def __repr__(self) -> str:  # short: workers put their arguments' repr in their description
        return f"BoardView({len(self.rows)} rows, sort={self.sort!r}, {self.state})"


class _Entry:
    """A table row before formatting: one run, or a group of runs (read/pooling)."""

    __slots__ = ("runs", "metrics", "summaries", "first", "finished", "group")

    def __init__(self, runs: Sequence[LeaderboardRow], metrics: dict[str, float],
                 summaries: dict[str, MetricSummary], group: RunGroup | None = None) -> None:
        self.runs, self.metrics, self.summaries, self.group = runs, metrics, summaries, group
        self.first = runs[0]
        self.finished = all(run.status in FINISHED for run in runs)


def _entries(rows: Sequence[LeaderboardRow], group: str | None) -> list[_Entry]:
    if group is None:
        return [_Entry([row], row.metrics, row.summaries) for row in rows]
    return [_Entry(found.runs, found.metrics, found.summaries, found) for found in group_runs(rows, group)]


def _sort_entries(entries: list[_Entry], metric: str | None, reverse: bool = False) -> None:
    """Best first given the metric's direction (catalogue), worst first if `reverse`; entries
    without a value last either way; ties by run id (read/pooling.best_first, as the CLI)."""
    if metric is None:
        entries.sort(key=lambda e: e.first.run_id)
        return
    entries[:] = best_first(entries, metric, first_run=lambda e: e.first.run_id, reverse=reverse)


def _sort_label(metric: str, sort: str | None, reverse: bool = False) -> str:
    """The metric's header: its sort arrow when sorted by it (▲: lower first, ▼: higher
    first), else room for one, so a new sort never changes column widths."""
    if metric != sort:
        return f"{metric}  "
    return f"{metric} {'▼' if bool(higher_is_better(metric)) != reverse else '▲'}"


RUN_IDS_SHOWN = 4  # a pooled row names this many run ids at most (all of them are in `members`)


def _run_cell(entry: _Entry, by_key: bool = False) -> str:
    """The run id; for a pooled row (any row grouped `by_key`, one run too: the column counts
    runs) the count and the first ids (never an id cut short)."""
    if len(entry.runs) == 1 and not by_key:
        return str(entry.first.run_id)
    ids = [str(run.run_id) for run in entry.runs]
    listed = ",".join(ids[:RUN_IDS_SHOWN]) + (f" +{len(ids) - RUN_IDS_SHOWN}" if len(ids) > RUN_IDS_SHOWN else "")
    return f"{plural(len(ids), 'run')}: {listed}"


def _formatted_params(run: LeaderboardRow, cache: dict) -> str:
    key = (run.technique, json.dumps(run.params, sort_keys=True, default=str))
    if key not in cache:
        cache[key] = format_params(changed_params(run.technique, run.params))
    return cache[key]


def _params_cell(entry: _Entry, cache: dict) -> str:
    text = _formatted_params(entry.first, cache)
    if len(entry.runs) > 1:
        text = ("" if text == "-" else text + " ") + "seeds " + ",".join(str(r.seed) for r in entry.runs)
    return text  # the last column: shown whole, the table scrolls


def _shared(texts) -> str:
    """The one text every run of a group shares, else MIXED."""
    distinct = set(texts)
    return distinct.pop() if len(distinct) == 1 else MIXED


def _lead_cells(entry: _Entry, rank: str, by_key: bool) -> list[str]:
    if by_key:
        return [rank, entry.group.label, _run_cell(entry, by_key=True)]
    return [rank, _run_cell(entry), entry.first.technique]


def _tail_cells(entry: _Entry, by_key: bool, cache: dict) -> list[str]:
    if by_key:
        return [str(entry.group.configurations), _shared(run.technique for run in entry.runs), _done_cell(entry),
                _shared(run.sample_set for run in entry.runs),
                _shared(_formatted_params(run, cache) for run in entry.runs)]
    return [_done_cell(entry), entry.first.sample_set, _params_cell(entry, cache)]


def _done_cell(entry: _Entry) -> str:
    done = sum(run.samples_done for run in entry.runs)
    statuses = {run.status for run in entry.runs}
    if len(statuses) == 1:
        status = statuses.pop()
        return f"{done}{STATUS_NOTE.get(status, ' ' + status)}"
    return f"{done} (mixed)"


def build_view(rows: Sequence[LeaderboardRow], state: BoardState, sets: Sequence[str] = (),
               partial: bool = False) -> BoardView:
    """The table content for `state` from the store's rows (plain data, no widgets). A
    `partial` view (the head of the ranking) marks no best values: they may lie further down."""
    entries = _entries(rows, state.group)
    by_key = state.group not in (None, SEED)
    present = {name for e in entries for name in (*e.metrics, *e.summaries)}
    metrics = key_metrics(present)
    sort = state.sort if state.sort in metrics else (metrics[0] if metrics else None)
    _sort_entries(entries, sort, state.reverse)
    finished = [e for e in entries if e.finished]
    best = {} if partial else best_values(finished, metrics)
    for name in list(best):  # a value every row shares says nothing: no highlight
        values = {e.metrics[name] for e in finished if has_value(e.metrics.get(name))}
        if len(values) == 1 and sum(has_value(e.metrics.get(name)) for e in finished) > 1:
            del best[name]
    lead_columns, tail_columns = (GROUP_LEAD_COLUMNS, GROUP_TAIL_COLUMNS) if by_key else (LEAD_COLUMNS, TAIL_COLUMNS)
    columns = lead_columns + tuple((name, _sort_label(name, sort, state.reverse)) for name in metrics) + tail_columns
    params_cache: dict = {}
    shown = entries[:DISPLAY_LIMIT]
    with_intervals = {name: [format_summary(e.summaries.get(name), e.metrics.get(name), name) for e in shown]
                      for name in metrics}
    intervals = state.width is None or _fits(shown, columns, with_intervals, state.width, by_key)
    out_rows, members, plain, key_of = [], [], [], {}
    rank = 0
    for index, entry in enumerate(shown):
        ranked = sort is not None and has_value(entry.metrics.get(sort))
        rank += ranked
        lead = _lead_cells(entry, str(rank) if ranked else "-", by_key)
        tail = _tail_cells(entry, by_key, params_cache)
        cells: list[Any] = [Text(text) for text in lead]
        flags = []
        for name in metrics:
            value = entry.metrics.get(name)
            text = with_intervals[name][index] if intervals else _mean_cell(entry.summaries.get(name), value, name)
            is_best = entry.finished and name in best and has_value(value) and value == best[name]
            cells.append(Text(text, style=BEST_STYLE if is_best else ""))
            flags.append((text, is_best))
        cells += [Text(text) for text in tail]
        info = lead + tail
        ids = tuple(run.run_id for run in entry.runs)
        key = str(ids[0]) if state.group is None else f"g{ids[0]}"
        out_rows.append((key, tuple(cells)))
        members.append(ids)
        plain.append((key, tuple(info), tuple(flags)))
        key_of.update((run_id, key) for run_id in ids)
    row_signatures = {row[0]: hash(row) for row in plain}
    signature = hash((columns, tuple(plain)))
    return BoardView(state=state, sort=sort, metrics=metrics, columns=columns, rows=out_rows, members=members,
                     signature=signature, row_signatures=row_signatures, key_of=key_of, raw=list(rows),
                     sets=list(sets), total=len(entries), partial=partial, intervals=intervals,
                     group_keys=group_keys(rows), score_studies=_score_studies(shown, metrics))


def _score_studies(shown, metrics: list[str]) -> int:
    from engine.metrics.catalogue import HUMAN_METRIC
    from inpaint_tui.read.judging import score_studies

    if HUMAN_METRIC not in metrics:
        return 0
    return len(set(score_studies({run.run_id: run.summaries for entry in shown for run in entry.runs}).values()))


def _mean_cell(summary: MetricSummary | None, value: float | None, name: str) -> str:
    """The mean alone (where intervals do not fit); "missing" as with intervals."""
    if summary is not None and summary.value is not None:
        return format_metric(name, summary.value)
    return format_summary(summary, value, name)


def _fits(entries: list[_Entry], columns: tuple, with_intervals: dict[str, list[str]], width: int,
          by_key: bool = False) -> bool:
    """Whether the table with intervals, up to and including the metric columns (params and the
    rest may scroll), fits in `width` cells (the mark column included)."""
    cells = [_lead_cells(entry, str(len(entries)), by_key) for entry in entries]
    lead = [max([len(label), *(len(row[index]) for row in cells)])
            for index, (_, label) in enumerate(GROUP_LEAD_COLUMNS if by_key else LEAD_COLUMNS)]
    label_of = dict(columns)
    total = 1 + CELL_PADDING + sum(lead) + CELL_PADDING * len(lead)
    for name, texts in with_intervals.items():
        total += max([len(label_of[name]), *map(len, texts)]) + CELL_PADDING
    return total <= width
