"""`inpaint-tui sweep` and `inpaint-tui sweeps ...`: grids of runs."""

from __future__ import annotations

from typing import List, Optional

import typer

from engine.spec import DEFAULTS
from inpaint_tui.cli.base import (
    ANIMATION_HELP,
    BATCH_HELP,
    CHANNELS_LAST_HELP,
    COMPILE_HELP,
    DEFAULT_METRICS,
    EVAL_MODELS_HELP,
    GUIDANCE_HELP,
    JSON_HELP,
    METRICS_HELP,
    PREVIEW_HELP,
    VAE_TILING_HELP,
    app,
    context_of,
    print_json,
    recorded_command,
    rich_console,
    sweeps_app,
    user_errors,
)
from inpaint_tui.cli.progress import announce_detached, execute_with_progress, foreground_worker
from inpaint_tui.read.present import format_metric, format_params, plural


@app.command()
def sweep(
    ctx: typer.Context,
    technique: List[str] = typer.Option(..., "-t", "--technique", metavar="NAME", help="Technique(s); repeatable or comma-separated; "
                                        "`all` for every technique."),
    param: List[str] = typer.Option([], "-p", "--param", metavar="NAME=V1,V2", help="name=v1,v2,...: a grid axis; repeatable."),
    sample_set: str = typer.Option("demo", "--samples", help="Sample set to run on."),
    model: str = typer.Option(DEFAULTS.model, "--model", help="Model preset or local pipeline folder."),
    steps: str = typer.Option(str(DEFAULTS.steps), "--steps", help="Denoising steps; a comma list sweeps them."),
    seeds: str = typer.Option(str(DEFAULTS.seed), "--seeds", "--seed", help="Run seeds; a comma list repeats the grid "
                              "per seed."),
    guidance: str = typer.Option("", "--guidance", help=GUIDANCE_HELP + " A comma list sweeps it.",
                                 show_default=False),
    negative_prompt: str = typer.Option("", "--negative-prompt", help="Negative prompt for CFG."),
    name: Optional[str] = typer.Option(None, "--name", help="A name for the sweep."),
    force: bool = typer.Option(False, "--force", help="Compute every grid point even if an identical run exists."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the grid, what it would reuse and its UNet calls; queue nothing."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cuda:1, cpu (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16, bf16, fp32."),
    metrics: str = typer.Option(DEFAULT_METRICS, "--metrics", help=METRICS_HELP),
    eval_models: str = typer.Option("auto", "--eval-models", help=EVAL_MODELS_HELP),
    preview_every: int = typer.Option(0, "--preview-every", min=0, help=PREVIEW_HELP),
    batch_size: str = typer.Option("1", "--batch-size", metavar="N|auto", help=BATCH_HELP),
    compile_unet: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", show_default=False,
                                                 help=CHANNELS_LAST_HELP),
    vae_tiling: bool = typer.Option(False, "--vae-tiling", help=VAE_TILING_HELP),
    animation: Optional[str] = typer.Option(None, "--animation", help=ANIMATION_HELP),
    detach: bool = typer.Option(False, "--detach", help="Queue for background workers and return at once."),
    as_json: bool = typer.Option(False, "--json", help="Print the sweep (id, runs, reused) as JSON."),
) -> None:
    """Queue a grid of runs as one sweep and execute it (in the foreground unless --detach).
    Example: sweep -t blended -p progressive_shrink=0,1,2 -p blend_start=0,0.25 --seeds 0,1."""
    from engine.params import ParamError
    from engine.spec import EvalConfig
    from inpaint_tui.jobs.sweeps import (
        expand_grid,
        expand_techniques,
        parse_grid,
        plan_sweep,
        queue_sweep,
        split_values,
    )

    with user_errors():
        try:
            step_values = [int(v) for v in split_values(steps, what="--steps")]
            seed_values = [int(v) for v in split_values(seeds, what="--seeds")]
            guidance_values = [float(v) for v in split_values(guidance, what="--guidance")] if guidance else [None]
        except ValueError as error:
            raise ParamError(f"--steps/--seeds take whole numbers and --guidance numbers: {error}") from None
        if min(step_values) < 1:
            raise ParamError(f"--steps must be at least 1, got {min(step_values)}")
        evaluation = EvalConfig.for_model(model, metrics=metrics, models=eval_models)
        techniques = expand_techniques(technique, model=model)
        grid = parse_grid(param)
        points = expand_grid(techniques, grid, seeds=seed_values, steps=step_values, guidance=guidance_values)
        store = context_of(ctx).store()
        placement = dict(model=model, sample_set=sample_set, negative_prompt=negative_prompt, evaluation=evaluation,
                         options=dict(device=device, dtype=dtype, preview_every=preview_every or None,
                                      animation=animation, batch_size=batch_size,
                                      compile=compile_unet, channels_last=channels_last, vae_tiling=vae_tiling))
        if dry_run:
            planned = plan_sweep(store, points, force=force, **placement)
            print_plan(planned, len(store.set_sample_ids(sample_set)), as_json=as_json)
            return
        from inpaint_tui.jobs.launch import require_model
        require_model(store, model, detach=detach)  # before the sweep's runs are queued
        queued = queue_sweep(
            store, points, **placement, command=recorded_command(), name=name, force=force,
            spec=dict(techniques=techniques, grid=grid, seeds=seed_values, steps=step_values, guidance=guidance_values,
                      model=model, sample_set=sample_set),
        )
    typer.echo(f"sweep {queued.sweep_id}: {plural(len(points), 'grid point')}, {plural(len(queued.new), 'new run')}, "
               f"{len(queued.reused)} reused ({', '.join(map(str, queued.reused)) or '-'})", err=True)
    if queued.new:
        if detach:
            announce_detached(store, queued.new, device)
        else:
            with user_errors(), foreground_worker(store, device, dtype) as foreground:
                label = lambda run: f"run {run.id} {format_params(queued.swept.get(run.id, {}))}"
                execute_with_progress(store, foreground, [(run_id, None) for run_id in queued.new], label=label)
    if as_json:
        print_json({"sweep_id": queued.sweep_id, "run_ids": queued.run_ids, "new": queued.new, "reused": queued.reused})
    else:
        typer.echo(queued.sweep_id)


