"""Commands that take results out of the tool: export (files for scripts), report (a write-up)."""

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


@app.command()
def report(
    ctx: typer.Context,
    run_ids: Optional[List[int]] = typer.Argument(None, metavar="RUN", help="Run ids to report."),
    sweep: Optional[int] = typer.Option(None, "--sweep", help="Report every run of this sweep."),
    sample_set: Optional[str] = typer.Option(None, "--set", help="Report every finished run on this sample set."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for index.html, report.md and images/."),
    baseline: Optional[int] = typer.Option(None, "--baseline", help="Run the others are compared with "
                                                                     "(default: the first reported)."),
    samples: Optional[str] = typer.Option(None, "--samples", help="Comma-separated sample names for the image "
                                                                   "grid (default: the baseline's worst and best)."),
    grid: int = typer.Option(6, "--grid", min=1, help="How many samples the image grid shows by default."),
    title: Optional[str] = typer.Option(None, "--title", help="Title of the report."),
    inline: bool = typer.Option(False, "--inline", help="Embed the images in index.html: one file to share."),
) -> None:
    """Write a self-contained HTML report and its Markdown version: leaderboard with 95%
    intervals, paired comparisons against a baseline, image grids, denoising animations and
    what it takes to reproduce each run."""
    from inpaint_tui.jobs.report import ReportError, write_report
    from inpaint_tui.store import RunStatus

    if not run_ids and sweep is None and sample_set is None:
        _fail("name RUN ids, --sweep ID or --set NAME to report", 2)
    with _user_errors():
        store = _context(ctx).store()
        chosen = list(run_ids or [])
        if sweep is not None:
            chosen += store.sweep(sweep).run_ids
        if sample_set is not None:
            store.samples(sample_set)  # names a missing set
            chosen += [run.id for run in store.runs(statuses=[RunStatus.FINISHED, RunStatus.FINISHED_WITH_ERRORS])
                       if run.sample_set == sample_set]
        names = [name.strip() for name in samples.split(",") if name.strip()] if samples else []
        try:
            files = write_report(store, list(dict.fromkeys(chosen)), out, baseline=baseline, sample_names=names,
                                 grid_samples=grid, title=title, sweep_id=sweep, inline=inline)
        except ReportError as error:
            _fail(str(error), 2)
    typer.echo(f"wrote {files.html} and {files.markdown} ({len(files.images)} images)")
