"""Commands that take results out of the tool: export (files for scripts)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from inpaint_tui.cli import _context, _fail, _user_errors, app


@app.command()
def export(
    ctx: typer.Context,
    run_ids: Optional[List[int]] = typer.Argument(None, metavar="RUN", help="Run ids to export."),
    sweep: Optional[int] = typer.Option(None, "--sweep", help="Export every run of this sweep."),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f", help="csv, jsonl or parquet (default: from --out's extension)."),
    out: Path = typer.Option(..., "--out", "-o", help="File for the per-sample rows; the per-run rows go "
                                                     "beside it with .runs before the extension."),
) -> None:
    """Write one row per (run, sample) with every parameter and metric, and a per-run summary
    (means with 95% intervals). Column names are listed in the README."""
    from inpaint_tui.jobs.export import ExportError, format_for, write_export

    if not run_ids and sweep is None:
        _fail("name RUN ids or --sweep ID to export", 2)
    try:
        format_for(out, fmt)
    except ExportError as error:
        _fail(str(error), 2)
    with _user_errors():
        store = _context(ctx).store()
        chosen = list(run_ids or [])
        if sweep is not None:
            chosen += [run_id for run_id in store.sweep(sweep).run_ids if run_id not in chosen]
        samples_path, runs_path = write_export(store, chosen, out, fmt)
    typer.echo(f"wrote {samples_path} (per sample) and {runs_path} (per run) for {len(chosen)} run(s)")
