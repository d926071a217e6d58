"""The leaderboard's data preparation: the store's rows grouped (seeds pooled), sorted best
first, formatted into cells with the best values marked, as a `BoardView` the screen only
shows. No Textual here (Rich text cells only), so it is built on a thread and tested without
an app; the screen in leaderboard.py holds the widgets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from rich.text import Text

from engine.metrics.catalogue import higher_is_better, key_metrics
from engine.spec import changed_params
from inpaint_tui.read.pooling import has_value, pool, seed_group_key
from inpaint_tui.read.present import best_values, format_params, format_summary
from inpaint_tui.store import LeaderboardRow, MetricSummary, RunStatus

FINISHED = (RunStatus.FINISHED, RunStatus.FINISHED_WITH_ERRORS)
BEST_STYLE = "bold green"
PARAMS_WIDTH = 40
# Rows formatted and shown: the top of the ranking. Formatting and measuring 10 000 rows of
# mean [CI] cells takes seconds; a set filter or grouping narrows to the rest.
DISPLAY_LIMIT = 1000
INFO_COLUMNS = (("mark", " "), ("rank", "#"), ("run", "run"), ("technique", "technique"), ("params", "params"),
                ("set", "set"), ("done", "n done"))
STATUS_NOTE = {RunStatus.FINISHED: "", RunStatus.FINISHED_WITH_ERRORS: " (errors)"}


@dataclass(frozen=True)
class BoardState:
    """What the user chose; the view built for it says which state it shows."""

    sort: str | None = None  # None: the first key metric present
    grouped: bool = False
    include_unfinished: bool = False
    sample_set: str | None = None


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

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.rows]

    def __repr__(self) -> str:  # short: workers put their arguments' repr in their description
        return f"BoardView({len(self.rows)} rows, sort={self.sort!r}, {self.state})"


class _Entry:
    """A table row before formatting: one run, or a group of runs differing only in seed."""

    __slots__ = ("runs", "metrics", "summaries", "first", "finished")

    def __init__(self, runs: list[LeaderboardRow], metrics: dict[str, float],
                 summaries: dict[str, MetricSummary]) -> None:
        self.runs, self.metrics, self.summaries = runs, metrics, summaries
        self.first = runs[0]
        self.finished = all(run.status in FINISHED for run in runs)


def _entries(rows: Sequence[LeaderboardRow], grouped: bool) -> list[_Entry]:
    if not grouped:
        return [_Entry([row], row.metrics, row.summaries) for row in rows]
    groups: dict[tuple, list[LeaderboardRow]] = {}
    for row in sorted(rows, key=lambda r: r.run_id):
        groups.setdefault(seed_group_key(row), []).append(row)
    entries = []
    for runs in groups.values():
        if len(runs) == 1:
            entries.append(_Entry(runs, runs[0].metrics, runs[0].summaries))
            continue
        metrics, summaries = {}, {}
        for name in {name for run in runs for name in (*run.metrics, *run.summaries)}:
            summary = pool([run.metrics.get(name) for run in runs])  # the rule of the sweep plots too
            summaries[name] = summary
            if summary.value is not None:
                metrics[name] = summary.value
        entries.append(_Entry(runs, metrics, summaries))
    return entries


def _sort_entries(entries: list[_Entry], metric: str | None) -> None:
    """Best first given the metric's direction (catalogue); entries without a value last;
    ties by run id."""
    if metric is None:
        entries.sort(key=lambda e: e.first.run_id)
        return
    sign = -1.0 if higher_is_better(metric) else 1.0

    def key(entry: _Entry):
        value = entry.metrics.get(metric)
        if not has_value(value):
            return (1, 0.0, entry.first.run_id)
        return (0, sign * value, entry.first.run_id)

    entries.sort(key=key)


def _sort_label(metric: str, sort: str | None) -> str:
    """The metric's header: its sort arrow when sorted by it (▲: lower first, ▼: higher
    first), else room for one, so a new sort never changes column widths."""
    if metric != sort:
        return f"{metric}  "
    return f"{metric} {'▼' if higher_is_better(metric) else '▲'}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _run_cell(entry: _Entry) -> str:
    if len(entry.runs) == 1:
        return str(entry.first.run_id)
    return _clip(f"{len(entry.runs)} runs: " + ",".join(str(run.run_id) for run in entry.runs), 22)


def _params_cell(entry: _Entry, cache: dict) -> str:
    run = entry.first
    key = (run.technique, json.dumps(run.params, sort_keys=True, default=str))
    if key not in cache:
        cache[key] = format_params(changed_params(run.technique, run.params))
    text = cache[key]
    if len(entry.runs) > 1:
        text = ("" if text == "-" else text + " ") + "seeds " + ",".join(str(r.seed) for r in entry.runs)
    return _clip(text, PARAMS_WIDTH)


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
    entries = _entries(rows, state.grouped)
    present = {name for e in entries for name in (*e.metrics, *e.summaries)}
    metrics = key_metrics(present)
    sort = state.sort if state.sort in metrics else (metrics[0] if metrics else None)
    _sort_entries(entries, sort)
    finished = [e for e in entries if e.finished]
    best = {} if partial else best_values(finished, metrics)
    for name in list(best):  # a value every row shares says nothing: no highlight
        values = {e.metrics[name] for e in finished if has_value(e.metrics.get(name))}
        if len(values) == 1 and sum(has_value(e.metrics.get(name)) for e in finished) > 1:
            del best[name]
    columns = INFO_COLUMNS[1:] + tuple((name, _sort_label(name, sort)) for name in metrics)
    params_cache: dict = {}
    out_rows, members, plain, key_of = [], [], [], {}
    rank = 0
    for entry in entries[:DISPLAY_LIMIT]:
        ranked = sort is not None and has_value(entry.metrics.get(sort))
        rank += ranked
        info = [str(rank) if ranked else "-", _run_cell(entry), entry.first.technique,
                _params_cell(entry, params_cache), entry.first.sample_set, _done_cell(entry)]
        cells: list[Any] = [Text(text) for text in info]
        flags = []
        for name in metrics:
            value = entry.metrics.get(name)
            text = format_summary(entry.summaries.get(name), value)
            is_best = entry.finished and name in best and has_value(value) and value == best[name]
            cells.append(Text(text, style=BEST_STYLE if is_best else ""))
            flags.append((text, is_best))
        ids = tuple(run.run_id for run in entry.runs)
        key = str(ids[0]) if len(ids) == 1 and not state.grouped else f"g{ids[0]}"
        out_rows.append((key, tuple(cells)))
        members.append(ids)
        plain.append((key, tuple(info), tuple(flags)))
        key_of.update((run_id, key) for run_id in ids)
    row_signatures = {row[0]: hash(row) for row in plain}
    signature = hash((columns, tuple(plain)))
    return BoardView(state=state, sort=sort, metrics=metrics, columns=columns, rows=out_rows, members=members,
                     signature=signature, row_signatures=row_signatures, key_of=key_of, raw=list(rows),
                     sets=list(sets), total=len(entries), partial=partial)
