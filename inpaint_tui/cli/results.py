"""Commands about results: leaderboard, compare, metrics compute, export (files for scripts)
and report (a write-up)."""

from __future__ import annotations

import csv
import functools
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from engine.metrics.catalogue import key_metrics
from engine.spec import changed_params
from inpaint_tui.cli.base import JSON_HELP, app, context_of, fail, metrics_app, print_json, rich_console, user_errors
from inpaint_tui.read.compare import VERDICT_RULE, compare_runs, verdict
from inpaint_tui.read.present import (
    best_values,
    format_interval,
    format_metric,
    format_p_value,
    format_params,
    format_summary,
)


def leaderboard_rows(store, metric: str, sample_set: str | None, include_unfinished: bool):
    """Runs ranked best first by `metric` in its catalogue direction (a metric summarised as
    another, prompt_hit, ranks by that one); an unknown metric raises UnknownMetric."""
    from engine.metrics.catalogue import higher_is_better, ranking_metric

    metric = ranking_metric(metric)
    return store.leaderboard(metric, descending=higher_is_better(metric), sample_set=sample_set,
                             include_unfinished=include_unfinished)


def print_leaderboard(rows, metric: str, *, as_json: bool, as_csv: bool) -> None:
    from engine.metrics.catalogue import metric_info, ranking_metric

    metric = ranking_metric(metric)
    names = [metric] + sorted({n for row in rows for n in row.metrics} - {metric})
    if as_json:
        print_json([dict(rank=i + 1, **row.to_dict()) for i, row in enumerate(rows)])
        return
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        fixed = ["rank", "run_id", "technique", "params", "model", "steps", "seed", "sample_set", "status", "samples_done"]
        writer.writerow(fixed + names)
        for i, row in enumerate(rows):
            writer.writerow(
                [i + 1, row.run_id, row.technique, json.dumps(row.params, sort_keys=True), row.model, row.steps, row.seed,
                 row.sample_set, row.status, row.samples_done]
                + [repr(row.metrics[n]) if n in row.metrics else "" for n in names]
            )
        return
    from rich.table import Table

    names = key_metrics({n for row in rows for n in row.metrics}, first=metric)
    arrow = metric_info(metric).arrow
    # Settings every row shares go to the title, so the table keeps room for the metrics.
    settings = {"model": lambda r: r.model, "steps": lambda r: str(r.steps), "set": lambda r: r.sample_set}
    shared = {k: get(rows[0]) for k, get in settings.items() if rows and len({get(r) for r in rows}) == 1}
    varying = [k for k in settings if k not in shared]
    title = f"leaderboard by {metric}" + "".join(f", {k} {v}" for k, v in shared.items())
    table = Table("#", "run", "technique", "params", *varying, "n",
                  *[f"{n} {arrow}" if n == metric else n for n in names], title=title,
                  caption="mean [95% bootstrap interval]; KID: mean ±std over subsets; prompt_precision: share [95% "
                          "Wilson interval]; best per column in green",
                  caption_justify="left")
    best = best_values(rows, names)
    for i, row in enumerate(rows):
        cells = []
        for n in names:
            text = format_summary(row.summaries.get(n), row.metrics.get(n))
            cells.append(f"[bold green]{text}[/]" if n in best and row.metrics.get(n) == best[n] else text)
        table.add_row(str(i + 1), str(row.run_id), row.technique, format_params(changed_params(row.technique, row.params)),
                      *[settings[k](row) for k in varying], str(row.samples_done), *cells)
    rich_console().print(table)


