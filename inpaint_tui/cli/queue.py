"""Commands about the queue: background workers, cancel / resume / delete / watch, sweeps."""

from __future__ import annotations

import logging
import shlex
import sys
import time
from typing import List, Optional

import typer

from inpaint_tui.cli import (
    ANIMATION_HELP,
    DEFAULT_METRICS,
    EVAL_MODELS_HELP,
    JSON_HELP,
    METRICS_HELP,
    PREVIEW_HELP,
    _announce_detached,
    _console,
    _context,
    _eval_config,
    _execute_with_progress,
    _fail,
    _follow,
    _foreground_worker,
    _format_number,
    _format_params,
    _print_json,
    _progress_bars,
    _user_errors,
    app,
    runs_app,
)

sweeps_app = typer.Typer(help="List and inspect sweeps.", no_args_is_help=True)
app.add_typer(sweeps_app, name="sweeps")


def _stale_after() -> float:
    from inpaint_tui.jobs.worker import STALE_AFTER_SECONDS

    return STALE_AFTER_SECONDS


# --- workers -----------------------------------------------------------------------------------


@app.command()
def worker(
    ctx: typer.Context,
    gpus: Optional[str] = typer.Option(None, "--gpus", help="One worker process per GPU, e.g. 0,1 (CUDA_VISIBLE_DEVICES "
                                       "pinned per process)."),
    processes: int = typer.Option(1, "--processes", min=1, help="Worker processes on --device (CPU boxes, tests)."),
    once: bool = typer.Option(False, "--once", help="Exit when the queue is empty instead of waiting for runs."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cuda:1, cpu (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16, bf16, fp32 (default: the run's, else by device)."),
    idle_exit: Optional[float] = typer.Option(None, "--idle-exit", min=0, help="Exit after this many seconds without "
                                              "queued runs (default: wait forever)."),
    log_file: Optional[str] = typer.Option(None, "--log", help="Append the log to this file instead of stderr."),
    worker_id: Optional[int] = typer.Option(None, "--worker-id", hidden=True),
    device_label: Optional[str] = typer.Option(None, "--device-label", hidden=True),
    heartbeat: Optional[float] = typer.Option(None, "--heartbeat", hidden=True, min=0.05),
    stale_after: Optional[float] = typer.Option(None, "--stale-after", hidden=True, min=0.1),
) -> None:
    """Execute queued runs in the background (Ctrl-C or SIGTERM: stop at the next step, the
    run in progress goes back to the queue)."""
    from inpaint_tui.jobs.worker import HEARTBEAT_SECONDS, STALE_AFTER_SECONDS, supervise, worker_main

    _configure_worker_logging(log_file)
    with _user_errors():
        store = _context(ctx).store()
    common = (["--once"] if once else []) + (["--idle-exit", str(idle_exit)] if idle_exit is not None else []) \
        + (["--dtype", dtype] if dtype else []) + (["--heartbeat", str(heartbeat)] if heartbeat else []) \
        + (["--stale-after", str(stale_after)] if stale_after else []) + (["--log", log_file] if log_file else [])
    if gpus is not None:
        indices = [g.strip() for g in gpus.split(",") if g.strip()]
        if not indices or not all(g.isdigit() for g in indices):
            _fail(f"--gpus must list GPU indices like 0,1, not {gpus!r}", 2)
        slots = [({"CUDA_VISIBLE_DEVICES": g}, ["--device", "cuda", "--device-label", f"cuda:{g}", *common])
                 for g in indices]
        raise typer.Exit(supervise(store, slots, once=once))
    if processes > 1:
        slots = [({}, (["--device", device] if device else []) + common) for _ in range(processes)]
        raise typer.Exit(supervise(store, slots, once=once))
    raise typer.Exit(worker_main(
        store, once=once, idle_exit=idle_exit, device=device, dtype=dtype, device_label=device_label,
        worker_id=worker_id, log_path=log_file, heartbeat=heartbeat or HEARTBEAT_SECONDS,
        stale_after=stale_after or STALE_AFTER_SECONDS,
    ))


def _configure_worker_logging(log_file: str | None) -> None:
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    root = logging.getLogger("inpaint_tui")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


@app.command()
def workers(
    ctx: typer.Context,
    include_ended: bool = typer.Option(False, "--all", help="Also list stopped and lost workers."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List live workers: device, current run, last heartbeat."""
    with _user_errors():
        store = _context(ctx).store()
        infos = store.workers(include_ended=include_ended)
    if as_json:
        _print_json([info.to_dict() for info in infos])
        return
    if not infos:
        typer.echo("no live workers (start one with `inpaint-tui worker`, or `run --detach`)", err=True)
        return
    from rich.table import Table

    now = time.time()
    table = Table("worker", "kind", "status", "device", "run", "model", "host", "pid", "heartbeat", "log")
    for info in infos:
        table.add_row(str(info.id), info.kind, info.status, info.device or "-", str(info.run_id or "-"),
                      info.model or "-", info.host, str(info.pid or "-"), f"{now - info.heartbeat_at:.0f} s ago",
                      str(info.log_path or "-"))
    _console().print(table)


# --- runs: cancel, resume, delete, watch --------------------------------------------------------


@runs_app.command("cancel")
def runs_cancel(ctx: typer.Context, run_ids: List[int] = typer.Argument(..., help="Run ids.")) -> None:
    """Cancel runs: queued ones at once, running ones at their worker's next denoising step."""
    with _user_errors():
        store = _context(ctx).store()
        for run_id in run_ids:
            status = store.request_cancel(run_id)
            typer.echo(f"run {run_id}: " + ("cancelled" if status == "cancelled" else
                                             "cancel requested; the worker stops at its next step"), err=True)


@runs_app.command("resume")
def runs_resume(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="Run id."),
    detach: bool = typer.Option(False, "--detach", help="Leave it to a background worker (started if none runs)."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cpu, ... (default: the run's)."),
) -> None:
    """Take up an interrupted, cancelled or failed run: only unfinished samples are redone,
    with their recorded seeds, so the outputs equal those of an uninterrupted run."""
    with _user_errors():
        store = _context(ctx).store()
        store.requeue_for_resume(run_id, stale_after=_stale_after())
        info = store.run(run_id)
        typer.echo(f"run {run_id} re-queued: {info.sample_count - info.done_count} of {info.sample_count} samples "
                   f"to do", err=True)
        if detach:
            _announce_detached(store, [run_id], device)
            return
        with _foreground_worker(store, device, None) as foreground:
            status = _execute_with_progress(store, foreground, [(run_id, None)])[run_id]
    typer.echo(f"run {run_id} {status}", err=True)
    if status not in ("finished", "finished_with_errors"):
        raise typer.Exit(1)


@runs_app.command("delete")
def runs_delete(
    ctx: typer.Context,
    run_ids: List[int] = typer.Argument(..., help="Run ids."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (scripts)."),
) -> None:
    """Delete runs: their rows, metrics and image files. Running runs must be cancelled first."""
    with _user_errors():
        store = _context(ctx).store()
        infos = [store.run(run_id) for run_id in run_ids]
    if not yes:
        listing = ", ".join(f"{i.id} ({i.technique}, {i.status}, {i.done_count} images)" for i in infos)
        if not sys.stdin.isatty():
            _fail(f"deleting run(s) {listing} needs confirmation: pass --yes", 2)
        if not typer.confirm(f"Delete run(s) {listing} and their files?"):
            raise typer.Exit(1)
    with _user_errors():
        for info in infos:
            removed = store.delete_run(info.id, stale_after=_stale_after())
            typer.echo(f"run {info.id} deleted ({removed} files)", err=True)


@runs_app.command("tag")
def runs_tag(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="Run id."),
    add: List[str] = typer.Argument(None, help="Tags to add."),
    remove: List[str] = typer.Option([], "--remove", "-r", help="Tag to remove; repeatable."),
) -> None:
    """Add or remove a run's tags (e.g. `runs tag 7 paper -r draft`)."""
    with _user_errors():
        store = _context(ctx).store()
        tags = (set(store.run(run_id).tags) | set(add or [])) - set(remove)
        store.annotate_run(run_id, tags=sorted(tags))
        typer.echo(f"run {run_id} tags: {' '.join(store.run(run_id).tags) or '-'}", err=True)


@runs_app.command("note")
def runs_note(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="Run id."),
    text: str = typer.Argument(..., help="The note (replaces the previous one; \"\" clears it)."),
) -> None:
    """Set a run's free-text note."""
    with _user_errors():
        _context(ctx).store().annotate_run(run_id, note=text)


@runs_app.command("watch")
def runs_watch(ctx: typer.Context, run_ids: List[int] = typer.Argument(..., help="Run ids.")) -> None:
    """Follow runs that workers execute, until they end (Ctrl-C stops watching, not the runs)."""
    with _user_errors():
        store = _context(ctx).store()
        infos = [store.run(run_id) for run_id in run_ids]
    try:
        with _progress_bars() as progress:
            tasks = {i.id: progress.add_task(f"run {i.id} {i.technique}", total=i.sample_count, detail=i.status, rate="")
                     for i in infos}
            statuses = _follow(store, run_ids, progress, tasks)
    except KeyboardInterrupt:
        raise typer.Exit(130)
    if any(status not in ("finished", "finished_with_errors") for status in statuses.values()):
        raise typer.Exit(1)


# --- sweeps -------------------------------------------------------------------------------------


@app.command()
def sweep(
    ctx: typer.Context,
    technique: List[str] = typer.Option(..., "-t", "--technique", help="Technique(s); repeatable or comma-separated; "
                                        "`all` for every technique."),
    param: List[str] = typer.Option([], "-p", "--param", help="name=v1,v2,...: a grid axis; repeatable."),
    sample_set: str = typer.Option("demo", "--samples", help="Sample set to run on."),
    model: str = typer.Option("tiny", "--model", help="Model preset or local pipeline folder."),
    steps: str = typer.Option("50", "--steps", help="Denoising steps; a comma list sweeps them."),
    seeds: str = typer.Option("0", "--seeds", "--seed", help="Run seeds; a comma list repeats the grid per seed."),
    guidance: str = typer.Option("7.5", "--guidance", help="CFG scale; a comma list sweeps it."),
    negative_prompt: str = typer.Option("", "--negative-prompt", help="Negative prompt for CFG."),
    name: Optional[str] = typer.Option(None, "--name", help="A name for the sweep."),
    force: bool = typer.Option(False, "--force", help="Compute every grid point even if an identical run exists."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the grid and what it would reuse; queue nothing."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cuda:1, cpu (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16, bf16, fp32."),
    metrics: str = typer.Option(DEFAULT_METRICS, "--metrics", help=METRICS_HELP),
    eval_models: str = typer.Option("auto", "--eval-models", help=EVAL_MODELS_HELP),
    preview_every: int = typer.Option(0, "--preview-every", min=0, help=PREVIEW_HELP),
    animation: Optional[str] = typer.Option(None, "--animation", help=ANIMATION_HELP),
    detach: bool = typer.Option(False, "--detach", help="Queue for background workers and return at once."),
    as_json: bool = typer.Option(False, "--json", help="Print the sweep (id, runs, reused) as JSON."),
) -> None:
    """Queue a grid of runs as one sweep and execute it (in the foreground unless --detach).
    Example: sweep -t blended -p progressive_shrink=0,1,2 -p blend_start=0,0.25 --seeds 0,1."""
    from engine.params import ParamError
    from inpaint_tui.jobs.sweeps import expand_grid, expand_techniques, parse_grid, queue_sweep, split_values

    with _user_errors():
        try:
            step_values = [int(v) for v in split_values(steps, what="--steps")]
            seed_values = [int(v) for v in split_values(seeds, what="--seeds")]
            guidance_values = [float(v) for v in split_values(guidance, what="--guidance")]
        except ValueError as error:
            raise ParamError(f"--steps/--seeds take whole numbers and --guidance numbers: {error}") from None
        if min(step_values) < 1:
            raise ParamError(f"--steps must be at least 1, got {min(step_values)}")
        techniques = expand_techniques(technique)
        grid = parse_grid(param)
        points = expand_grid(techniques, grid, seeds=seed_values, steps=step_values, guidance=guidance_values)
        store = _context(ctx).store()
        if dry_run:
            _print_grid(points)
            return
        queued = queue_sweep(
            store, points, model=model, sample_set=sample_set, negative_prompt=negative_prompt,
            eval_config=_eval_config(metrics, eval_models, model),
            options=dict(device=device, dtype=dtype, preview_every=preview_every or None, animation=animation),
            command=shlex.join(["inpaint-tui", *sys.argv[1:]]), name=name, force=force,
            spec=dict(techniques=techniques, grid=grid, seeds=seed_values, steps=step_values, guidance=guidance_values,
                      model=model, sample_set=sample_set),
        )
    typer.echo(f"sweep {queued.sweep_id}: {len(points)} grid points, {len(queued.new)} new run(s), "
               f"{len(queued.reused)} reused ({', '.join(map(str, queued.reused)) or '-'})", err=True)
    if queued.new:
        if detach:
            _announce_detached(store, queued.new, device)
        else:
            with _user_errors(), _foreground_worker(store, device, dtype) as foreground:
                label = lambda run: f"run {run.id} {_format_params(queued.swept.get(run.id, {}))}"
                _execute_with_progress(store, foreground, [(run_id, None) for run_id in queued.new], label=label)
    if as_json:
        _print_json({"sweep_id": queued.sweep_id, "run_ids": queued.run_ids, "new": queued.new, "reused": queued.reused})
    else:
        typer.echo(queued.sweep_id)


def _print_grid(points) -> None:
    from rich.table import Table

    table = Table("#", "technique", "parameters", "steps", "guidance", "seed")
    for index, point in enumerate(points):
        table.add_row(str(index), point.technique, _format_params(point.params), str(point.steps), str(point.guidance),
                      str(point.seed))
    _console().print(table)


@sweeps_app.command("list")
def sweeps_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List sweeps."""
    with _user_errors():
        infos = _context(ctx).store().sweeps()
    if as_json:
        _print_json([info.to_dict() for info in infos])
        return
    from rich.table import Table

    table = Table("sweep", "name", "runs", "reused", "techniques", "axes", "created")
    for info in infos:
        grid = info.spec.get("grid", {})
        table.add_row(str(info.id), info.name or "-", str(len(info.run_ids)), str(sum(info.reused)),
                      ",".join(info.spec.get("techniques", [])), " ".join(f"{k}={','.join(v)}" for k, v in grid.items()),
                      info.created_at.strftime("%Y-%m-%d %H:%M"))
    _console().print(table)


@sweeps_app.command("show")
def sweeps_show(
    ctx: typer.Context,
    sweep_id: int = typer.Argument(..., help="Sweep id."),
    metric: str = typer.Option("bg_mse", "--metric", "-m", help="Metric column to show."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a sweep: each grid point's run, status and a metric."""
    with _user_errors():
        store = _context(ctx).store()
        info = store.sweep(sweep_id)
        runs = {r.id: r for r in store.runs(info.run_ids)}
        leaderboard = {row.run_id: row for row in store.leaderboard(metric, descending=False, include_unfinished=True)
                       if row.run_id in runs}
    if as_json:
        _print_json({**info.to_dict(), "runs": [runs[r].to_dict() for r in info.run_ids if r in runs]})
        return
    from rich.table import Table

    table = Table("run", "swept values", "status", "done", metric, "reused", title=f"sweep {sweep_id} {info.name or ''}")
    for run_id, point, reused in zip(info.run_ids, info.points, info.reused):
        run = runs.get(run_id)
        if run is None:
            continue
        value = leaderboard[run_id].metrics.get(metric) if run_id in leaderboard else None
        table.add_row(str(run_id), _format_params(point), run.status, f"{run.done_count}/{run.sample_count}",
                      _format_number(value), "yes" if reused else "")
    _console().print(table)
