"""`inpaint-tui run` and `inpaint-tui demo`: create runs and execute them."""

from __future__ import annotations

import sys
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
    METRICS_HELP,
    PREVIEW_HELP,
    VAE_TILING_HELP,
    app,
    context_of,
    fail,
    open_tui,
    print_json,
    recorded_command,
    user_errors,
)
from inpaint_tui.cli.progress import announce_detached, execute_with_progress, foreground_worker
from inpaint_tui.cli.results import leaderboard_rows, print_leaderboard
from inpaint_tui.read.present import format_params


@app.command()
def run(
    ctx: typer.Context,
    technique: str = typer.Option(..., "-t", "--technique", metavar="NAME", help="Technique name (see `inpaint-tui techniques`)."),
    param: List[str] = typer.Option([], "-p", "--param", metavar="KEY=VALUE", help="Technique parameter as key=value; repeatable."),
    sample_set: str = typer.Option("demo", "--samples", help="Sample set to run on."),
    model: str = typer.Option(DEFAULTS.model, "--model", help="Model preset or local pipeline folder (see "
                              "`inpaint-tui models`)."),
    steps: int = typer.Option(DEFAULTS.steps, "--steps", min=1, help="Denoising steps."),
    seed: int = typer.Option(DEFAULTS.seed, "--seed", help="Run seed; each sample's seed derives from it and the "
                             "sample."),
    guidance: Optional[float] = typer.Option(None, "--guidance", min=0.0, help=GUIDANCE_HELP, show_default=False),
    negative_prompt: str = typer.Option("", "--negative-prompt", help="Negative prompt for CFG."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cuda:1, cpu (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16, bf16, fp32 (default: fp16 on CUDA, fp32 on CPU)."),
    metrics: str = typer.Option(DEFAULT_METRICS, "--metrics", help=METRICS_HELP),
    eval_models: str = typer.Option("auto", "--eval-models", help=EVAL_MODELS_HELP),
    clip_model: Optional[str] = typer.Option(
        None, "--clip-model", help="CLIP for clip_local/clip_global: hub id or folder (default "
        "openai/clip-vit-base-patch16)."
    ),
    detector: Optional[str] = typer.Option(
        None, "--detector", help="Detector for prompt precision: owlv2 (default), owlvit, grounding-dino, a hub id or "
        "folder."
    ),
    ring_width: Optional[int] = typer.Option(None, "--ring-width", min=1, help="Seam ring width in pixels (default 8)."),
    preview_every: int = typer.Option(0, "--preview-every", min=0, help=PREVIEW_HELP),
    batch_size: str = typer.Option("1", "--batch-size", metavar="N|auto", help=BATCH_HELP),
    compile_unet: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", show_default=False,
                                                 help=CHANNELS_LAST_HELP),
    vae_tiling: bool = typer.Option(False, "--vae-tiling", help=VAE_TILING_HELP),
    animation: Optional[str] = typer.Option(None, "--animation", help=ANIMATION_HELP),
    allow_pickle_weights: bool = typer.Option(
        False, "--allow-pickle-weights", help="Load a hub or folder model's pickled .bin weights where it has no "
        "safetensors (unpickling can run code: only for models you trust)."
    ),
    detach: bool = typer.Option(False, "--detach", help="Queue the run for a background worker (started if none runs) "
                                "and return at once; it survives this terminal closing."),
    as_json: bool = typer.Option(False, "--json", help="Print the finished run's detail as JSON instead of its id."),
) -> None:
    """Run a technique over a sample set (in the foreground unless --detach); prints the run id on stdout."""
    from engine.spec import EvalConfig, RunSpec
    from engine.techniques import get_technique
    from inpaint_tui.jobs.runs import queue_run, validate_options

    with user_errors():
        given = get_technique(technique).full_schema.split_assignments(param, technique=technique)
        evaluation = EvalConfig.for_model(model, metrics=metrics, models=eval_models, clip_model=clip_model,
                                          detector=detector, ring_width=ring_width)
        spec = RunSpec.build(technique, given, model=model, steps=steps, guidance=guidance, seed=seed,
                             negative_prompt=negative_prompt, evaluation=evaluation)
        store = context_of(ctx).store()
        from inpaint_tui.jobs.launch import require_model
        require_model(store, model, detach=detach)  # before a run exists or a worker is registered
        placement = dict(sample_set=sample_set, command=recorded_command(),
                         options=dict(device=device, dtype=dtype, preview_every=preview_every or None,
                                      animation=animation, batch_size=batch_size,
                                      compile=compile_unet, channels_last=channels_last, vae_tiling=vae_tiling,
                                      allow_pickle_weights=allow_pickle_weights))
        validate_options(placement["options"])  # before a foreground worker is registered
        description = f"{technique} {format_params(spec.changed_params())} on {sample_set!r} with {model}"
        if detach:
            run_id = queue_run(store, spec, **placement)
            typer.echo(f"queued run {run_id}: {description}", err=True)
            announce_detached(store, [run_id], device)
            typer.echo(run_id)
            return
        with foreground_worker(store, device, dtype) as worker:
            run_id = queue_run(store, spec, claimed_by=worker.id, **placement)
            typer.echo(f"run {run_id}: {description}", err=True)
            status = execute_with_progress(store, worker, [(run_id, 1)])[run_id]
    if as_json:
        print_json(store.run_detail(run_id).to_dict())
    else:
        typer.echo(run_id)
    if status not in ("finished", "finished_with_errors"):
        info = store.run(run_id)
        fail(f"run {run_id} {status}: {info.error or 'see inpaint-tui runs show ' + str(run_id)}")


@app.command()
def demo(
    ctx: typer.Context,
    model: str = typer.Option(DEFAULTS.model, "--model", help="Model preset (default: tiny, offline)."),
    steps: int = typer.Option(DEFAULTS.demo_steps, "--steps", min=1, help="Denoising steps."),
    seed: int = typer.Option(DEFAULTS.seed, "--seed", help="Run seed."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cpu, ..."),
    metrics: str = typer.Option(DEFAULT_METRICS, "--metrics", help=METRICS_HELP),
    eval_models: str = typer.Option("auto", "--eval-models", help=EVAL_MODELS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the leaderboard as JSON."),
    no_tui: bool = typer.Option(False, "--no-tui", help="Print the leaderboard even in a terminal."),
) -> None:
    """Import the demo set if needed, run every technique on it, then open the TUI on the
    leaderboard (in a terminal) or print it."""
    from engine.demo import DEMO_SET_NAME
    from engine.metrics.catalogue import DEFAULT_RANKING_METRIC
    from engine.models import validate_device
    from engine.spec import EvalConfig
    from inpaint_tui.jobs.runs import queue_demo_runs
    from inpaint_tui.jobs.samples import ensure_demo

    with user_errors():
        validate_device(device)
        evaluation = EvalConfig.for_model(model, metrics=metrics, models=eval_models)
        store = context_of(ctx).store()
        from inpaint_tui.jobs.launch import require_model
        require_model(store, model)
        ensure_demo(store)
        run_ids = queue_demo_runs(store, model=model, steps=steps, seed=seed, evaluation=evaluation,
                                  command=recorded_command())
        with foreground_worker(store, device, None) as worker:
            execute_with_progress(store, worker, [(run_id, None) for run_id in run_ids])
        rows = [row for row in leaderboard_rows(store, DEFAULT_RANKING_METRIC, DEMO_SET_NAME, True)
                if row.run_id in run_ids]
    if not as_json and not no_tui and sys.stdin.isatty() and sys.stdout.isatty():
        open_tui(context_of(ctx), start_screen="leaderboard")
    print_leaderboard(rows, DEFAULT_RANKING_METRIC, as_json=as_json, as_csv=False)
    if not as_json:
        if evaluation.models == "tiny":
            typer.echo("note: the metrics used random offline models (CLIP, KID features, detector): they exercise "
                       "the pipeline and do not measure quality; the tiny generator's images are noise-like too",
                       err=True)
        typer.echo(f"database: {store.url}  images: {store.data_dir}", err=True)
        finished = ",".join(str(row.run_id) for row in rows if row.samples_done)
        if finished.count(",") >= 1:
            typer.echo(f"judge them blind, two at a time: inpaint-tui judge --runs {finished}  (or with simulated "
                       f"raters: --simulate bg_mse --raters 3)", err=True)
