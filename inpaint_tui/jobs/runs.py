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


def queue_run(
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
) -> int:
    """Validate a run's configuration and queue it; returns the run id. Raises ParamError /
    ModelUnavailable / NotFound with a message naming what is wrong."""
    spec = get_technique(technique)
    resolved = spec.resolve_params(params)
    resolve_preset(model)
    if steps < 1:
        raise ParamError(f"steps must be at least 1, got {steps}")
    if guidance < 0:
        raise ParamError(f"guidance must be non-negative, got {guidance}")
    evaluation = EvalConfig.from_dict(eval_config).to_dict()
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
    return store.create_run(
        NewRun(
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
        ),
        seeds,
    )
