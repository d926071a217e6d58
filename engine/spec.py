"""The run specification: the one owner of what a run computes and of its defaults. Torch-free.

A run is one technique with its (resolved) parameters, on one model, with steps, guidance,
a seed and a negative prompt, evaluated with one evaluation configuration. The CLI, the TUI
form, sweeps, the queue, export, report and the engine take a `RunSpec`; nothing else holds a
default. `RunSpec.build` validates everything once, so a spec that exists is runnable (as far
as can be known without loading the model). The configuration hash covers what determines
the outputs (everything but the evaluation and the samples).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from engine.metrics.catalogue import DEFAULT_GROUPS, GROUPS, parse_groups
from engine.params import ParamError



@dataclass(frozen=True)
class RunDefaults:
    model: str = "tiny"  # the offline preset: works everywhere, its numbers mean nothing
    steps: int = 50
    guidance: float = 7.5  # classifier-free (SD, SDXL)
    # FLUX's guidance is distilled (a model input): the scales its releases recommend.
    flux_fill_guidance: float = 30.0  # FLUX.1 Fill [dev], `vanilla`
    flux_guidance: float = 3.5  # FLUX.1 [dev], the latent-blending techniques
    seed: int = 0
    demo_steps: int = 20  # `inpaint-tui demo`: every technique on the demo set, quickly


DEFAULTS = RunDefaults()
MAX_SEED = 2**63 - 1  # per-sample seeds are 63-bit (engine.seeding), stored as 64-bit integers
EVAL_MODELS = ("auto", "real", "tiny")


@dataclass(frozen=True)
class EvalConfig:
    """How a run is evaluated: which metric groups (engine.metrics.catalogue), with which
    models ("real": CLIP ViT-B/16, Inception, OWLv2; "tiny": random offline stand-ins whose
    numbers mean nothing) and settings."""

    groups: tuple[str, ...] = DEFAULT_GROUPS
    models: str = "real"  # "real" or "tiny"
    ring_width: int = 8
    clip_model: str = "openai/clip-vit-base-patch16"
    detector: str = "owlv2"
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown:
            raise ParamError(f"unknown metric group(s) {', '.join(unknown)} (known: {', '.join(GROUPS)})")
        if self.models not in ("real", "tiny"):
            raise ParamError(f"evaluation models must be 'real' or 'tiny', not {self.models!r}")
        if isinstance(self.ring_width, bool) or not isinstance(self.ring_width, int) or self.ring_width < 1:
            raise ParamError(f"ring width must be a whole number of pixels >= 1, got {self.ring_width!r}")

    @classmethod
    def for_model(cls, model: str, *, metrics: str | None = None, models: str = "auto",
                  **settings: Any) -> "EvalConfig":
        """The configuration a face builds from its options: `metrics` a comma-separated
        group list (empty: the catalogue's default), `models` auto (tiny evaluation models
        with the tiny generator or a random-weight `-arch` preset, else real), real or tiny;
        None settings keep their default."""
        if models not in EVAL_MODELS:
            raise ParamError(f"evaluation models must be one of {', '.join(EVAL_MODELS)}, not {models!r}")
        from engine.models import PRESETS  # torch-free

        # A random-weight generator's images are noise: real evaluation models (downloads)
        # would measure nothing, and would stop an offline timing run of an `-arch` preset.
        random = model == DEFAULTS.model or (model in PRESETS and PRESETS[model].random_weights)
        chosen = ("tiny" if random else "real") if models == "auto" else models
        return cls(groups=parse_groups(metrics), models=chosen,
                   **{key: value for key, value in settings.items() if value is not None})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["groups"] = list(self.groups)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "EvalConfig":
        data = dict(data or {})
        if "groups" in data:
            data["groups"] = tuple(data["groups"])
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def default_guidance(technique: str, model: str) -> float:
    """The guidance a run gets when none is given (`family_guidance` of the model's family and
    the technique's denoiser)."""
    from engine.models import resolve_preset
    from engine.techniques import get_technique

    return family_guidance(resolve_preset(model).family, get_technique(technique).unet)


def family_guidance(family: str, unet_role: str) -> float:
    """DEFAULTS.guidance, or on FLUX the distilled scale of the transformer in `unet_role`
    ("inpaint": Fill's, used by `vanilla`)."""
    if family != "flux":
        return DEFAULTS.guidance
    return DEFAULTS.flux_fill_guidance if unet_role == "inpaint" else DEFAULTS.flux_guidance


def validate_seed(seed: Any, *, what: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ParamError(f"{what} must be a whole number, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ParamError(f"{what} must lie in 0..2^63-1, got {seed}")
    return seed


@dataclass(frozen=True)
class RunSpec:
    """What one run computes. Build it with `RunSpec.build` (validates and resolves the
    technique's parameters); the fields are then final."""

    technique: str
    params: Mapping[str, Any] = field(default_factory=dict)  # resolved: every parameter, defaults included
    model: str = DEFAULTS.model
    steps: int = DEFAULTS.steps
    guidance: float = DEFAULTS.guidance
    seed: int = DEFAULTS.seed
    negative_prompt: str = ""
    evaluation: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def build(
        cls,
        technique: str,
        params: Mapping[str, Any] | None = None,
        *,
        model: str = DEFAULTS.model,
        steps: int = DEFAULTS.steps,
        guidance: float | None = None,
        seed: int = DEFAULTS.seed,
        negative_prompt: str = "",
        evaluation: EvalConfig | Mapping[str, Any] | None = None,
    ) -> "RunSpec":
        """A validated spec; raises ParamError (or ModelUnavailable for the model) naming
        what is wrong. `params` may hold strings (`-p key=value`) or typed values; guidance
        None is the model's default (`default_guidance`)."""
        from engine.models import resolve_preset  # torch-free; imported late to keep this module small
        from engine.techniques import get_technique

        resolved = get_technique(technique).resolve_params(params)
        preset = resolve_preset(model)
        get_technique(technique).check_family(preset.family, model, resolved)
        if preset.family == "flux" and negative_prompt:
            raise ParamError(f"model {model!r} takes no negative prompt: FLUX's guidance is distilled (a model input, "
                             "no classifier-free pair); leave --negative-prompt empty")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ParamError(f"steps must be a whole number >= 1, got {steps!r}")
        if preset.train_timesteps is not None and steps > preset.train_timesteps:
            # The scheduler cannot space more steps than it was trained with: every sample would fail.
            raise ParamError(f"steps: {steps} is above the {preset.train_timesteps} timesteps of model "
                             f"{model!r}'s scheduler (num_train_timesteps); use --steps {preset.train_timesteps} or fewer")
        if guidance is None:
            guidance = default_guidance(technique, model)
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) \
                or guidance < 0:
            raise ParamError(f"guidance must be a finite number >= 0, got {guidance!r}")
        if not isinstance(evaluation, EvalConfig):
            evaluation = EvalConfig.from_dict(evaluation) if evaluation else EvalConfig.for_model(model)
        return cls(technique=technique, params=resolved, model=model, steps=steps, guidance=float(guidance),
                   seed=validate_seed(seed), negative_prompt=negative_prompt, evaluation=evaluation)

    def config(self) -> dict[str, Any]:
        """Everything that determines the run's outputs except the samples."""
        return {
            "technique": self.technique,
            "params": dict(self.params),
            "model": self.model,
            "steps": self.steps,
            "guidance": self.guidance,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
        }

    @property
    def config_hash(self) -> str:
        """sha256 of the canonical JSON of `config()`."""
        return config_hash(self.config())

    def changed_params(self) -> dict[str, Any]:
        """The parameters that differ from the technique's defaults."""
        return changed_params(self.technique, self.params)


def changed_params(technique: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Only the parameters that differ from the technique's defaults (all of them for a
    technique no longer registered), so tables and descriptions stay readable."""
    from engine.techniques import get_technique

    try:
        defaults = get_technique(technique).full_schema.defaults()
    except ParamError:
        return dict(params)
    return {k: v for k, v in params.items() if defaults.get(k, object()) != v}


def recorded_params(technique: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A run's parameters as it ran: the recorded ones, and the technique's default for any it
    does not record (a run made before that parameter existed ran with today's default, as
    far as can be known). A technique no longer registered keeps what was recorded."""
    from engine.techniques import get_technique

    try:
        defaults = get_technique(technique).full_schema.defaults()
    except ParamError:
        return dict(params)
    return {**defaults, **params}


def config_hash(config: Mapping[str, Any]) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


__all__ = ["DEFAULTS", "EvalConfig", "RunDefaults", "RunSpec", "changed_params", "config_hash", "default_guidance",
           "family_guidance", "recorded_params", "validate_seed"]
