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
from inpaint_tui.cli.selection import FILTER_HELP, LIMIT_HELP, SORT_HELP, selection
from inpaint_tui.read.compare import VERDICT_RULE, compare_runs, verdict
from inpaint_tui.read.present import (
    best_values,
    format_interval,
    format_metric,
    format_p_value,
    format_params,
    format_summary,
)


def leaderboard_rows(store, metric: str, sample_set: str | None, include_unfinished: bool, *, where=None,
                     order=(), limit: int | None = None):
    """Runs ranked best first by `metric` in its catalogue direction (a metric summarised as
    another, prompt_hit, ranks by that one), or in the order of the sort keys `order`; only
    those matching the filter `where`; at most `limit`. An unknown metric raises UnknownMetric."""
    from engine.metrics.catalogue import higher_is_better, ranking_metric

    metric = ranking_metric(metric)
    return store.leaderboard(metric, descending=higher_is_better(metric), sample_set=sample_set,
                             include_unfinished=include_unfinished, where=where, order=order, limit=limit)


def print_leaderboard(rows, metric: str, *, as_json: bool, as_csv: bool, wide: bool = False,
                      sorted_by: str | None = None) -> None:
    from engine.metrics.catalogue import ranking_metric

    metric = ranking_metric(metric)
    names = [metric] + sorted({n for row in rows for n in row.metrics} - {metric})
    if as_json:
        print_json(dict(rank=i + 1, **row.fields()) for i, row in enumerate(rows))
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
    from engine.metrics.catalogue import HUMAN_METRIC
    from inpaint_tui.cli.tables import Column, print_table

    present = {n for row in rows for n in row.metrics} | {n for row in rows for n in row.summaries}
    names = key_metrics(present, first=metric) if not wide else \
        [metric] + [n for n in names if n != metric]
    # Settings every row shares go to the title, so the table keeps room for the metrics.
    settings = {"model": lambda r: r.model, "steps": lambda r: str(r.steps), "set": lambda r: r.sample_set}
    shared = {k: get(rows[0]) for k, get in settings.items() if rows and len({get(r) for r in rows}) == 1}
    varying = [k for k in settings if k not in shared]
    order = f"sorted by {sorted_by}" if sorted_by else f"by {metric}"
    title = f"leaderboard {order}" + "".join(f", {k} {v}" for k, v in shared.items())
    best = best_values(rows, names)
    columns = [
        Column("#", "#", [str(i + 1) for i in range(len(rows))], justify="right"),
        Column("run", "run", [str(row.run_id) for row in rows], justify="right"),
        Column("technique", "technique", [row.technique for row in rows]),
    ]
    for index, name in enumerate(names):
        columns.append(_metric_column(rows, name, metric, index, best))
        if name == metric:  # the ranking metric before the parameters
            columns.append(Column("params", "params", [format_params(changed_params(row.technique, row.params))
                                                       for row in rows], wrap=True))
    position = 5 if names else 4  # after the parameters
    if not names:
        columns.append(Column("params", "params", [format_params(changed_params(row.technique, row.params))
                                                   for row in rows], wrap=True))
    for offset, key in enumerate(varying):
        columns.insert(position + offset, Column(key, key, [settings[key](row) for row in rows], priority=10 + offset))
    columns.insert(position + len(varying), Column("n", "n", [str(row.samples_done) for row in rows],
                                                   justify="right", priority=25))

    def caption(fitted) -> str:
        shown = {column.key: column for column in fitted.columns}
        forms = {column.form for column in fitted.columns if column.key in names}
        if forms and forms <= {2}:
            return "means; intervals hidden at this width (--wide or --json shows them); best per column in green"
        return ("mean [95% bootstrap interval]; KID: mean ±std over subsets; prompt_precision: share [95% Wilson "
                "interval]; best per column in green") if shown else ""

    console = rich_console()
    print_table(console, columns, title=title, caption=caption, wide=wide)
    if HUMAN_METRIC in names:
        from inpaint_tui.read.judging import mixed_studies_line

        mixed = mixed_studies_line({row.run_id: row.summaries for row in rows})
        if mixed:
            console.print(mixed)


