"""Queueing runs: a validated RunSpec (engine.spec) placed on a sample set, with provenance
(torch-free)."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from engine.options import Execution, parse_batch_size, parse_dtype_name, validate_execution_options
from engine.params import ParamError
from engine.seeding import sample_seed
from engine.spec import EvalConfig, RunSpec
from inpaint_tui.store import NewRun, Store

VERSIONED_PACKAGES = ("inpaint-tui", "torch", "diffusers", "transformers", "torchmetrics", "numpy", "pillow")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def git_commit() -> str | None:
    """The commit of the inpaint-tui checkout running this, with `-dirty` if modified."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit or None


def prepare_run(
    store: Store,
    spec: RunSpec,
    *,
    sample_set: str,
    command: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[NewRun, dict[int, int]]:
    """The run to create for a validated spec over a sample set, and each sample's seed.
    Raises ParamError / NotFound with a message naming what is wrong."""
    run_options = validate_options(options)
    samples = store.samples(sample_set)
    seeds = {info.id: sample_seed(spec.seed, info.key) for info in samples}
    new_run = NewRun(
        technique=spec.technique,
        params=dict(spec.params),
        model=spec.model,
        seed=spec.seed,
        steps=spec.steps,
        guidance=spec.guidance,
        negative_prompt=spec.negative_prompt,
        sample_set=sample_set,
        config_hash=spec.config_hash,
        versions=library_versions(),
        git_commit=git_commit(),
        command=command,
        eval_config=spec.evaluation.to_dict(),
        options=run_options,
    )
    return new_run, seeds


def queue_run(store: Store, spec: RunSpec, *, sample_set: str, claimed_by: int | None = None,
              command: str | None = None, options: Mapping[str, Any] | None = None) -> int:
    """Queue a run of `spec` over `sample_set`; returns its id. `claimed_by`: a worker that
    executes it now (it is never visible as queued)."""
    new_run, seeds = prepare_run(store, spec, sample_set=sample_set, command=command, options=options)
    return store.create_run(new_run, seeds, claimed_by=claimed_by)


def queue_demo_runs(store: Store, *, model: str, steps: int, seed: int, evaluation: EvalConfig,
                    command: str | None) -> list[int]:
    """Every technique that applies to the model's family, with its defaults, on the demo set
    (`inpaint-tui demo`, the TUI's demo offer), queued; returns the run ids in technique order."""
    from engine.demo import DEMO_SET_NAME
    from engine.models import resolve_preset
    from engine.techniques import technique_names

    specs = [RunSpec.build(name, model=model, steps=steps, seed=seed, evaluation=evaluation)
             for name in technique_names(resolve_preset(model).family)]
    return [queue_run(store, spec, sample_set=DEMO_SET_NAME, command=command) for spec in specs]


def run_spec(run) -> RunSpec:
    """The spec of a stored run (a RunInfo), as it was validated when queued."""
    return RunSpec(technique=run.technique, params=dict(run.params), model=run.model, steps=run.steps,
                   guidance=run.guidance, seed=run.seed, negative_prompt=run.negative_prompt,
                   evaluation=EvalConfig.from_dict(run.eval_config))


def validate_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """How a run executes (never what it computes): device, dtype, preview_every, animation,
    threads (CPU threads; recorded by the first worker when not given, see jobs.execute),
    allow_pickle_weights (load .bin weights where a model has no safetensors), batch_size
    (samples sharing each model call: a whole number or "auto"; pixels equal batch 1's up to
    the kernels' batch-size rounding, see engine.runner.Generation.batch), and the GPU
    execution choices of engine.options.Execution (channels_last, compile, vae_tiling)."""
    from engine.models import validate_device  # torch-free
    from engine.preview import ANIMATION_FORMATS  # torch-free

    known = {"device", "dtype", "preview_every", "animation", "threads", "allow_pickle_weights", "batch_size",
             *Execution.OPTIONS}
    options = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = set(options) - known
    if unknown:
        raise ParamError(f"unknown run option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    if "preview_every" in options and (not isinstance(options["preview_every"], int) or options["preview_every"] < 0):
        raise ParamError(f"preview_every must be a whole number of steps >= 0, got {options['preview_every']!r}")
    if "animation" in options and options["animation"] not in ANIMATION_FORMATS:
        raise ParamError(f"animation must be one of {', '.join(ANIMATION_FORMATS)}, got {options['animation']!r}")
    if "threads" in options and (not isinstance(options["threads"], int) or isinstance(options["threads"], bool)
                                 or options["threads"] < 1):
        raise ParamError(f"threads must be a whole number >= 1, got {options['threads']!r}")
    if "batch_size" in options:
        options["batch_size"] = parse_batch_size(options["batch_size"])
        if options["batch_size"] == 1:
            del options["batch_size"]  # the default: not recorded
    if "device" in options:
        validate_device(options["device"])
    if "dtype" in options:
        parse_dtype_name(options["dtype"])
    validate_execution_options(options)
    if "allow_pickle_weights" in options:
        if not isinstance(options["allow_pickle_weights"], bool):
            raise ParamError(f"allow_pickle_weights must be true or false, got {options['allow_pickle_weights']!r}")
        if not options["allow_pickle_weights"]:
            del options["allow_pickle_weights"]  # the default: not recorded
    return options
