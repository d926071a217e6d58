"""Runs out of the tool, for scripts: one row per (run, sample) and one row per run, as CSV,
JSON lines or Parquet. The column names are a contract (documented in the README):

Per (run, sample), in `FILE`:
  run_id, technique, model, steps, guidance, run_seed, sample_set, run_status, config_hash,
  sample_id, sample_name, position, seed, status, seconds, attempts, image_path, error,
  param.<name> for every technique parameter of any exported run (empty where a run's
  technique has no such parameter), metric.<name> for every per-sample metric.

Per run, in `FILE` with `.runs` before its extension (`results.csv` -> `results.runs.csv`):
  run_id, technique, model, steps, guidance, run_seed, sample_set, run_status, config_hash,
  negative_prompt, device, git_commit, command, created_at, started_at, finished_at,
  sample_count, done_count, failed_count, tags (JSON list), note, param.<name>, and per metric
  metric.<name> (the mean, or the set-level value), metric.<name>.std, .ci_low, .ci_high
  (the stored 95% interval), .n and .note (why a metric is missing; for `human`, the judging
  study the score comes from).

Values are the stored ones, unrounded: floats are written with `repr` (CSV), as JSON numbers
(JSONL; a PSNR of an exact copy is `Infinity`, which Python and pandas read), or as float64
(Parquet). Missing values are empty (CSV) or null.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

from inpaint_tui.store import RunDetail, Store

FORMATS = ("csv", "jsonl", "parquet")
RUN_COLUMNS = ("run_id", "technique", "model", "steps", "guidance", "run_seed", "sample_set", "run_status",
               "config_hash")
SAMPLE_COLUMNS = ("sample_id", "sample_name", "position", "seed", "status", "seconds", "attempts", "image_path",
                  "error")
SUMMARY_COLUMNS = ("negative_prompt", "device", "git_commit", "command", "created_at", "started_at", "finished_at",
                   "sample_count", "done_count", "failed_count", "tags", "note")
SUMMARY_PARTS = ("std", "ci_low", "ci_high", "n", "note")
TEXT_COLUMNS = frozenset(("technique", "model", "sample_set", "run_status", "config_hash", "sample_name", "status",
                          "image_path", "error", "negative_prompt", "device", "git_commit", "command", "created_at",
                          "started_at", "finished_at", "tags", "note",
                          "question", "outcome", "rater", "shown_at", "answered_at"))  # judgements (read/judging.py)


class ExportError(ValueError):
    """Export cannot be written as asked (unknown format, nothing to export)."""


def format_for(path: Path, requested: str | None) -> str:
    """The format asked for, else the one the file name says."""
    chosen = requested or path.suffix.lstrip(".").lower()
    if chosen not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)} (or an --out ending in one); "
                          f"got {chosen or path.name!r}")
    return chosen


def summary_path(path: Path) -> Path:
    """Where the per-run file goes beside `path`."""
    return path.with_name(f"{path.stem}.runs{path.suffix}")


def export_tables(store: Store, run_ids: Sequence[int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per-sample rows, per-run rows) for `run_ids`, in that order, every row with the same
    columns."""
    if not run_ids:
        raise ExportError("no runs to export")
    details = store.run_details(run_ids)
    params = sorted({name for d in details for name in d.run.params})
    sample_metrics = sorted({name for d in details for s in d.samples for name in s.metrics})
    run_metrics = sorted({name for d in details for name in (*d.summaries, *d.metrics)})
    sample_rows, run_rows = [], []
    for detail in details:
        head = _run_columns(detail, params)
        for sample in detail.samples:
            row = dict(head)
            row.update(sample_id=sample.sample_id, sample_name=sample.sample_name, position=sample.position,
                       seed=sample.seed, status=sample.status, seconds=sample.seconds, attempts=sample.attempts,
                       image_path=str(sample.image_path) if sample.image_path else None, error=sample.error)
            row.update({f"metric.{name}": sample.metrics.get(name) for name in sample_metrics})
            sample_rows.append(row)
        run = detail.run
        row = dict(head)
        row.update(negative_prompt=run.negative_prompt, device=run.device, git_commit=run.git_commit,
                   command=run.command, created_at=_time(run.created_at), started_at=_time(run.started_at),
                   finished_at=_time(run.finished_at), sample_count=run.sample_count, done_count=run.done_count,
                   failed_count=run.failed_count, tags=json.dumps(list(run.tags)), note=run.note)
        for name in run_metrics:
            summary = detail.summaries.get(name)
            row[f"metric.{name}"] = detail.metrics.get(name)
            for part in SUMMARY_PARTS:
                row[f"metric.{name}.{part}"] = getattr(summary, part) if summary is not None else None
        run_rows.append(row)
    return sample_rows, run_rows


def write_export(store: Store, run_ids: Sequence[int], out: Path, fmt: str | None = None) -> tuple[Path, Path]:
    """Write both files; returns their paths (per sample, per run)."""
    out = Path(out)
    chosen = format_for(out, fmt)
    sample_rows, run_rows = export_tables(store, run_ids)
    return write_rows(sample_rows, out, chosen), write_rows(run_rows, summary_path(out), chosen)


def write_rows(rows: list[dict[str, Any]], out: Path, fmt: str | None = None) -> Path:
    """Rows (every one with the same columns) to one file in the format asked or named by `out`."""
    out = Path(out)
    chosen = format_for(out, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    {"csv": _write_csv, "jsonl": _write_jsonl, "parquet": _write_parquet}[chosen](rows, out)
    return out


def read_export(path: Path) -> list[dict[str, Any]]:
    """Rows of an exported file as Python values (floats as floats, missing as None): the
    inverse of `write_export`, for tests and scripts."""
    path = Path(path)
    fmt = format_for(path, None)
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with path.open(newline="") as handle:
        return [{key: _parse_csv(key, value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _run_columns(detail: RunDetail, params: list[str]) -> dict[str, Any]:
    run = detail.run
    row = dict(run_id=run.id, technique=run.technique, model=run.model, steps=run.steps, guidance=run.guidance,
               run_seed=run.seed, sample_set=run.sample_set, run_status=run.status, config_hash=run.config_hash)
    row.update({f"param.{name}": _param(run.params.get(name)) for name in params})
    return row


def _param(value: Any) -> Any:
    """Parameters are scalars in one column type each; lists or dicts go in as JSON text."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _time(value) -> str | None:
    return value.isoformat() if value is not None else None


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_cell(value) for key, value in row.items()})


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float
    return str(value)


def _parse_csv(column: str, text: str) -> Any:
    """Empty to None; text columns stay text (a sample named "001"), numbers back to numbers."""
    if text == "":
        return None
    if column in TEXT_COLUMNS or column.endswith(".note"):
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return {"True": True, "False": False}.get(text, text)
    return value if math.isfinite(value) or text.lower().lstrip("+-") in ("inf", "nan") else text


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(rows[0]) if rows else []
    mixed = {column for column in columns if len({_kind(row[column]) for row in rows} - {None}) > 1}
    if mixed:  # one type per Parquet column: a parameter that is a number in one run and text in another
        rows = [{key: (None if value is None else value if isinstance(value, str) else json.dumps(value))
                 if key in mixed else value for key, value in row.items()} for row in rows]
    pq.write_table(pa.Table.from_pylist(rows), path)


def _kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, (int, float)) else "text"