def _metric_column(rows, name: str, metric: str, index: int, best: dict):
    """One metric's column of a leaderboard table (runs or groups: anything with `metrics`
    and `summaries`), the ranking metric first to stay when the table is narrowed."""
    from engine.metrics.catalogue import metric_info
    from inpaint_tui.cli.tables import Column
    from inpaint_tui.read.present import compact_number

    full, two_lines, bare, compact = [], [], [], []
    for row in rows:
        summary, value = row.summaries.get(name), row.metrics.get(name)
        text = format_summary(summary, value, name)
        number = format_metric(name, value) if value is not None else text
        spread = text[len(number):].strip() if text.startswith(number) else ""
        full.append(text)
        two_lines.append(f"{number}\n{spread}" if spread else number)
        bare.append(number)
        compact.append(compact_number(value) if value is not None else text)
    styles = ["bold green" if name in best and row.metrics.get(name) == best[name] else None for row in rows]
    # Forms: mean [interval]; the interval on a second line; the mean alone; 4 significant digits.
    return Column(name, f"{name} {metric_info(metric).arrow}" if name == metric else name, full,
                  forms=[two_lines, bare, compact], justify="left", form_justify=["left", "right", "right"],
                  styles=styles, priority=0 if name == metric else 30 + index,
                  group="rank" if name == metric else "metric")


def print_grouped_leaderboard(groups, metric: str, key: str, *, as_json: bool, as_csv: bool,
                              wide: bool = False) -> None:
    """Groups of runs (read/pooling, already ranked) as the leaderboard prints runs: one row
    per group, its value, runs and configurations, its pooled metrics."""
    from engine.metrics.catalogue import ranking_metric
    from inpaint_tui.read.pooling import MISSING, SEED, format_group_value

    metric = ranking_metric(metric)
    names = [metric] + sorted({n for group in groups for n in group.metrics} - {metric})

    def value_of(group):
        return None if group.value is MISSING else group.value

    if as_json:
        print_json([dict(rank=i + 1, group_by=key, value=value_of(group), label=group.label,
                         runs=[run.run_id for run in group.runs], configurations=group.configurations,
                         metrics=group.metrics, summaries={n: s.to_dict() for n, s in group.summaries.items()})
                    for i, group in enumerate(groups)])
        return
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["rank", "group_by", "value", "runs", "configurations"] + names)
        for i, group in enumerate(groups):
            writer.writerow([i + 1, key, "" if group.value is MISSING else format_group_value(group.value),
                             " ".join(str(run.run_id) for run in group.runs), group.configurations]
                            + [repr(group.metrics[n]) if n in group.metrics else "" for n in names])
        return
    from inpaint_tui.cli.tables import Column, print_table
    from inpaint_tui.read.present import plural

    present = {n for group in groups for n in (*group.metrics, *group.summaries)}
    names = key_metrics(present, first=metric) if not wide else names
    best = best_values(groups, names)
    columns = [
        Column("#", "#", [str(i + 1) for i in range(len(groups))], justify="right"),
        Column("runs", "runs", [" ".join(str(run.run_id) for run in group.runs) for group in groups], wrap=True,
               priority=20),
        Column("configs", "configs", [str(group.configurations) for group in groups], justify="right", priority=25),
    ]
    columns += [_metric_column(groups, name, metric, index, best) for index, name in enumerate(names)]
    if key == SEED:  # a configuration's row says which it is
        columns.insert(1, Column("technique", "technique", [group.runs[0].technique for group in groups]))
        columns.append(Column("params", "params", [format_params(changed_params(group.runs[0].technique,
                                                                                group.runs[0].params))
                                                   for group in groups], wrap=True))
        columns = [column for column in columns if column.key != "configs"]  # one each
        title = f"leaderboard by {metric}: {plural(len(groups), 'configuration')} (seeds pooled)"
    else:  # named as the TUI names it: blend_start=0.25
        columns.insert(1, Column("group", "group", [group.label for group in groups]))
        title = f"leaderboard by {metric}, grouped by {key}: {plural(len(groups), 'group')}"

    def caption(fitted) -> str:
        return ("a group's value: the mean over its runs [lowest–highest run value]; a group of one run: its own "
                "mean [95% interval]; best per column in green") if fitted.columns else ""

    print_table(rich_console(), columns, title=title, caption=caption, wide=wide)


