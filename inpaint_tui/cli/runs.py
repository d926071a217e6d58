"""`inpaint-tui runs ...`: list, inspect, cancel, resume, delete, annotate and watch runs."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from engine.metrics.catalogue import key_metrics
from inpaint_tui.cli.base import (
    JSON_HELP,
    context_of,
    fail,
    print_json,
    rich_console,
    runs_app,
    user_errors,
)
from inpaint_tui.cli.selection import FILTER_HELP, LIMIT_HELP, SORT_HELP, selection
from inpaint_tui.cli.progress import announce_detached, execute_with_progress, follow, foreground_worker, progress_bars
from inpaint_tui.read.present import format_metric, format_params, format_progress, format_seed, plural, printable


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    filter_text: Optional[str] = typer.Option(None, "--filter", help=FILTER_HELP),
    sort: Optional[str] = typer.Option(None, "--sort", "-s", help=SORT_HELP + " Default: id."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=0, help=LIMIT_HELP),
    columns: Optional[str] = typer.Option(
        None, "--columns", "-c", help="Comma-separated columns: run fields, param.NAME, metric.NAME, params (those "
                                      "not at their defaults), progress; e.g. id,technique,param.blend_start,metric.kid."),
    wide: bool = typer.Option(False, "--wide", "-w", help="Every column at full width, whatever the terminal "
                                                          "(for a pager: | less -S)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List runs, one line each: parameters that differ from their defaults and the key
    metrics, fitted to the terminal's width."""
    from inpaint_tui.read.listing import cell_forms, default_columns, parse_columns

    with user_errors():
        chosen = selection(filter_text, sort, limit)
        picked = parse_columns(columns) if columns else None
        store = context_of(ctx).store()
        infos = store.find_runs(chosen.where, chosen.order, chosen.limit)
        values, _ = store.run_metrics([info.id for info in infos])
        total = store.run_count() if chosen.narrows else len(infos)
    if as_json:
        print_json(dict(info.fields(), metrics=values.get(info.id, {})) for info in infos)
        return
    from inpaint_tui.cli.tables import Column, print_table

    shown, shared = (picked, {}) if picked else default_columns(infos, values, wide=wide)
    table_columns = []
    for column in shown:
        forms = [cell_forms(info, column, values.get(info.id, {})) for info in infos]
        depth = max((len(f) for f in forms), default=1)
        padded = [f + [f[-1]] * (depth - len(f)) for f in forms]
        table_columns.append(Column(
            key=column.key, header=column.header, cells=[f[0] for f in padded],
            forms=[[f[level] for f in padded] for level in range(1, depth)],
            justify="right" if column.numeric else "left", wrap=column.key in ("params", "note", "error", "tag"),
            priority=0 if picked else _drop_priority(column, shown),
            group="metric" if column.is_metric else None))
    count = f"{len(infos)} of {total} runs" if total != len(infos) else f"{len(infos)} run{'s' * (len(infos) != 1)}"
    title = count + "".join(f", {name} {value}" for name, value in shared.items())
    console = rich_console()
    if not infos:
        console.print(f"no runs{' match' if chosen.where is not None else ''} ({total} in the store)", highlight=False)
        return
    print_table(console, table_columns, title=title, wide=wide)


