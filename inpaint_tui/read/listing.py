"""What a listing of runs shows, for every face: the columns `--columns` may name (the
query language's fields plus a few composite ones), the columns chosen by default, and each
cell's text in its full and compact forms. Torch-free and free of Rich and Textual: the CLI
fits the columns to the terminal (inpaint_tui/cli/tables.py), the TUI can fill a DataTable.

Column names: the run fields of the query language (`id`, `technique`, `status`, `set`,
`created`, `tag`, ...), `param.NAME` (the value the run used: its technique's default where
it records none; `-` for a technique without it), `metric.NAME` (as the tables show it), and
`params` (only the parameters that differ from the technique's defaults) and `progress`
(sample, step, speed and ETA of a running run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from engine.metrics.catalogue import METRICS, key_metrics
from engine.spec import changed_params, recorded_params
from inpaint_tui.read.present import compact_number, format_metric, format_params, format_progress, printable
from inpaint_tui.read.query import QueryError, param_names, resolve_field, run_field_names
from inpaint_tui.store.query import NUMERIC, SWEEPS, TIME, Field

EXTRA_COLUMNS = ("params", "progress")
SETTINGS = ("model", "steps", "guidance", "seed", "sample_set")  # go to the title when every run shares them
SHORT_STATUS = {"finished_with_errors": "with errors"}
HEADERS = {"id": "run", "sample_set": "set", "config_hash": "hash", "git_commit": "commit"}


@dataclass(frozen=True)
class ListColumn:
    """A column of a run listing: `key` as `--columns` names it, the field it reads (None for
    `params` and `progress`), and whether its cells are numbers (right-aligned, never cut)."""

    key: str
    header: str
    field: Field | None
    numeric: bool

    @property
    def is_metric(self) -> bool:
        return self.field is not None and self.field.source == "metric"


def list_column(name: str, *, text: str | None = None, start: int = 0, option: str = "--columns") -> ListColumn:
    """The column a name stands for; QueryError (pointing into `text`) for an unknown one."""
    lowered = name.strip().lower()
    if lowered in EXTRA_COLUMNS:
        return ListColumn(lowered, lowered, None, False)
    field = resolve_field(name.strip(), text=text or name, start=start, option=option)
    if field.type == SWEEPS:
        raise QueryError("sweep is not a column (filter on it: --filter 'sweep = ID')", text or name, start,
                         start + len(name), option=option)
    if field.source == "run":
        header = HEADERS.get(field.name, field.name)
    else:
        header = name.strip().split(".", 1)[1] if field.source == "param" else field.name
    numeric = field.type in NUMERIC
    return ListColumn(name.strip() if field.source != "run" else header, header, field, numeric)


def parse_columns(text: str, *, option: str = "--columns") -> list[ListColumn]:
    """`id,technique,param.blend_start,metric.kid` as columns, in that order."""
    columns, position = [], 0
    for part in text.split(","):
        start = position + len(part) - len(part.lstrip())
        position += len(part) + 1
        if not part.strip():
            raise QueryError("empty column name (two commas, or one at an end)", text, start, option=option)
        columns.append(list_column(part, text=text, start=start, option=option))
    return columns


def default_columns(runs: Sequence[Any], metrics: Mapping[int, Mapping[str, float]], *,
                    wide: bool = False) -> tuple[list[ListColumn], dict[str, str]]:
    """(columns, shared settings): the columns a listing of these runs shows by default, and
    the settings every run shares (model, steps, ... for the title, so the table keeps its
    width for what differs). `wide`: every column with something to show."""
    present = {name for values in metrics.values() for name in values}
    shared: dict[str, str] = {}
    if not wide and len(runs) > 1:
        for name in SETTINGS:
            values = {_setting(run, name) for run in runs}
            if len(values) == 1:
                shared[HEADERS.get(name, name)] = values.pop()
    names = ["id", "status", "technique", "params"] + [HEADERS.get(n, n) for n in SETTINGS
                                                          if HEADERS.get(n, n) not in shared]
    names += ["done"]
    if wide:
        names += ["failed"]
    if any(run.progress is not None for run in runs):
        names += ["progress"]
    shown_metrics = [m.name for m in METRICS.values() if m.name in present] if wide else key_metrics(present)
    names += [f"metric.{name}" for name in shown_metrics]
    if any(run.tags for run in runs):
        names += ["tag"]
    if wide:
        names += ["note", "device", "hash", "commit"]
    names += ["created"]
    return [list_column(name) for name in names], shared


def available_columns(runs: Sequence[Any], metrics: Mapping[int, Mapping[str, float]]) -> list[ListColumn]:
    """Every column a listing of these runs can fill, for a face that lets the user choose:
    the run fields (`sweep` aside: it is not a column), `params` and `progress`, `param.NAME`
    for each parameter of the runs' techniques (and any they record), and `metric.NAME` for
    each catalogue metric some run has; in that order, each group in its natural order (the
    query language's fields; the techniques' own parameters as first met, then the options
    they all share; the catalogue)."""
    names = [name for name in run_field_names() if name != "sweep"] + list(EXTRA_COLUMNS)
    known = set(param_names())
    schemas = [list(recorded_params(technique, {})) for technique in dict.fromkeys(run.technique for run in runs)]
    params = dict.fromkeys(name for schema in schemas for name in schema)
    for run in runs:
        params.update(dict.fromkeys(run.params))
    shared = set.intersection(*map(set, schemas)) if schemas else set()  # the options: after what differs
    names += [f"param.{name}" for name in sorted(params, key=lambda name: name in shared) if name in known]
    present = {name for values in metrics.values() for name in values}
    names += [f"metric.{metric.name}" for metric in METRICS.values() if metric.name in present]
    return [list_column(name) for name in names]


def column_value(run, column: ListColumn, metrics: Mapping[str, float]) -> Any:
    """The value a `metric.NAME` or `param.NAME` cell shows, unformatted (to order runs by):
    the metric's number, the parameter as the run used it; None where the run has none."""
    field = column.field
    if field is None or field.source not in ("metric", "param"):
        raise ValueError(f"{column.key} is not a metric or parameter column")
    if field.source == "metric":
        return metrics.get(field.name)
    return recorded_params(run.technique, run.params).get(field.name)  # about 5 µs: 10 000 runs in 0.05 s


