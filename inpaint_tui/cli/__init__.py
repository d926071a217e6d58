"""The `inpaint-tui` command line: a thin face over the store and the jobs layer.

Imports stay light at module level (`--help` must not load torch or Textual); each command
imports what it needs. Listing commands take `--json`: then stdout holds only JSON.
"""

from __future__ import annotations

import csv
import json
import shlex
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional

import typer

from inpaint_tui.present import (
    best_values as _best_values,
    changed_params,
    compare_runs,
    verdict,
    format_number as _format_number,
    format_params as _format_params,
    format_progress as _format_progress,
    format_summary as _format_summary,
    key_metrics as _key_metrics,
)

app = typer.Typer(
    name="inpaint-tui",
    help="Terminal experiment manager for diffusion inpainting: import samples, run techniques, rank them.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
samples_app = typer.Typer(help="Import and list samples and sample sets.", no_args_is_help=True)
runs_app = typer.Typer(help="List, inspect, watch, cancel, resume and delete runs.", no_args_is_help=True)
metrics_app = typer.Typer(help="Compute or recompute a run's metrics.", no_args_is_help=True)
app.add_typer(samples_app, name="samples")
app.add_typer(runs_app, name="runs")
app.add_typer(metrics_app, name="metrics")

JSON_HELP = "Print machine-readable JSON on stdout (and nothing else there)."

@dataclass
class Context:
    db: str | None
    data_dir: str | None
    image_protocol: str = "auto"

    def store(self):
        from inpaint_tui.store import Store

        return Store(self.db, data_dir=self.data_dir)


def _context(ctx: typer.Context) -> Context:
    return ctx.find_root().obj


@app.callback()
def main(
    ctx: typer.Context,
    db: Optional[str] = typer.Option(
        None, "--db", envvar="INPAINT_TUI_DB", help="Database path or SQLAlchemy URL (default: ./experiments.db)."
    ),
    data_dir: Optional[str] = typer.Option(
        None, "--data-dir", envvar="INPAINT_TUI_DATA", help="Folder for images (default: beside the database)."
    ),
    image_protocol: str = typer.Option(
        "auto", "--image-protocol", help="How the TUI draws images: auto, kitty, sixel, halfcell, unicode."
    ),
) -> None:
    """Without a command, opens the TUI on the database."""
    ctx.obj = Context(db=db, data_dir=data_dir, image_protocol=image_protocol)
    if ctx.invoked_subcommand is None:
        _open_tui(ctx.obj)


def _open_tui(context: "Context", start_screen: str | None = None) -> None:
    from inpaint_tui.tui import IMAGE_PROTOCOLS

    if context.image_protocol not in IMAGE_PROTOCOLS:
        _fail(f"--image-protocol must be one of {', '.join(IMAGE_PROTOCOLS)}, not {context.image_protocol!r}", 2)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        _fail("the TUI needs a terminal (run `inpaint-tui` in one, e.g. over SSH or in tmux); "
              "for scripts use the commands: inpaint-tui --help", 2)
    from inpaint_tui.tui import run_tui

    with _user_errors():
        code = run_tui(context.db, context.data_dir, image_protocol=context.image_protocol, start_screen=start_screen)
    raise typer.Exit(code)


# --- output helpers ----------------------------------------------------------------------


def _print_json(data: Any) -> None:
    from inpaint_tui.store import jsonable

    sys.stdout.write(json.dumps(jsonable(data), indent=2) + "\n")


def _console():
    from rich.console import Console

    # Piped output (scripts, `| less -S`) should not wrap tables into 80 columns.
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Known failures become one readable line on stderr and a non-zero exit: 2 for a bad
    argument (technique, parameter, model, value), 1 for a store or data problem."""
    from engine.models import ModelUnavailable
    from engine.params import ParamError
    from engine.samples import SampleError
    from inpaint_tui.store import StoreError

    try:
        yield
    except (ParamError, ModelUnavailable) as error:
        _fail(str(error), 2)
    except (StoreError, SampleError) as error:
        _fail(str(error), 1)


# --- samples -----------------------------------------------------------------------------


@samples_app.command("import")
def samples_import(
    ctx: typer.Context,
    source: str = typer.Argument(
        ..., help="demo (bundled photos), hf:paint-by-inpaint/PIPE, hf:OWNER/NAME (with --*-column), or a folder."
    ),
    set_name: Optional[str] = typer.Option(None, "--set", help="Sample set to add to (default: named after the source)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be imported and what cannot; change nothing."),
    invert_masks: bool = typer.Option(False, "--invert-masks", help="Flip every mask (for sources where white = keep)."),
    split: str = typer.Option("test", "--split", help="Dataset split (hf: sources)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most this many rows (hf: sources)."),
    prompt_column: Optional[str] = typer.Option(None, "--prompt-column", help="Prompt column (PIPE: Instruction_Class)."),
    prompt_template: Optional[str] = typer.Option(
        None, "--prompt-template", help="Format string for the prompt, e.g. 'a photo of {prompt}' (any column by name)."
    ),
    image_column: Optional[str] = typer.Option(None, "--image-column", help="Image column (hf:OWNER/NAME)."),
    mask_column: Optional[str] = typer.Option(None, "--mask-column", help="Mask column (hf:OWNER/NAME)."),
    reference_column: Optional[str] = typer.Option(None, "--reference-column", help="Reference column (optional)."),
    resize_mismatched: bool = typer.Option(
        False, "--resize-mismatched", help="Resize masks/references whose size differs from the image (default: skip)."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Import samples into the store: idempotent (content-addressed) and all-or-nothing."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from inpaint_tui.jobs.samples import ImportOptions, import_source

    options = ImportOptions(
        set_name=set_name, split=split, limit=limit, prompt_column=prompt_column, prompt_template=prompt_template,
        image_column=image_column, mask_column=mask_column, reference_column=reference_column,
        invert_masks=invert_masks, resize_mismatched=resize_mismatched,
    )
    from rich.console import Console

    err = Console(stderr=True)
    with _user_errors(), Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  console=err, transient=True) as progress:
        task = progress.add_task(f"reading {source}", total=None)

        def step(done: int, total: int) -> None:
            progress.update(task, description="storing images", completed=done, total=total)

        store = _context(ctx).store()
        outcome = import_source(store, source, options, dry_run=dry_run, on_progress=step)
    plan, report = outcome.plan, outcome.report
    if as_json:
        _print_json({
            "source": outcome.source, "set": outcome.set_name, "dry_run": dry_run,
            "importable": [s.id for s in plan.samples],
            "problems": [{"name": name, "reason": reason} for name, reason in plan.problems],
            "notes": plan.notes,
            "report": None if report is None else report.to_dict(),
        })
    else:
        for note in plan.notes:
            err.print(f"[yellow]note:[/] {note}", highlight=False)
        for name, reason in plan.problems:
            err.print(f"[red]cannot import[/] {name}: {reason}", highlight=False)
        if dry_run:
            typer.echo(f"dry run: {len(plan.samples)} sample(s) importable into set {outcome.set_name!r}, "
                       f"{len(plan.problems)} problem(s)")
            for sample in plan.samples:
                typer.echo(f"  {sample.id}  {sample.size[0]}x{sample.size[1]}  {sample.prompt}")
        elif report is not None:
            typer.echo(
                f"set {report.set_name!r}: {report.added} new, {report.already_present} already present, "
                f"{report.total_in_set} in the set" + (f"; {len(plan.problems)} skipped" if plan.problems else "")
            )
    if not plan.samples:
        _fail(f"{outcome.source}: nothing importable ({len(plan.problems)} problem(s))", 1)


@samples_app.command("list")
def samples_list(
    ctx: typer.Context,
    set_name: Optional[str] = typer.Option(None, "--set", help="Only this sample set, in set order."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List samples."""
    with _user_errors():
        infos = _context(ctx).store().samples(set_name)
    if as_json:
        _print_json([info.to_dict() for info in infos])
        return
    from rich.table import Table

    table = Table("id", "name", "size", "prompt", "reference", "source", title=f"samples{f' in {set_name}' if set_name else ''}")
    for info in infos:
        table.add_row(str(info.id), info.name, f"{info.width}x{info.height}", info.prompt,
                      "yes" if info.reference_path else "no", info.source)
    _console().print(table)


@samples_app.command("show")
def samples_show(
    ctx: typer.Context,
    sample_id: int = typer.Argument(..., help="Sample id (see `samples list`)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show one sample: files, size, prompt, sets and metadata."""
    with _user_errors():
        store = _context(ctx).store()
        info = store.sample(sample_id)
        sets = store.sample_set_names(sample_id)
    if as_json:
        _print_json({**info.to_dict(), "sets": sets})
        return
    console = _console()
    console.print(f"[bold]sample {info.id}[/] {info.name}")
    for label, value in (("prompt", info.prompt), ("size", f"{info.width}x{info.height}"), ("source", info.source),
                         ("sets", ", ".join(sets) or "-"), ("image", info.image_path), ("mask", info.mask_path),
                         ("reference", info.reference_path or "-"), ("key", info.key)):
        console.print(f"  {label:>10}: {value}", highlight=False)
    for key, value in sorted(info.meta.items()):
        console.print(f"  {key:>10}: {value}", highlight=False)


@samples_app.command("sets")
def samples_sets(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List sample sets."""
    with _user_errors():
        sets = _context(ctx).store().sample_sets()
    if as_json:
        _print_json([s.to_dict() for s in sets])
        return
    from rich.table import Table

    table = Table("set", "samples", "created")
    for s in sets:
        table.add_row(s.name, str(s.sample_count), s.created_at.strftime("%Y-%m-%d %H:%M"))
    _console().print(table)


# --- techniques and models ---------------------------------------------------------------


@app.command()
def techniques(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List techniques with their parameters, defaults, ranges and help."""
    from engine.techniques import get_technique, technique_names

    specs = [get_technique(name) for name in technique_names()]
    if as_json:
        _print_json([spec.to_dict() for spec in specs])
        return
    from rich.table import Table

    from engine.postprocess import POSTPROCESS_SCHEMA

    console = _console()

    def schema_table(title: str, params, caption: str = "") -> Table:
        table = Table("parameter", "type", "default", "range", "help", title=title, title_justify="left",
                      caption=caption, caption_justify="left")
        for param in params:
            table.add_row(param.name, param.kind, str(param.default), param.describe_range(), param.help)
        if not params:
            table.add_row("-", "", "", "", "no parameters")
        return table

    for spec in specs:
        console.print(schema_table(f"[bold]{spec.name}[/] — {spec.summary}", spec.schema.params, spec.reference))
    console.print(schema_table("[bold]options for every technique[/] (-p key=value)", POSTPROCESS_SCHEMA.params))


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List model presets and whether each can be loaded without network."""
    from engine.models import PRESETS, preset_status

    statuses = [preset_status(preset) for preset in PRESETS.values()]
    if as_json:
        _print_json(statuses)
        return
    from rich.table import Table

    table = Table("preset", "resolution", "inpaint UNet", "text-to-image UNet", "offline", "description")
    for status in statuses:
        table.add_row(
            status["name"], str(status["resolution"]),
            f"{status['inpaint'] or '-'} ({status['parts']['inpaint']})",
            f"{status['txt2img'] or '-'} ({status['parts']['txt2img']})",
            "yes" if status["available_offline"] else "no", status["description"],
        )
    _console().print(table)


# --- running -----------------------------------------------------------------------------

DEFAULT_METRICS = "background,clip,kid"
METRICS_HELP = "Metric groups computed for the run: background, clip, precision, kid (comma-separated)."
EVAL_MODELS_HELP = (
    "Models the metrics use: real (CLIP ViT-B/16, Inception, OWLv2 from the hub or cache), tiny (random, "
    "offline: exercises the path, numbers meaningless), auto (tiny with --model tiny, else real)."
)


def _eval_config(metrics: str, eval_models: str, model: str, **overrides) -> dict:
    from engine.evaluate import EvalConfig

    groups = tuple(name.strip() for name in metrics.split(",") if name.strip())
    if eval_models not in ("auto", "real", "tiny"):
        _fail(f"--eval-models must be auto, real or tiny, not {eval_models!r}", 2)
    models = ("tiny" if model == "tiny" else "real") if eval_models == "auto" else eval_models
    return EvalConfig(groups=groups, models=models, **{k: v for k, v in overrides.items() if v is not None}).to_dict()



PREVIEW_HELP = "Every K denoising steps, decode the predicted clean image to runs/ID/preview.png (0: off)."
ANIMATION_HELP = "Save each sample's denoising as an animation beside its output: gif or webp."


@contextmanager
def _progress_bars():
    """Progress bars on stderr: samples, the current sample's step, it/s, elapsed, ETA."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
    ) as progress:
        yield progress


def _progress_detail(phase: str, sample_name: str | None, step: int, steps: int) -> str:
    if phase == "generating" and sample_name:
        return f"{sample_name} step {step}/{steps}"
    return phase


def _execute_with_progress(store, worker, runs: list[tuple[int, int | None]], *, label=None) -> dict[int, str]:
    """Execute runs in this process as a foreground worker ((run id, claim or None to claim
    it now)), with progress bars on stderr; returns final statuses. A run a background worker
    took first is followed instead. Ctrl-C cancels the run in progress (finished samples
    stay) and exits 130."""
    from inpaint_tui.jobs.execute import quiet_libraries
    from inpaint_tui.store import RunBusy

    quiet_libraries()
    statuses: dict[int, str] = {}
    with _progress_bars() as progress:
        for run_id, claim in runs:
            run = store.run(run_id)
            title = label(run) if label else f"run {run_id} {run.technique}"
            task = progress.add_task(title, total=run.sample_count, detail="loading model", rate="")

            def update(p, task=task) -> None:
                rate = f"{p.steps_per_second:.1f} it/s" if p.steps_per_second else ""
                progress.update(task, completed=p.samples_done + (p.step / p.steps if p.steps else 0),
                                detail=_progress_detail(p.phase, p.sample_name, p.step, p.steps), rate=rate)

            def message(text: str) -> None:
                progress.console.print(f"[yellow]{text}[/]", highlight=False)

            try:
                statuses[run_id] = worker.execute(run_id, claim, on_progress=update, on_message=message)
            except RunBusy:
                statuses.update(_follow(store, [run_id], progress, {run_id: task}))
            except KeyboardInterrupt:
                store.finish_run(run_id, cancelled=True)
                progress.stop()
                typer.secho(f"run {run_id} interrupted: finished samples are kept; status cancelled", err=True)
                raise typer.Exit(130)
            progress.update(task, completed=store.run(run_id).done_count, detail=statuses[run_id], rate="")
    return statuses


def _follow(store, run_ids: list[int], progress, tasks: dict[int, Any], poll: float = 0.5) -> dict[int, str]:
    """Follow runs other processes execute, from the store, until each has ended."""
    import time

    from inpaint_tui.store import RunStatus

    statuses: dict[int, str] = {}
    while len(statuses) < len(run_ids):
        for info in store.runs([r for r in run_ids if r not in statuses]):
            p = info.progress
            if info.status in RunStatus.ENDED:
                statuses[info.id] = info.status
                progress.update(tasks[info.id], completed=info.done_count, detail=info.status, rate="")
            elif p is not None:
                rate = f"{p.steps_per_second:.1f} it/s" if p.steps_per_second else ""
                progress.update(tasks[info.id], completed=p.fraction * info.sample_count, rate=rate,
                                detail=_progress_detail(p.phase, p.sample_name, p.step, p.steps))
            else:
                progress.update(tasks[info.id], detail=info.status + (" (cancelling)" if info.cancel_requested else ""))
        if len(statuses) < len(run_ids):
            time.sleep(poll)
    return statuses


@contextmanager
def _foreground_worker(store, device: str | None, dtype: str | None):
    from inpaint_tui.jobs.worker import Worker

    with Worker(store, kind="foreground", device=device, dtype=dtype) as worker:
        yield worker


def _announce_detached(store, run_ids: list[int], device: str | None) -> None:
    from inpaint_tui.jobs.launch import ensure_worker, worker_log_path

    worker_id, started = ensure_worker(store, device=device)
    what = "started worker" if started else "queued for worker"
    runs = ", ".join(map(str, run_ids))
    typer.echo(f"{what} {worker_id} (log: {worker_log_path(store)}); follow with `inpaint-tui runs watch {runs}`",
               err=True)


@app.command()
def run(
    ctx: typer.Context,
    technique: str = typer.Option(..., "-t", "--technique", help="Technique name (see `inpaint-tui techniques`)."),
    param: List[str] = typer.Option([], "-p", "--param", help="Technique parameter as key=value; repeatable."),
    sample_set: str = typer.Option("demo", "--samples", help="Sample set to run on."),
    model: str = typer.Option("tiny", "--model", help="Model preset or local pipeline folder (see `inpaint-tui models`)."),
    steps: int = typer.Option(50, "--steps", min=1, help="Denoising steps."),
    seed: int = typer.Option(0, "--seed", help="Run seed; each sample's seed derives from it and the sample."),
    guidance: float = typer.Option(7.5, "--guidance", min=0.0, help="Classifier-free guidance scale (<=1 disables CFG)."),
    negative_prompt: str = typer.Option("", "--negative-prompt", help="Negative prompt for CFG."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cuda:1, cpu (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16, bf16, fp32 (default: fp16 on CUDA, fp32 on CPU)."),
    metrics: str = typer.Option(DEFAULT_METRICS, "--metrics", help=METRICS_HELP),
    eval_models: str = typer.Option("auto", "--eval-models", help=EVAL_MODELS_HELP),
    clip_model: Optional[str] = typer.Option(
        None, "--clip-model", help="CLIP for clip_local/clip_global: hub id or folder (default openai/clip-vit-base-patch16)."
    ),
    detector: Optional[str] = typer.Option(
        None, "--detector", help="Detector for prompt precision: owlv2 (default), owlvit, grounding-dino, a hub id or folder."
    ),
    ring_width: Optional[int] = typer.Option(None, "--ring-width", min=1, help="Seam ring width in pixels (default 8)."),
    preview_every: int = typer.Option(0, "--preview-every", min=0, help=PREVIEW_HELP),
    animation: Optional[str] = typer.Option(None, "--animation", help=ANIMATION_HELP),
    detach: bool = typer.Option(False, "--detach", help="Queue the run for a background worker (started if none runs) "
                                "and return at once; it survives this terminal closing."),
    as_json: bool = typer.Option(False, "--json", help="Print the finished run's detail as JSON instead of its id."),
) -> None:
    """Run a technique over a sample set (in the foreground unless --detach); prints the run id on stdout."""
    from engine.techniques import get_technique
    from inpaint_tui.jobs.runs import queue_run

    with _user_errors():
        spec = get_technique(technique)
        params = spec.full_schema.parse_assignments(param, technique=technique)
        store = _context(ctx).store()
        settings = dict(
            technique=technique, params=params, model=model, sample_set=sample_set, seed=seed, steps=steps,
            guidance=guidance, negative_prompt=negative_prompt, command=shlex.join(["inpaint-tui", *sys.argv[1:]]),
            eval_config=_eval_config(metrics, eval_models, model, clip_model=clip_model, detector=detector,
                                     ring_width=ring_width),
            options=dict(device=device, dtype=dtype, preview_every=preview_every or None, animation=animation),
        )
        changed = {k: v for k, v in params.items() if spec.full_schema.defaults().get(k) != v}
        description = f"{technique} {_format_params(changed)} on {sample_set!r} with {model}"
        if detach:
            run_id = queue_run(store, **settings)
            typer.echo(f"queued run {run_id}: {description}", err=True)
            _announce_detached(store, [run_id], device)
            typer.echo(run_id)
            return
        with _foreground_worker(store, device, dtype) as worker:
            run_id = queue_run(store, claimed_by=worker.id, **settings)
            typer.echo(f"run {run_id}: {description}", err=True)
            status = _execute_with_progress(store, worker, [(run_id, 1)])[run_id]
    if as_json:
        _print_json(store.run_detail(run_id).to_dict())
    else:
        typer.echo(run_id)
    if status not in ("finished", "finished_with_errors"):
        info = store.run(run_id)
        _fail(f"run {run_id} {status}: {info.error or 'see inpaint-tui runs show ' + str(run_id)}")


# --- runs ----------------------------------------------------------------------------------


@runs_app.command("list")
def runs_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List runs."""
    with _user_errors():
        infos = _context(ctx).store().runs()
    if as_json:
        _print_json([info.to_dict() for info in infos])
        return
    from rich.table import Table

    table = Table("run", "status", "technique", "params", "model", "steps", "seed", "samples", "done", "failed",
                  "progress", "created")
    for info in infos:
        table.add_row(
            str(info.id), info.status + (" (cancelling)" if info.cancel_requested else ""), info.technique,
            _format_params(info.params), info.model, str(info.steps), str(info.seed), info.sample_set,
            f"{info.done_count}/{info.sample_count}", str(info.failed_count), _format_progress(info.progress),
            info.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    _console().print(table)


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="Run id."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a run: configuration, status, per-sample outcomes and metrics."""
    with _user_errors():
        detail = _context(ctx).store().run_detail(run_id)
    if as_json:
        _print_json(detail.to_dict())
        return
    from rich.table import Table

    run = detail.run
    console = _console()
    console.print(f"[bold]run {run.id}[/] {run.technique} — {run.status}")
    for label, value in (
        ("parameters", _format_params(run.params)),
        ("model", run.model),
        ("samples", f"{run.sample_set} ({run.done_count}/{run.sample_count} done, {run.failed_count} failed)"),
        ("steps / guidance / seed", f"{run.steps} / {run.guidance} / {run.seed}"),
        ("negative prompt", run.negative_prompt or "-"),
        ("device", run.device or "-"),
        ("worker", str(run.worker_id or "-")),
        ("progress", _format_progress(run.progress) + (" (cancel requested)" if run.cancel_requested else "")),
        ("options", _format_params(run.options)),
        ("tags", " ".join(run.tags) or "-"),
        ("note", run.note or "-"),
        ("config hash", run.config_hash[:16]),
        ("git commit", run.git_commit or "-"),
        ("versions", " ".join(f"{k}={v}" for k, v in run.versions.items())),
        ("command", run.command or "-"),
        ("error", run.error or "-"),
    ):
        console.print(f"  {label:>24}: {value}", highlight=False)
    names = _key_metrics({name for s in detail.samples for name in s.metrics})
    table = Table("#", "sample", "status", "seed", *names, "output / error")
    table.columns[1].no_wrap = True
    for s in detail.samples:
        table.add_row(
            str(s.position), s.sample_name, s.status, str(s.seed), *[_format_number(s.metrics.get(n)) for n in names],
            str(s.image_path) if s.image_path else (s.error or "-"),
        )
    console.print(table)
    if detail.metrics:
        console.print("  mean: " + "  ".join(f"{k}={_format_number(v)}" for k, v in sorted(detail.metrics.items())))


# --- leaderboard ---------------------------------------------------------------------------


def _leaderboard_rows(store, metric: str, sample_set: str | None, include_unfinished: bool):
    from engine.metrics import METRICS

    info = METRICS.get(metric)
    if info is None:
        _fail(f"unknown metric {metric!r} (known: {', '.join(METRICS)})", 2)
    return store.leaderboard(metric, descending=info.higher_is_better, sample_set=sample_set,
                             include_unfinished=include_unfinished)


def _print_leaderboard(rows, metric: str, *, as_json: bool, as_csv: bool) -> None:
    from engine.metrics import METRICS

    names = [metric] + sorted({n for row in rows for n in row.metrics} - {metric})
    if as_json:
        _print_json([dict(rank=i + 1, **row.to_dict()) for i, row in enumerate(rows)])
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

    names = _key_metrics({n for row in rows for n in row.metrics}, first=metric)
    arrow = "↑" if METRICS[metric].higher_is_better else "↓"
    # Settings every row shares go to the title, so the table keeps room for the metrics.
    settings = {"model": lambda r: r.model, "steps": lambda r: str(r.steps), "set": lambda r: r.sample_set}
    shared = {k: get(rows[0]) for k, get in settings.items() if rows and len({get(r) for r in rows}) == 1}
    varying = [k for k in settings if k not in shared]
    title = f"leaderboard by {metric}" + "".join(f", {k} {v}" for k, v in shared.items())
    table = Table("#", "run", "technique", "params", *varying, "n",
                  *[f"{n} {arrow}" if n == metric else n for n in names], title=title,
                  caption="mean [95% bootstrap interval]; KID: mean ±std over subsets; best per column in green",
                  caption_justify="left")
    best = _best_values(rows, names)
    for i, row in enumerate(rows):
        cells = []
        for n in names:
            text = _format_summary(row.summaries.get(n), row.metrics.get(n))
            cells.append(f"[bold green]{text}[/]" if n in best and row.metrics.get(n) == best[n] else text)
        table.add_row(str(i + 1), str(row.run_id), row.technique, _format_params(changed_params(row.technique, row.params)),
                      *[settings[k](row) for k in varying], str(row.samples_done), *cells)
    _console().print(table)


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
        _fail("--json and --csv are exclusive", 2)
    with _user_errors():
        rows = _leaderboard_rows(_context(ctx).store(), metric, sample_set, include_unfinished)
    _print_leaderboard(rows, metric, as_json=as_json, as_csv=as_csv)


# --- metrics and comparisons ----------------------------------------------------------------


@metrics_app.command("compute")
def metrics_compute(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., help="Run id."),
    metric: List[str] = typer.Option(
        [], "--metric", "-m", help="Metric or group to (re)compute; repeatable (default: the run's configured groups)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run's per-run metrics as JSON afterwards."),
) -> None:
    """Compute a run's metrics from its stored images, replacing only those metrics' values."""
    from engine.evaluate import EvalConfig, GROUPS
    from inpaint_tui.jobs.evaluate import evaluate_run
    from inpaint_tui.jobs.execute import quiet_libraries

    quiet_libraries()
    with _user_errors():
        store = _context(ctx).store()
        run = store.run(run_id)
        names = list(metric) or list(EvalConfig.from_dict(run.eval_config).groups)
        for name in names:
            if name not in GROUPS:
                from engine.evaluate import group_of

                group_of(name)
        messages = evaluate_run(store, run_id, metrics=names,
                                on_message=lambda text: typer.secho(text, fg=typer.colors.YELLOW, err=True))
        detail = store.run_detail(run_id)
    if as_json:
        _print_json({name: summary.to_dict() for name, summary in detail.summaries.items()})
        return
    console = _console()
    console.print(f"run {run_id}: computed {', '.join(names)}" + (f" ({len(messages)} skipped)" if messages else ""))
    for name, summary in sorted(detail.summaries.items()):
        console.print(f"  {name:>20}: {_format_summary(summary, None)}" + (f"  ({summary.note})" if summary.note else ""),
                      highlight=False)


@app.command()
def compare(
    ctx: typer.Context,
    run_a: int = typer.Argument(..., help="Baseline run id."),
    run_b: int = typer.Argument(..., help="Run compared with the baseline."),
    metric: List[str] = typer.Option([], "--metric", "-m", help="Metrics to compare (default: all both runs have)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Paired comparison of two runs on their common samples: mean difference (B − A), its
    95% bootstrap interval and the Wilcoxon signed-rank p-value, per metric."""
    with _user_errors():
        store = _context(ctx).store()
        try:
            results = compare_runs(store, run_a, run_b, metric)
        except KeyError as error:
            _fail(error.args[0], 2)
    if as_json:
        _print_json({"run_a": run_a, "run_b": run_b, "comparisons": results})
        return
    from rich.table import Table

    table = Table("metric", "n", f"run {run_a}", f"run {run_b}", "B − A", "95% interval", "Wilcoxon p", "verdict",
                  title=f"run {run_b} vs run {run_a} (paired, common samples)")
    for entry in results:
        if "difference" not in entry:
            table.add_row(entry["metric"], str(entry["n"]), "-", "-", "-", "-", "-", entry.get("note", ""))
            continue
        table.add_row(entry["metric"], str(entry["n"]), _format_number(entry["mean_a"]), _format_number(entry["mean_b"]),
                      _format_number(entry["difference"]),
                      f"[{_format_number(entry['ci_low'])}, {_format_number(entry['ci_high'])}]",
                      f"{entry['p_value']:.3g}", verdict(entry, run_b))
    _console().print(table)


# --- demo ----------------------------------------------------------------------------------


@app.command()
def demo(
    ctx: typer.Context,
    model: str = typer.Option("tiny", "--model", help="Model preset (default: tiny, offline)."),
    steps: int = typer.Option(20, "--steps", min=1, help="Denoising steps."),
    seed: int = typer.Option(0, "--seed", help="Run seed."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cpu, ..."),
    metrics: str = typer.Option(DEFAULT_METRICS, "--metrics", help=METRICS_HELP),
    eval_models: str = typer.Option("auto", "--eval-models", help=EVAL_MODELS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the leaderboard as JSON."),
    no_tui: bool = typer.Option(False, "--no-tui", help="Print the leaderboard even in a terminal."),
) -> None:
    """Import the demo set if needed, run every technique on it, then open the TUI on the
    leaderboard (in a terminal) or print it."""
    from engine.demo import DEMO_SET_NAME
    from engine.techniques import technique_names
    from inpaint_tui.jobs.runs import queue_run
    from inpaint_tui.jobs.samples import ensure_demo

    with _user_errors():
        store = _context(ctx).store()
        ensure_demo(store)
        run_ids = [
            queue_run(store, technique=name, params=None, model=model, sample_set=DEMO_SET_NAME, seed=seed, steps=steps,
                      guidance=7.5, command=shlex.join(["inpaint-tui", *sys.argv[1:]]),
                      eval_config=_eval_config(metrics, eval_models, model))
            for name in technique_names()
        ]
        with _foreground_worker(store, device, None) as worker:
            _execute_with_progress(store, worker, [(run_id, None) for run_id in run_ids])
        rows = [row for row in _leaderboard_rows(store, "bg_mse", DEMO_SET_NAME, True) if row.run_id in run_ids]
    if not as_json and not no_tui and sys.stdin.isatty() and sys.stdout.isatty():
        _open_tui(_context(ctx), start_screen="leaderboard")
    _print_leaderboard(rows, "bg_mse", as_json=as_json, as_csv=False)
    if not as_json:
        if _eval_config(metrics, eval_models, model)["models"] == "tiny":
            typer.echo("note: the metrics used random offline models (CLIP, KID features): they exercise the "
                       "pipeline and do not measure quality; the tiny generator's images are noise-like too", err=True)
        typer.echo(f"database: {store.url}  images: {store.data_dir}", err=True)


def run_cli() -> None:
    app()


# Commands about the queue live in their own module; importing it registers them.
from inpaint_tui.cli import queue as _queue_commands  # noqa: E402,F401
from inpaint_tui.cli import results as _results_commands  # noqa: E402,F401
