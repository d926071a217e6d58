"""Queueing runs: validation, configuration hash, provenance (torch-free)."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from engine.evaluate import EvalConfig
from engine.params import ParamError
from engine.models import resolve_preset
from engine.seeding import sample_seed
from engine.techniques import get_technique
from inpaint_tui.store import NewRun, Store

VERSIONED_PACKAGES = ("inpaint-tui", "torch", "diffusers", "transformers", "torchmetrics", "numpy", "pillow")


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that determines a run's outputs except
    the samples (technique, resolved parameters, model, steps, guidance, prompts, seed)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


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
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit or None


def prepare_run(
    store: Store,
    *,
    technique: str,
    params: Mapping[str, Any] | None,
    model: str,
    sample_set: str,
    seed: int,
    steps: int,
    guidance: float,
    negative_prompt: str = "",
    command: str | None = None,
    eval_config: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[NewRun, dict[int, int]]:
    """Validate a run's configuration: (the run to create, each sample's seed). Raises
    ParamError / ModelUnavailable / NotFound with a message naming what is wrong."""
    spec = get_technique(technique)
    resolved = spec.resolve_params(params)
    resolve_preset(model)
    if steps < 1:
        raise ParamError(f"steps must be at least 1, got {steps}")
    if guidance < 0:
        raise ParamError(f"guidance must be non-negative, got {guidance}")
    evaluation = EvalConfig.from_dict(eval_config).to_dict()
    run_options = validate_options(options)
    config = {
        "technique": technique,
        "params": resolved,
        "model": model,
        "steps": steps,
        "guidance": guidance,
        "negative_prompt": negative_prompt,
        "seed": seed,
    }
    samples = store.samples(sample_set)
    seeds = {info.id: sample_seed(seed, info.key) for info in samples}
    new_run = NewRun(
        technique=technique,
        params=resolved,
        model=model,
        seed=seed,
        steps=steps,
        guidance=guidance,
        negative_prompt=negative_prompt,
        sample_set=sample_set,
        config_hash=config_hash(config),
        versions=library_versions(),
        git_commit=git_commit(),
        command=command,
        eval_config=evaluation,
        options=run_options,
    )
    return new_run, seeds


def queue_run(store: Store, *, claimed_by: int | None = None, **settings) -> int:
    """Validate and queue a run (see `prepare_run` for the settings); returns its id.
    `claimed_by`: a worker that executes it now (it is never visible as queued)."""
    new_run, seeds = prepare_run(store, **settings)
    return store.create_run(new_run, seeds, claimed_by=claimed_by)


def validate_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """How a run executes (never what it computes): device, dtype, preview_every, animation."""
    from engine.preview import ANIMATION_FORMATS  # torch-free

    known = {"device", "dtype", "preview_every", "animation"}
    options = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = set(options) - known
    if unknown:
        raise ParamError(f"unknown run option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    if "preview_every" in options and (not isinstance(options["preview_every"], int) or options["preview_every"] < 0):
        raise ParamError(f"preview_every must be a whole number of steps >= 0, got {options['preview_every']!r}")
    if "animation" in options and options["animation"] not in ANIMATION_FORMATS:
        raise ParamError(f"animation must be one of {', '.join(ANIMATION_FORMATS)}, got {options['animation']!r}")
    if "dtype" in options and options["dtype"] not in ("fp16", "bf16", "fp32", "float16", "bfloat16", "float32"):
        raise ParamError(f"dtype must be fp16, bf16 or fp32, got {options['dtype']!r}")
    return options