def _setting(run, name: str) -> str:
    return _plain(getattr(run, name))


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else f"{value:g}"
    return printable(str(value))


def cell_forms(run, column: ListColumn, metrics: Mapping[str, float]) -> list[str]:
    """The cell's text, richest first, then more compact forms (for a narrow terminal)."""
    if column.key == "params":
        return [format_params(changed_params(run.technique, run.params))]
    if column.key == "progress":
        full = format_progress(run.progress)
        short = full.replace("sample ", "").replace("step ", "")
        if short == full:
            return [full]
        progress = run.progress
        return [full, short, f"{progress.step}/{progress.steps}" + (f" {full.rsplit('ETA ', 1)[1]}" if "ETA" in full
                                                                   else "")]
    field = column.field
    if field.source == "metric":
        value = column_value(run, column, metrics)
        return [format_metric(field.name, value), compact_number(value)]
    if field.source == "param":
        value = column_value(run, column, metrics)
        return [_plain(value) if value is not None else "-"]
    name = field.name
    if name == "status":
        text = run.status + (" (cancelling)" if run.cancel_requested else "")
        short = SHORT_STATUS.get(run.status, run.status) + (" (cancel)" if run.cancel_requested else "")
        return [text, short] if short != text else [text]
    if name == "done":
        return [f"{run.done_count}/{run.sample_count}"]
    if field.type == TIME:
        value = {"created": run.created_at, "started": run.started_at, "finished": run.finished_at}[name]
        if value is None:
            return ["-"]
        return [value.strftime("%Y-%m-%d %H:%M"), value.strftime("%m-%d %H:%M")]
    if name == "tag":
        return [" ".join(run.tags) or "-"]
    if name in ("config_hash", "git_commit"):
        value = getattr(run, name)
        return [value[:12] if value else "-"]
    if name == "error":
        return [printable((run.error or "-").splitlines()[0] if run.error else "-")]
    value = {"samples": run.sample_count, "failed": run.failed_count, "worker": run.worker_id}.get(name, None) \
        if name in ("samples", "failed", "worker") else getattr(run, name)
    return [_plain(value) if value not in ("", None) else "-"]


__all__ = ["ListColumn", "available_columns", "cell_forms", "column_value", "default_columns", "list_column",
           "parse_columns"]