@app.command()
def leaderboard(
    ctx: typer.Context,
    metric: str = typer.Option("bg_mse", "--metric", "-m", help="Metric to rank by (direction-aware)."),
    sample_set: Optional[str] = typer.Option(None, "--set", help="Only runs on this sample set."),
    include_unfinished: bool = typer.Option(False, "--all", help="Include runs that have not finished."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV on stdout."),
) -> None:
    """Rank runs by a metric (mean over each run's samples)."""
    if as_json and as_csv:
        fail("--json and --csv are exclusive", 2)
    with user_errors():
        rows = leaderboard_rows(context_of(ctx).store(), metric, sample_set, include_unfinished)
    print_leaderboard(rows, metric, as_json=as_json, as_csv=as_csv)


@metrics_app.command("compute")
def metrics_compute(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., metavar="RUN_ID", help="Run id."),
    metric: List[str] = typer.Option(
        [], "--metric", "-m", metavar="NAME", help="Metric or group to (re)compute; repeatable (default: the run's configured groups)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run's per-run metrics as JSON afterwards."),
) -> None:
    """Compute a run's metrics from its stored images, replacing only those metrics' values."""
    from engine.metrics.catalogue import parse_groups
    from engine.spec import EvalConfig
    from inpaint_tui.jobs.evaluate import evaluate_run
    from inpaint_tui.jobs.execute import quiet_libraries

    quiet_libraries()
    with user_errors():
        store = context_of(ctx).store()
        run = store.run(run_id)
        # Recomputable groups only: the cost metrics were measured while generating.
        names = list(parse_groups(",".join(metric), option="--metric")) if metric else \
            list(EvalConfig.from_dict(run.eval_config).groups)
        messages = evaluate_run(store, run_id, metrics=names,
                                on_message=lambda text: typer.secho(text, fg=typer.colors.YELLOW, err=True))
        detail = store.run_detail(run_id)
    if as_json:
        print_json({name: summary.to_dict() for name, summary in detail.summaries.items()})
        return
    console = rich_console()
    console.print(f"run {run_id}: computed {', '.join(names)}" + (f" ({len(messages)} skipped)" if messages else ""))
    for name, summary in sorted(detail.summaries.items()):
        console.print(f"  {name:>20}: {format_summary(summary, None, name)}" + (f"  ({summary.note})" if summary.note else ""),
                      highlight=False)


@app.command()
def compare(
    ctx: typer.Context,
    run_a: int = typer.Argument(..., metavar="RUN_A", help="Baseline run id."),
    run_b: int = typer.Argument(..., metavar="RUN_B", help="Run compared with the baseline."),
    metric: List[str] = typer.Option([], "--metric", "-m", metavar="NAME", help="Metrics to compare (default: all both runs have)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Paired comparison of two runs on their common samples: mean difference (B − A), its
    95% bootstrap interval and the Wilcoxon signed-rank p-value, per metric."""
    with user_errors():
        store = context_of(ctx).store()
        try:
            results = compare_runs(store, run_a, run_b, metric)
        except KeyError as error:
            fail(error.args[0], 2)
    if as_json:
        print_json({"run_a": run_a, "run_b": run_b, "rule": VERDICT_RULE,
                    "comparisons": [dict(entry, verdict=verdict(entry, run_b)) for entry in results]})
        return
    from rich.text import Text

    from inpaint_tui.cli.fit import Col, fit_table

    console = rich_console()
    # Narrow terminals keep the difference, its interval, p and the verdict; the runs' means go.
    columns = [Col("metric"), Col("n", justify="right"), Col(f"run {run_a}", justify="right", drop=1),
               Col(f"run {run_b}", justify="right", drop=1), Col("B − A", justify="right"), Col("95% interval"),
               Col("p", justify="right"), Col("verdict", keep=False)]
    rows = []
    for entry in results:
        if "difference" not in entry:
            rows.append([entry["metric"], str(entry["n"]), "-", "-", "-", "-", "-", entry.get("note", "")])
            continue
        n = str(entry["n"]) + (f" ({entry['excluded']} inf left out)" if entry.get("excluded") else "")
        number = functools.partial(format_metric, entry["metric"])
        rows.append([entry["metric"], n, number(entry["mean_a"]), number(entry["mean_b"]), number(entry["difference"]),
                     format_interval(entry["ci_low"], entry["ci_high"], number=number, separator=", "),
                     format_p_value(entry["p_value"]), verdict(entry, run_b)])
    table, dropped = fit_table(columns, [[Text(str(cell)) for cell in row] for row in rows], width=console.width,
                               title=f"run {run_b} vs run {run_a} (paired, common samples)")
    console.print(table)
    if dropped:
        console.print(Text(f"not shown at this width: the means of {' and '.join(dropped)} (--json has them)"))
    console.print(Text("p: two-sided Wilcoxon signed-rank; interval: percentile bootstrap of B − A. " + VERDICT_RULE))


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
    from inpaint_tui.read.export import ExportError, format_for, write_export

    if not run_ids and sweep is None:
        fail("name RUN ids or --sweep ID to export", 2)
    try:
        format_for(out, fmt)
    except ExportError as error:
        fail(str(error), 2)
    with user_errors():
        store = context_of(ctx).store()
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
    from inpaint_tui.read.report import ReportError, write_report
    from inpaint_tui.store import RunStatus

    if not run_ids and sweep is None and sample_set is None:
        fail("name RUN ids, --sweep ID or --set NAME to report", 2)
    with user_errors():
        store = context_of(ctx).store()
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
            fail(str(error), 2)
    typer.echo(f"wrote {files.html} and {files.markdown} ({len(files.images)} images)")