def print_plan(planned, sample_count: int, *, as_json: bool) -> None:
    """The dry run: each grid point, whether it would reuse a run or be computed, and its
    cost in UNet calls (the techniques' own estimates, as the TUI's form shows them)."""
    computed = [entry for entry in planned if entry.computed]
    total = sum(entry.unet_calls_per_image for entry in computed) * sample_count
    exact = all(entry.exact for entry in computed)
    if as_json:
        print_json({
            "dry_run": True, "samples": sample_count, "unet_calls": total, "exact": exact,
            "points": [{"index": i, "technique": e.point.technique, "params": e.point.params, "steps": e.point.steps,
                        "guidance": e.point.guidance, "seed": e.point.seed, "swept": e.point.swept,
                        "reuse_run": e.reuse, "same_as": e.same_as, "unet_calls_per_image": e.unet_calls_per_image,
                        "unet_calls": e.unet_calls_per_image * sample_count if e.computed else 0, "exact": e.exact}
                       for i, e in enumerate(planned)]})
        return
    from rich.text import Text

    from inpaint_tui.cli.tables import Column, from_rows, print_table

    def outcome(entry) -> str:
        if entry.reuse is not None:
            return f"reuse run {entry.reuse}"
        return f"as #{entry.same_as}" if entry.same_as is not None else "compute"

    def calls(entry) -> str:
        text = f"{'' if entry.exact else '≈'}{entry.unet_calls_per_image * sample_count}"
        return text if entry.computed else f"({text})"

    console = rich_console()
    columns = [Column("#", "#", [], justify="right"), Column("technique", "technique", []),
               Column("parameters", "parameters", [], wrap=True), Column("steps", "steps", [], justify="right"),
               Column("guidance", "guidance", [], justify="right", priority=1),
               Column("seed", "seed", [], justify="right", priority=1),
               Column("calls", "UNet calls", [], justify="right"), Column("would", "would", [])]
    rows = [[i, e.point.technique, format_params(e.point.params), e.point.steps,
             "default" if e.point.guidance is None else f"{e.point.guidance:g}",
             e.point.seed, calls(e), outcome(e)] for i, e in enumerate(planned)]
    dropped = print_table(console, from_rows(columns, rows), boxed=True, say_dropped=False,
                          title="sweep (dry run: nothing queued)").dropped_headers
    reused = sorted({e.reuse for e in planned if e.reuse is not None})
    console.print(Text(
        f"{plural(len(planned), 'grid point')}: {len(computed)} to compute, "
        f"{plural(len(reused), 'run')} reused{(' (' + ', '.join(map(str, reused)) + ')') if reused else ''}; "
        f"{'' if exact else 'about '}{total} UNet calls to compute ({plural(sample_count, 'sample')} per run; "
        f"a batched CFG pair counts as one call)"
        + (f"; not shown at this width: {', '.join(dropped)}" if dropped else "")))