def _drop_priority(column, shown) -> int:
    """Which default columns give way first when the terminal is narrow (0: never): the
    creation time, then the last metrics, tags, progress and settings; never the run, its
    status, technique, parameters, done count or first metric."""
    metrics = [c for c in shown if c.is_metric]
    if column.is_metric:
        index = metrics.index(column)
        return 0 if index == 0 else 30 + index
    return {"created": 90, "commit": 80, "hash": 80, "device": 80, "note": 75, "failed": 70, "tag": 25,
            "progress": 20, "seed": 15, "guidance": 14, "steps": 13, "model": 12, "set": 11}.get(column.key, 0)


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., metavar="RUN_ID", help="Run id."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a run: configuration, status, per-sample outcomes and metrics."""
    with user_errors():
        detail = context_of(ctx).store().run_detail(run_id)
    if as_json:
        print_json(detail.to_dict())
        return
    from rich.text import Text

    from inpaint_tui.cli.tables import Column, from_rows, print_table

    run = detail.run
    console = rich_console()
    console.print(f"[bold]run {run.id}[/] {run.technique} — {run.status}")
    for label, value in (
        ("parameters", format_params(run.params)),
        ("model", _model_label(run.model)),
        ("samples", f"{run.sample_set} ({run.done_count}/{run.sample_count} done, {run.failed_count} failed)"),
        ("steps / guidance / seed", f"{run.steps} / {run.guidance:g} / {run.seed}"),
        ("negative prompt", run.negative_prompt or "-"),
        ("device", run.device or "-"),
        ("worker", str(run.worker_id or "-")),
        ("progress", format_progress(run.progress) + (" (cancel requested)" if run.cancel_requested else "")),
        ("options", format_params(run.options)),
        ("tags", " ".join(run.tags) or "-"),
        ("note", run.note or "-"),
        ("config hash", run.config_hash[:16]),
        ("git commit", run.git_commit or "-"),
        ("versions", " ".join(f"{k}={v}" for k, v in run.versions.items())),
        ("command", run.command or "-"),
        ("error", run.error or "-"),
    ):
        console.print(f"  {label:>24}: {value}", highlight=False)
    names = key_metrics({name for s in detail.samples for name in s.metrics})
    columns = [Column("#", "#", [], justify="right"), Column("sample", "sample", []), Column("status", "status", []),
               Column("seed", "seed (hex)", [], justify="right", priority=2),
               # the later metrics give way first (the rightmost of a priority goes first); the
               # outputs' folder is printed instead of the paths
               *[Column(n, n, [], justify="right", priority=1 if j >= 3 else 0) for j, n in enumerate(names)],
               Column("output", "output / error", [], wrap=True, fold=True, priority=3)]
    rows = [[s.position, printable(s.sample_name), s.status, format_seed(s.seed),
             *[format_metric(n, s.metrics.get(n)) for n in names],
             str(s.image_path) if s.image_path else printable(s.error or "-")] for s in detail.samples]
    dropped = print_table(console, from_rows(columns, rows), boxed=True, say_dropped=False).dropped_keys
    if "output" in dropped:
        folder = next((s.image_path.parent for s in detail.samples if s.image_path), None)
        if folder is not None:
            console.print(Text(f"  outputs: {folder}/"))
        for s in detail.samples:
            if s.error:
                console.print(Text(f"  {printable(s.sample_name)}: {printable(s.error)}"))
    hidden = [name for name in dropped if name in names] + (["seed"] if "seed" in dropped else [])
    if hidden:
        console.print(Text(f"  not shown at this width: {', '.join(hidden)} (--json has every value)"))
    if detail.metrics:
        console.print("  mean: " + "  ".join(f"{k}={format_metric(k, v)}" for k, v in sorted(detail.metrics.items())),
                      highlight=False)


def _model_label(name: str) -> str:
    """A run's model, marked when it is a random-weight preset: its timings are real, its images noise."""
    from engine.models import PRESETS  # torch-free

    preset = PRESETS.get(name)
    if preset is not None and preset.random_weights:
        return f"{name} (random weights: for speed and memory only, images are noise)"
    return name