@app.command()
def leaderboard(
    ctx: typer.Context,
    metric: str = typer.Option("bg_mse", "--metric", "-m", help="Metric to rank by (direction-aware)."),
    sample_set: Optional[str] = typer.Option(None, "--set", help="Only runs on this sample set."),
    include_unfinished: bool = typer.Option(False, "--all", help="Include runs that have not finished."),
    filter_text: Optional[str] = typer.Option(None, "--filter", help=FILTER_HELP),
    sort: Optional[str] = typer.Option(None, "--sort", "-s", help=SORT_HELP + " Default: by --metric, best first."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=0, help=LIMIT_HELP),
    wide: bool = typer.Option(False, "--wide", "-w", help="Every metric, intervals included, whatever the "
                                                          "terminal's width (for a pager: | less -S)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV on stdout."),
    group_by: Optional[str] = typer.Option(
        None, "--group-by", "-g", metavar="KEY",
        help="One row per value of KEY, its runs' metrics pooled (the mean over runs, with the lowest and "
             "highest run value): "
             "technique, model, steps, guidance, set or param.NAME (a run not recording the parameter has its "
             "technique's default; a technique without it is the '(none)' group); seed: runs differing only in "
             "seed (configurations). Ranked by --metric; --limit counts groups."),
) -> None:
    """Rank runs by a metric (mean over each run's samples)."""
    if as_json and as_csv:
        fail("--json and --csv are exclusive", 2)
    if group_by is not None:
        _grouped_leaderboard(ctx, group_by, metric, sample_set, include_unfinished, filter_text, sort, limit,
                             as_json=as_json, as_csv=as_csv, wide=wide)
        return
    with user_errors():
        chosen = selection(filter_text, sort, limit)
        rows = leaderboard_rows(context_of(ctx).store(), metric, sample_set, include_unfinished, where=chosen.where,
                                order=chosen.order, limit=chosen.limit)
    print_leaderboard(rows, metric, as_json=as_json, as_csv=as_csv, wide=wide, sorted_by=sort if chosen.order else None)


def _grouped_leaderboard(ctx, group_by: str, metric: str, sample_set, include_unfinished: bool, filter_text, sort,
                         limit, *, as_json: bool, as_csv: bool, wide: bool) -> None:
    """`leaderboard --group-by`: every selected run is grouped (the SQL limit would cut groups
    short), the groups ranked by the pooled --metric, then --limit of them."""
    from engine.metrics.catalogue import ranking_metric
    from inpaint_tui.read.pooling import best_first, group_runs, resolve_group_key
    from inpaint_tui.read.query import QueryError

    if sort:
        fail("--group-by ranks the groups by --metric: --sort orders runs, not groups", 2)
    try:
        key = resolve_group_key(group_by, option="--group-by")
    except QueryError as error:
        fail(f"--group-by: {error.message}", 2)
    with user_errors():
        chosen = selection(filter_text, None, None)
        rows = leaderboard_rows(context_of(ctx).store(), metric, sample_set, include_unfinished, where=chosen.where)
    groups = best_first(group_runs(rows, key), ranking_metric(metric))
    print_grouped_leaderboard(groups[:limit] if limit is not None else groups, metric, key, as_json=as_json,
                              as_csv=as_csv, wide=wide)


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

    from inpaint_tui.cli.tables import Column, from_rows, print_table

    console = rich_console()
    # Narrow terminals keep the difference, its interval, p and the verdict; the runs' means go.
    columns = [Column("metric", "metric", []), Column("n", "n", [], justify="right"),
               Column("a", f"run {run_a}", [], justify="right", priority=1),
               Column("b", f"run {run_b}", [], justify="right", priority=1),
               Column("difference", "B − A", [], justify="right"), Column("interval", "95% interval", []),
               Column("p", "p", [], justify="right"), Column("verdict", "verdict", [], wrap=True)]
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
    fitted = print_table(console, from_rows(columns, rows), boxed=True, say_dropped=False,
                         title=f"run {run_b} vs run {run_a} (paired, common samples)")
    if fitted.dropped:
        means = [column.header for column in columns if column in fitted.dropped]  # in the table's order
        console.print(Text(f"not shown at this width: the means of {' and '.join(means)} "
                           "(--json has them)"))
    console.print(Text("p: two-sided Wilcoxon signed-rank; interval: percentile bootstrap of B − A. " + VERDICT_RULE))


