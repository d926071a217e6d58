"""The technique registry: names, parameter schemas and entry points. Torch-free, so the
CLI and the TUI can list techniques and build forms without loading the model stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from engine.options import POSTPROCESS_SCHEMA, post_condition_unet_calls
from engine.params import ParamError, ParamSchema

if TYPE_CHECKING:
    import numpy as np
    import torch

    from engine.models import Model
    from engine.samples import Sample

StepCallback = Callable[[int, int], None]
"""Called after each denoising step with (steps done, total steps); may raise to abort."""


@dataclass(frozen=True)
class TechniqueJob:
    """Everything a technique needs to inpaint one sample (already at working size)."""

    sample: "Sample"
    params: Mapping[str, Any]
    steps: int
    guidance: float
    seed: int
    negative_prompt: str = ""
    on_step: StepCallback | None = None

    def report(self, done: int, total: int) -> None:
        if self.on_step is not None:
            self.on_step(done, total)


def report(jobs: Sequence[TechniqueJob], done: int, total: int) -> None:
    """Progress of a batch: each distinct callback once (a batch's jobs share the runner's)."""
    for callback in dict.fromkeys(job.on_step for job in jobs if job.on_step is not None):
        callback(done, total)


def check_batch(jobs: Sequence[TechniqueJob]) -> None:
    """A batch is samples of one run at one working size: everything but the sample and its
    seed is shared, and the tensors stack."""
    if not jobs:
        raise ValueError("a batch needs at least one job")
    first = jobs[0]
    for job in jobs[1:]:
        if job.sample.size != first.sample.size:
            raise ValueError(f"a batch needs one working size: {job.sample.size} vs {first.sample.size}")
        if (job.params, job.steps, job.guidance, job.negative_prompt) != (
                first.params, first.steps, first.guidance, first.negative_prompt):
            raise ValueError("a batch's jobs must share parameters, steps, guidance and negative prompt")


@dataclass
class Cost:
    """What one image cost, in model evaluations (comparable across machines, unlike
    seconds). A CFG pair batched in one forward counts as one UNet call."""

    unet_calls: int = 0
    vae_encodes: int = 0
    vae_decodes: int = 0
    optimisation_steps: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.unet_calls, self.vae_encodes, self.vae_decodes, self.optimisation_steps)

    def as_metrics(self) -> dict[str, float]:
        return {
            "unet_calls": float(self.unet_calls),
            "vae_encodes": float(self.vae_encodes),
            "vae_decodes": float(self.vae_decodes),
            "optimisation_steps": float(self.optimisation_steps),
        }


@dataclass
class TechniqueOutput:
    """`image`: float32 (H, W, 3) in [0, 1] at the sample's size. `latents`: the final latent
    the image was decoded from, where the technique has one (invariant tests, post-processing).
    `cost`: model evaluations spent on this image."""

    image: "np.ndarray"
    latents: "torch.Tensor | None" = None
    cost: Cost = field(default_factory=Cost)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Technique:
    name: str
    summary: str
    unet: str  # "inpaint" (9-channel) or "txt2img" (4-channel): which UNet the preset must have
    schema: ParamSchema
    # Inpaints a batch (samples of one run at one working size, see `check_batch`) and
    # returns one output per job, in order; a batch of one is the single-sample case.
    run_batch: Callable[["Model", Sequence[TechniqueJob]], list[TechniqueOutput]]
    reference: str = ""  # paper or code the technique follows
    # Torch-free cost model: (resolved params, steps) -> (UNet calls per image, exact?), using
    # the same rounding helpers as the loop; None = "about N" (inexact).
    estimate: Callable[[Mapping[str, Any], int], tuple[int, bool]] | None = None
    # The model families (engine.models.FAMILIES) it applies to; a run of it on another is
    # refused before it is queued (`check_family`), with `refusal` saying why.
    families: tuple[str, ...] = ("sd", "sdxl")
    refusal: str = ""
    # (family, resolved params) -> what a family cannot do with these parameters, or None
    # (vanilla on FLUX: no scheduler choice, no padding_mask_crop).
    family_params: Callable[[str, Mapping[str, Any]], str | None] | None = None

    def check_family(self, family: str, model: str, params: Mapping[str, Any] | None = None) -> None:
        """Raise ParamError when this technique, or these parameters of it, do not apply to a
        model of `family`."""
        if family not in self.families:
            why = f": {self.refusal}" if self.refusal else ""
            raise ParamError(f"technique {self.name!r} does not apply to model {model!r} ({family} family){why}; "
                             f"it runs on {', '.join(self.families)} models")
        problem = self.family_params(family, params or {}) if self.family_params is not None else None
        if problem:
            raise ParamError(f"{self.name} on model {model!r}: {problem}")

    def run(self, model: "Model", job: TechniqueJob) -> TechniqueOutput:
        """One sample: a batch of one."""
        return self.run_batch(model, [job])[0]

    @property
    def full_schema(self) -> ParamSchema:
        """The technique's own parameters, then the post-processing options every technique
        takes (background reconstruction, post-conditioning)."""
        return ParamSchema(self.schema.params + POSTPROCESS_SCHEMA.params)

    def resolve_params(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.full_schema.resolve(given, technique=self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "unet": self.unet,
            "reference": self.reference,
            "families": list(self.families),
            "params": [p.to_dict() for p in self.schema],
            "options": [p.to_dict() for p in POSTPROCESS_SCHEMA],
        }


_REGISTRY: dict[str, Technique] = {}


def register(technique: Technique) -> Technique:
    if technique.name in _REGISTRY:
        raise ValueError(f"technique {technique.name!r} registered twice")
    _REGISTRY[technique.name] = technique
    return technique


def get_technique(name: str) -> Technique:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ParamError(f"unknown technique {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def technique_names(family: str | None = None) -> list[str]:
    """Every registered technique, or those that apply to model `family` (its `families`)."""
    return [name for name, technique in _REGISTRY.items() if family is None or family in technique.families]


def estimate_unet_calls(name: str, params: Mapping[str, Any] | None, steps: int) -> tuple[int, bool]:
    """UNet calls one image costs (a batched CFG pair counts as one, as in `Cost`) and
    whether the count is exact: the technique's own estimate plus post-conditioning's
    re-run tail (engine.options). Torch-free."""
    technique = get_technique(name)
    full = technique.resolve_params(params)
    calls, exact = technique.estimate(full, steps) if technique.estimate is not None else (steps, False)
    return calls + post_condition_unet_calls(full, steps), exact
