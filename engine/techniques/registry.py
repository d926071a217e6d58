"""The technique registry: names, parameter schemas and entry points. Torch-free, so the
CLI and the TUI can list techniques and build forms without loading the model stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

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


@dataclass
class TechniqueOutput:
    """`image`: float32 (H, W, 3) in [0, 1] at the sample's size. `latents`: the final latent
    (for invariant tests), where the technique has one. `unet_calls`: UNet forward passes
    (a CFG pair counts once), the cost measure the run form shows."""

    image: "np.ndarray"
    latents: "torch.Tensor | None" = None
    unet_calls: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Technique:
    name: str
    summary: str
    unet: str  # "inpaint" (9-channel) or "txt2img" (4-channel): which UNet the preset must have
    schema: ParamSchema
    run: Callable[["Model", TechniqueJob], TechniqueOutput]
    reference: str = ""  # paper or code the technique follows

    def resolve_params(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.schema.resolve(given, technique=self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "unet": self.unet,
            "reference": self.reference,
            "params": [p.to_dict() for p in self.schema],
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


def technique_names() -> list[str]:
    return list(_REGISTRY)