def chosen_runs(store, run_ids: list[int], chosen) -> list[int]:
    """The runs `export` and `report` take: those named (in their order), narrowed by the
    filter, reordered by --sort and cut by --limit; with none named, every run the filter
    matches."""
    if not (chosen.where is not None or chosen.order or chosen.limit is not None):
        return run_ids
    matching = store.query_run_ids(chosen.where, chosen.order, None if run_ids and not chosen.order else chosen.limit,
                                   run_ids=run_ids or None)
    if run_ids and not chosen.order:  # the order given on the command line stays
        kept = set(matching)
        matching = [run_id for run_id in run_ids if run_id in kept][:chosen.limit]
    return matching


@app.command()
def export(
    ctx: typer.Context,
    run_ids: Optional[List[int]] = typer.Argument(None, metavar="RUN", help="Run ids to export."),
    sweep: Optional[int] = typer.Option(None, "--sweep", help="Export every run of this sweep."),
    filter_text: Optional[str] = typer.Option(None, "--filter", help=FILTER_HELP + " Without RUN or --sweep: "
                                                                                     "every run matching."),
    sort: Optional[str] = typer.Option(None, "--sort", "-s", help=SORT_HELP + " The rows' order."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=0, help=LIMIT_HELP),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f", help="csv, jsonl or parquet (default: from --out's extension)."),
    out: Path = typer.Option(..., "--out", "-o", help="File for the per-sample rows; the per-run rows go "
                                                     "beside it with .runs before the extension."),
) -> None:
    """Write one row per (run, sample) with every parameter and metric, and a per-run summary
    (means with 95% intervals). Column names are listed in the README."""
    from inpaint_tui.read.export import ExportError, format_for, write_export

    with user_errors():
        chosen = selection(filter_text, sort, limit)
    if not run_ids and sweep is None and not (chosen.where is not None or chosen.order or chosen.limit is not None):
        fail("name RUN ids, --sweep ID or --filter EXPR to export", 2)
    try:
        format_for(out, fmt)
    except ExportError as error:
        fail(str(error), 2)
    with user_errors():
        store = context_of(ctx).store()
        named = list(run_ids or [])
        if sweep is not None:
            named += [run_id for run_id in store.sweep(sweep).run_ids if run_id not in named]
        runs = chosen_runs(store, named, chosen)
        if not runs:
            fail("no runs to export: none matches" if chosen.where is not None else "no runs to export", 1)
        samples_path, runs_path = write_export(store, runs, out, fmt)
    typer.echo(f"wrote {samples_path} (per sample) and {runs_path} (per run) for {len(runs)} run(s)")


@app.command()
def report(
    ctx: typer.Context,
    run_ids: Optional[List[int]] = typer.Argument(None, metavar="RUN", help="Run ids to report."),
    sweep: Optional[int] = typer.Option(None, "--sweep", help="Report every run of this sweep."),
    sample_set: Optional[str] = typer.Option(None, "--set", help="Report every finished run on this sample set."),
    filter_text: Optional[str] = typer.Option(None, "--filter", help=FILTER_HELP + " Without RUN, --sweep or "
                                                                                     "--set: every run matching."),
    sort: Optional[str] = typer.Option(None, "--sort", "-s", help=SORT_HELP + " The first is the default baseline."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=0, help=LIMIT_HELP),
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

    with user_errors():
        chosen = selection(filter_text, sort, limit)
    narrowed = chosen.where is not None or chosen.order or chosen.limit is not None
    if not run_ids and sweep is None and sample_set is None and not narrowed:
        fail("name RUN ids, --sweep ID, --set NAME or --filter EXPR to report", 2)
    with user_errors():
        store = context_of(ctx).store()
        named = list(run_ids or [])
        if sweep is not None:
            named += store.sweep(sweep).run_ids
        if sample_set is not None:
            store.samples(sample_set)  # names a missing set
            named += [run.id for run in store.runs(statuses=[RunStatus.FINISHED, RunStatus.FINISHED_WITH_ERRORS])
                      if run.sample_set == sample_set]
        runs = chosen_runs(store, list(dict.fromkeys(named)), chosen)
        if not runs:
            fail("no runs to report: none matches" if chosen.where is not None else "no runs to report", 1)
        names = [name.strip() for name in samples.split(",") if name.strip()] if samples else []
        try:
            files = write_report(store, runs, out, baseline=baseline, sample_names=names,
                                 grid_samples=grid, title=title, sweep_id=sweep, inline=inline)
        except ReportError as error:
            fail(str(error), 2)
    typer.echo(f"wrote {files.html} and {files.markdown} ({len(files.images)} images)")
