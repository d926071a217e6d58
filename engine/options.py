"""The options every technique takes after it (background reconstruction,
post-conditioning): their parameter schema and post-conditioning's UNet-call count; and the
options of how a run executes (batch size, dtype names, `Execution`), owned here once.
Torch-free and free of engine.postprocess, which applies them, so that the technique
registry can build full schemas and cost estimates without importing the model stack or the
post-processing code (which imports the registry's Cost and TechniqueOutput)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from engine.params import Param, ParamError, ParamSchema, fraction_of_steps

BACKGROUNDS = ("none", "paste", "feather", "poisson", "decoder")

POSTPROCESS_SCHEMA = ParamSchema(
    (
        Param("resize", "choice", "fit", "how a sample meets the model's resolution: fit (the whole image, longer "
              "side at the resolution) or crop (a square around the mask, at least the resolution in source pixels, "
              "then scaled; metrics then see the crop)", choices=("fit", "crop")),
        Param("background", "choice", "none", "background reconstruction applied to the decoded image: "
              "none, paste (hard copy outside the mask), feather (blurred mask growing outward), "
              "poisson (OpenCV seamless clone, Blended Latent Diffusion's), decoder (per-image decoder fine-tuning)",
              choices=BACKGROUNDS),
        Param("feather_kernel", "int", 21, "Gaussian kernel size in pixels for background=feather",
              minimum=3, maximum=255, odd=True),
        Param("decoder_steps", "int", 75, "Adam steps for background=decoder", minimum=1, maximum=2000),
        Param("decoder_lr", "float", 1e-4, "Adam learning rate for background=decoder", minimum=1e-7, maximum=1e-1),
        Param("decoder_lambda", "float", 100.0, "weight of the background term for background=decoder",
              minimum=0.0, maximum=1e6),
        Param("post_condition", "bool", False, "after denoising, re-noise the composite (generated inside, "
              "input outside) to post_strength and denoise again with blending to harmonise the seam"),
        Param("post_strength", "float", 0.2, "fraction of the steps re-run by post_condition", minimum=0.01,
              maximum=1.0),
        Param("post_unet", "choice", "txt2img", "UNet that post_condition denoises with",
              choices=("txt2img", "inpaint")),
    )
)


def post_condition_start(strength: float, steps: int) -> int:
    """The step post-conditioning restarts from: ⌊(1 − s)·N⌋ (the project's rounding rule,
    so s = 0.8 at N = 10 starts at 2 and re-runs 8), at most N − 1 so that at least one
    step runs."""
    return min(steps - 1, fraction_of_steps(1.0 - strength, steps))


def post_condition_unet_calls(params: Mapping[str, Any], steps: int) -> int:
    """UNet calls post-conditioning adds: the re-run tail N − start (0 when off)."""
    if not params.get("post_condition", False):
        return 0
    return steps - post_condition_start(params["post_strength"], steps)


AUTO_BATCH_LIMIT = 16  # the most samples `auto` puts in one batch
CPU_AUTO_BATCH = 4  # on tiny at 128 px, batch 4 gave 1.5-1.8x batch 1's throughput (bench/batching.py)


def parse_batch_size(value: Any) -> int | str:
    """A run's batch size as given on the command line, in a form or JSON: a whole number >= 1
    or "auto" (None or "" is 1). How it is used: engine.runner.BatchSizer."""
    if value in (None, ""):
        return 1
    if value == "auto":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ParamError(f"batch_size must be a whole number >= 1 or 'auto', got {value!r}")
    return value


# --- how a run executes on its device (never what it computes) -------------------------------

# Every spelling of a dtype the CLI, forms and run options accept -> torch's attribute name.
DTYPE_NAMES: dict[str, str] = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
                               "bf16": "bfloat16", "bfloat16": "bfloat16"}


def parse_dtype_name(value: Any) -> str:
    """A dtype as given (fp16, bf16, fp32 or torch's own names) to torch's attribute name."""
    if value not in DTYPE_NAMES:
        raise ParamError(f"dtype must be fp16, bf16 or fp32, got {value!r}")
    return DTYPE_NAMES[value]


@dataclass(frozen=True)
class Execution:
    """GPU execution choices of a run, applied to the loaded model by `Model.configure`.
    They change how fast and in how much memory a run goes, and its pixels only at rounding
    level (channels-last, compile) or at VAE tile seams (vae_tiling); they are run options,
    recorded with the run but outside its configuration hash, like the dtype.

    - channels_last: UNets and VAE in channels-last memory layout (faster convolutions on
      tensor-core GPUs); None = on CUDA only.
    - compile: each UNet through torch.compile (inductor), one specialised graph per input
      shape (dynamic=False), kept with the loaded model; the first call at a shape compiles
      (about a minute for tiny on a CPU), later ones reuse it.
    - vae_tiling: the VAE encodes and decodes in overlapping tiles of half the model's
      resolution (diffusers' tiled VAE, blended over a quarter of a tile), bounding its
      memory for large images at the cost of faint seams.
    """

    channels_last: bool | None = None
    compile: bool = False
    vae_tiling: bool = False

    OPTIONS = ("channels_last", "compile", "vae_tiling")

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> "Execution":
        """From a run's recorded options (absent keys keep the defaults)."""
        options = options or {}
        return cls(**{key: options[key] for key in cls.OPTIONS if key in options})

    def channels_last_on(self, device: str) -> bool:
        return device.startswith("cuda") if self.channels_last is None else self.channels_last


def validate_execution_options(options: dict[str, Any]) -> None:
    """Check the Execution keys of a run's options in place; defaults are dropped (not recorded)."""
    for key in Execution.OPTIONS:
        if key not in options:
            continue
        value = options[key]
        if not isinstance(value, bool) and not (key == "channels_last" and value is None):
            raise ParamError(f"{key} must be true or false, got {value!r}")
        if value == getattr(Execution(), key):
            del options[key]