@sweeps_app.command("list")
def sweeps_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List sweeps."""
    with user_errors():
        infos = context_of(ctx).store().sweeps()
    if as_json:
        print_json([info.to_dict() for info in infos])
        return

    from inpaint_tui.cli.tables import Column, from_rows, print_table

    console = rich_console()
    columns = [Column("sweep", "sweep", [], justify="right"), Column("name", "name", [], wrap=True),
               Column("runs", "runs", [], justify="right"), Column("reused", "reused", [], justify="right"),
               Column("techniques", "techniques", [], wrap=True), Column("axes", "axes", [], wrap=True, ratio=2),
               Column("created", "created", [])]
    rows = [[info.id, info.name or "-", len(info.run_ids), sum(info.reused), ", ".join(info.spec.get("techniques", [])),
             " ".join(f"{k}={','.join(map(str, v))}" for k, v in info.spec.get("grid", {}).items()) or "-",
             info.created_at.strftime("%Y-%m-%d %H:%M")] for info in infos]
    print_table(console, from_rows(columns, rows), boxed=True)


@sweeps_app.command("show")
def sweeps_show(
    ctx: typer.Context,
    sweep_id: int = typer.Argument(..., metavar="SWEEP_ID", help="Sweep id."),
    metric: str = typer.Option("bg_mse", "--metric", "-m", metavar="NAME", help="Metric column to show."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a sweep: each grid point's run, status and a metric."""
    with user_errors():
        store = context_of(ctx).store()
        info = store.sweep(sweep_id)
        runs = {r.id: r for r in store.runs(info.run_ids)}
        leaderboard = {row.run_id: row for row in store.leaderboard(metric, descending=False, include_unfinished=True)
                       if row.run_id in runs}
    if as_json:
        print_json({**info.to_dict(), "runs": [runs[r].to_dict() for r in info.run_ids if r in runs]})
        return

    from inpaint_tui.cli.tables import Column, from_rows, print_table

    console = rich_console()
    columns = [Column("run", "run", [], justify="right"), Column("swept", "swept values", [], wrap=True),
               Column("status", "status", []), Column("done", "done", [], justify="right"),
               Column("metric", metric, [], justify="right"), Column("reused", "reused", [])]
    rows = []
    for run_id, point, reused in zip(info.run_ids, info.points, info.reused):
        run = runs.get(run_id)
        if run is None:
            continue
        value = leaderboard[run_id].metrics.get(metric) if run_id in leaderboard else None
        rows.append([run_id, format_params(point), run.status, f"{run.done_count}/{run.sample_count}",
                     format_metric(metric, value), "yes" if reused else ""])
    print_table(console, from_rows(columns, rows), boxed=True, title=f"sweep {sweep_id} {info.name or ''}")