@runs_app.command("diff")
def runs_diff(
    ctx: typer.Context,
    run_ids: List[int] = typer.Argument(..., metavar="A B [C...]", help="Two or more run ids."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """What differs between runs' configurations: technique, model, steps, seed, guidance,
    parameters (defaults filled in), options, evaluation, sample set, versions, git commit."""
    from inpaint_tui.read.diff import config_diff

    if len(run_ids) < 2:
        fail("runs diff needs two or more run ids", 2)
    with user_errors():
        store = context_of(ctx).store()
        runs = [store.run(run_id) for run_id in run_ids]
    differences = config_diff(runs)
    if as_json:
        print_json({"runs": run_ids, "differences": [d.to_dict(run_ids) for d in differences]})
        return
    names = " and ".join(", ".join(map(str, run_ids)).rsplit(", ", 1))
    console = rich_console()
    if not differences:
        console.print(f"runs {names}: the same configuration", highlight=False)
        return
    from inpaint_tui.cli.tables import Column, print_table
    from inpaint_tui.read.diff import format_value as shown

    columns = [Column("field", "field", [d.field for d in differences])]
    columns += [Column(str(run_id), f"run {run_id}", [shown(d.values[i]) for d in differences], wrap=True)
                for i, run_id in enumerate(run_ids)]
    count = f"{len(differences)} difference{'s' * (len(differences) != 1)}"
    print_table(console, columns, title=f"runs {names}: {count}", max_lines=3)


def stale_after() -> float:
    from inpaint_tui.jobs.worker import STALE_AFTER_SECONDS

    return STALE_AFTER_SECONDS


@runs_app.command("cancel")
def runs_cancel(ctx: typer.Context, run_ids: List[int] = typer.Argument(..., metavar="RUN_ID", help="Run ids (one or more, space-separated).")) -> None:
    """Cancel runs: queued ones at once, running ones at their worker's next denoising step."""
    with user_errors():
        store = context_of(ctx).store()
        for run_id in run_ids:
            status = store.request_cancel(run_id)
            typer.echo(f"run {run_id}: " + ("cancelled" if status == "cancelled" else
                                             "cancel requested; the worker stops at its next step"), err=True)


@runs_app.command("resume")
def runs_resume(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., metavar="RUN_ID", help="Run id."),
    detach: bool = typer.Option(False, "--detach", help="Leave it to a background worker (started if none runs)."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cpu, ... (default: the run's)."),
) -> None:
    """Take up an interrupted, cancelled or failed run: only unfinished samples are redone,
    with their recorded seeds, so the outputs equal those of an uninterrupted run."""
    with user_errors():
        store = context_of(ctx).store()
        from inpaint_tui.jobs.launch import require_model
        require_model(store, store.run(run_id).model, detach=detach)  # before it is re-queued
        store.requeue_for_resume(run_id, stale_after=stale_after())
        info = store.run(run_id)
        typer.echo(f"run {run_id} re-queued: {info.sample_count - info.done_count} of "
                   f"{plural(info.sample_count, 'sample')} to do", err=True)
        if detach:
            announce_detached(store, [run_id], device)
            return
        with foreground_worker(store, device, None) as foreground:
            status = execute_with_progress(store, foreground, [(run_id, None)])[run_id]
    typer.echo(f"run {run_id} {status}", err=True)
    if status not in ("finished", "finished_with_errors"):
        raise typer.Exit(1)


@runs_app.command("delete")
def runs_delete(
    ctx: typer.Context,
    run_ids: List[int] = typer.Argument(..., metavar="RUN_ID", help="Run ids (one or more, space-separated)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (scripts)."),
) -> None:
    """Delete runs: their rows, metrics and image files. Running runs must be cancelled first."""
    with user_errors():
        store = context_of(ctx).store()
        infos = [store.run(run_id) for run_id in run_ids]
    if not yes:
        listing = ", ".join(f"{i.id} ({i.technique}, {i.status}, {plural(i.done_count, 'image')})" for i in infos)
        runs = "run" if len(infos) == 1 else "runs"
        if not sys.stdin.isatty():
            fail(f"deleting {runs} {listing} needs confirmation: pass --yes", 2)
        if not typer.confirm(f"Delete {runs} {listing} and their files?"):
            raise typer.Exit(1)
    with user_errors():
        for info in infos:
            removed = store.delete_run(info.id, stale_after=stale_after())
            typer.echo(f"run {info.id} deleted ({plural(removed, 'file')})", err=True)


@runs_app.command("tag")
def runs_tag(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., metavar="RUN_ID", help="Run id."),
    add: List[str] = typer.Argument(None, metavar="TAG", help="Tags to add (space-separated)."),
    remove: List[str] = typer.Option([], "--remove", "-r", metavar="TAG", help="Tag to remove; repeatable."),
) -> None:
    """Add or remove a run's tags (e.g. `runs tag 7 paper -r draft`)."""
    with user_errors():
        store = context_of(ctx).store()
        tags = (set(store.run(run_id).tags) | set(add or [])) - set(remove)
        store.annotate_run(run_id, tags=sorted(tags))
        typer.echo(f"run {run_id} tags: {' '.join(store.run(run_id).tags) or '-'}", err=True)


@runs_app.command("note")
def runs_note(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., metavar="RUN_ID", help="Run id."),
    text: str = typer.Argument(..., metavar="TEXT", help="The note (replaces the previous one; \"\" clears it)."),
) -> None:
    """Set a run's free-text note."""
    with user_errors():
        context_of(ctx).store().annotate_run(run_id, note=text)


@runs_app.command("watch")
def runs_watch(ctx: typer.Context, run_ids: List[int] = typer.Argument(..., metavar="RUN_ID", help="Run ids (one or more, space-separated).")) -> None:
    """Follow runs that workers execute, until they end (Ctrl-C stops watching, not the runs)."""
    with user_errors():
        store = context_of(ctx).store()
        infos = [store.run(run_id) for run_id in run_ids]
    try:
        with progress_bars() as progress:
            tasks = {i.id: progress.add_task(f"run {i.id} {i.technique}", total=i.sample_count, detail=i.status, rate="")
                     for i in infos}
            statuses = follow(store, run_ids, progress, tasks)
    except KeyboardInterrupt:
        raise typer.Exit(130)
    if any(status not in ("finished", "finished_with_errors") for status in statuses.values()):
        raise typer.Exit(1)
