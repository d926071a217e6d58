"""Kept in one file: the preset table, its loaders and the offline `tiny` family it builds are one lookup.

Model presets and loading.

A preset names a family of Stable Diffusion components: an inpainting (9-channel) UNet for
`vanilla`, a text-to-image (4-channel) UNet for the latent-blending techniques, and one VAE,
text encoder and tokenizer shared by both, so that every technique decodes and conditions
the same way. UNets load lazily: a run of `blended` never loads the inpainting UNet.

The preset `tiny` is built offline, deterministically from a seed, with random weights: it
is what tests, CI and the demo use where there is no GPU and no model hub. The presets
`sd15-arch` and `sd2-arch` build the real SD 1.5 / SD 2 architectures with random weights,
offline, for measuring speed and memory (their images are noise; see FULL_SIZE).

The preset table and `preset_status` are torch-free; `load_model` imports torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from engine.options import Execution, parse_dtype_name
from engine.params import ParamError
from engine.tiny import tiny_clip_config, tiny_tokenizer, tiny_vae  # noqa: F401 (tiny_tokenizer: re-exported)

if TYPE_CHECKING:
    import torch


class ModelUnavailable(RuntimeError):
    """A preset or model folder that cannot be loaded here; the message says why and what to do."""


class ModelNotDownloaded(ModelUnavailable):
    """A hub model that is neither in the local cache nor reachable: missing data (the
    command was right; the weights are not here), where ModelUnavailable is a bad argument."""


@dataclass(frozen=True)
class ModelPreset:
    name: str
    description: str
    inpaint: str | None  # hub id or local folder of a 9-channel inpainting pipeline
    txt2img: str | None  # hub id or local folder of a 4-channel text-to-image pipeline
    resolution: int
    builtin: bool = False
    # The scheduler's num_train_timesteps: the most denoising steps a run can ask for. Stated
    # here (SD's 1000) so that a run spec is checked without loading torch; None: unknown.
    train_timesteps: int | None = 1000
    # Random weights at a real model's size (the `-arch` presets): good for timing and memory
    # only, so `models`, preset_status and `runs show` say so (the images are noise). `tiny` is
    # random too but small, and its description says so; it keeps False so its outputs stay as pinned.
    random_weights: bool = False
    # The architecture family (FAMILIES): how prompts condition the UNet, which pipeline
    # `vanilla` calls and which techniques apply.
    family: str = "sd"
    # A VAE repository replacing the pipelines' own (sdxl: the fp16-safe one); None: theirs.
    vae: str | None = None
    # Parameters per component (published counts, checked against the -arch builds), for the
    # memory estimate of `inpaint-tui models`; None: unknown (a local folder).
    parameters: tuple[tuple[str, int], ...] | None = None

    @property
    def size_multiple(self) -> int:
        """Working sizes are multiples of this: the VAE's factor 8, times 2 for FLUX's 2x2
        patches (a latent side must be even to pack)."""
        return 16 if self.family == "flux" else 8

    def weights_bytes(self, bytes_per_parameter: int = 2) -> int | None:
        """Bytes of the weights a worker holds for this preset with both UNets loaded
        (fp16: 2 bytes per parameter); activations come on top and grow with the batch."""
        if self.parameters is None:
            return None
        return bytes_per_parameter * sum(count for _, count in self.parameters)


# Published parameter counts (the -arch tests build the modules and count them).
SD15_PARAMETERS = (("inpaint UNet", 859_535_364), ("text-to-image UNet", 859_520_964), ("VAE", 83_653_863),
                   ("text encoder", 123_060_480))
SD2_PARAMETERS = (("inpaint UNet", 865_925_124), ("text-to-image UNet", 865_910_724), ("VAE", 83_653_863),
                  ("text encoder", 340_387_840))
SDXL_PARAMETERS = (("inpaint UNet", 2_567_478_084), ("text-to-image UNet", 2_567_463_684), ("VAE", 83_653_863),
                   ("text encoder", 123_060_480), ("text encoder 2", 694_659_840))

# Counted on the built tiny modules (tests/engine/test_full_size_presets.py checks them).
TINY_PARAMETERS = (("inpaint UNet", 1_428_452), ("text-to-image UNet", 1_427_012), ("VAE", 1_028_935),
                   ("text encoder", 32_554))
TINY_SDXL_PARAMETERS = (("inpaint UNet", 1_977_956), ("text-to-image UNet", 1_976_516), ("VAE", 1_028_935),
                        ("text encoder", 32_554), ("text encoder 2", 33_578))

# Counted on modules built from the released configs (engine.flux; tests/engine/test_flux.py).
FLUX_PARAMETERS = (("inpaint transformer", 11_902_391_360), ("text-to-image transformer", 11_901_408_320),
                   ("VAE", 83_819_683), ("text encoder", 123_060_480), ("text encoder 2", 4_762_310_656))
TINY_FLUX_PARAMETERS = (("inpaint transformer", 91_904), ("text-to-image transformer", 81_664), ("VAE", 1_049_603),
                        ("text encoder", 32_554), ("text encoder 2", 29_568))

# name -> what the family is; the techniques say which families they apply to.
FAMILIES: dict[str, str] = {
    "sd": "Stable Diffusion 1.x / 2.x: one CLIP text encoder, DDPM noise schedule",
    "sdxl": "Stable Diffusion XL: two CLIP text encoders, pooled text and size micro-conditioning, 1024 px",
    "flux": "FLUX.1: flow-matching transformer on packed 16-channel latents, T5 + CLIP text, distilled guidance",
}


PRESETS: dict[str, ModelPreset] = {
    preset.name: preset
    for preset in (
        ModelPreset(
            "tiny",
            "random-weight SD family built offline (tests, CI, demo on CPU); images are noise-like",
            inpaint=None,
            txt2img=None,
            resolution=128,
            builtin=True,
            parameters=TINY_PARAMETERS,
        ),
        ModelPreset(
            "sd15",
            "Stable Diffusion 1.5: inpainting UNet + text-to-image UNet, shared VAE and CLIP",
            inpaint="stable-diffusion-v1-5/stable-diffusion-inpainting",
            txt2img="stable-diffusion-v1-5/stable-diffusion-v1-5",
            resolution=512,
            parameters=SD15_PARAMETERS,
        ),
        ModelPreset(
            "sd2",
            "Stable Diffusion 2 inpainting + SD 2.1 base for text-to-image techniques",
            inpaint="stabilityai/stable-diffusion-2-inpainting",
            txt2img="stabilityai/stable-diffusion-2-1-base",
            resolution=512,
            parameters=SD2_PARAMETERS,
        ),
        ModelPreset(
            "sdxl",
            "Stable Diffusion XL 1.0 inpainting 0.1 + SDXL base for text-to-image techniques; the fp16-safe VAE "
            "(madebyollin/sdxl-vae-fp16-fix: SDXL's own overflows in fp16)",
            inpaint="diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
            txt2img="stabilityai/stable-diffusion-xl-base-1.0",
            resolution=1024,
            family="sdxl",
            vae="madebyollin/sdxl-vae-fp16-fix",
            parameters=SDXL_PARAMETERS,
        ),
        ModelPreset(
            "tiny-sdxl",
            "random-weight SDXL family built offline (two text encoders, time ids, pooled text): tests and CI; "
            "images are noise-like",
            inpaint=None,
            txt2img=None,
            resolution=128,
            builtin=True,
            family="sdxl",
            parameters=TINY_SDXL_PARAMETERS,
        ),
        ModelPreset(
            "flux",
            "FLUX.1 Fill [dev] for vanilla + FLUX.1 [dev] for the latent-blending techniques (flow matching; "
            "guidance is distilled: Fill's recommended scale is 30, dev's 3.5)",
            inpaint="black-forest-labs/FLUX.1-Fill-dev",
            txt2img="black-forest-labs/FLUX.1-dev",
            resolution=1024,
            family="flux",
            parameters=FLUX_PARAMETERS,
        ),
        ModelPreset(
            "tiny-flux",
            "random-weight FLUX family built offline (Fill and text-to-image transformers, T5 + CLIP, 16-channel "
            "VAE): tests and CI; images are noise-like",
            inpaint=None,
            txt2img=None,
            resolution=128,
            builtin=True,
            family="flux",
            parameters=TINY_FLUX_PARAMETERS,
        ),
        ModelPreset(
            "sd15-arch",
            "random weights, full SD 1.5 architecture (UNets, VAE, CLIP ViT-L text) built offline: "
            "for speed and memory only, images are noise",
            inpaint=None,
            txt2img=None,
            resolution=512,
            builtin=True,
            random_weights=True,
            parameters=SD15_PARAMETERS,
        ),
        ModelPreset(
            "sd2-arch",
            "random weights, full SD 2 architecture (2-inpainting / 2.1-base UNets, VAE, OpenCLIP ViT-H "
            "text) built offline: for speed and memory only, images are noise",
            inpaint=None,
            txt2img=None,
            resolution=512,
            builtin=True,
            random_weights=True,
            parameters=SD2_PARAMETERS,
        ),
        ModelPreset(
            "sdxl-arch",
            "random weights, full SDXL architecture (inpainting / base UNets, VAE, CLIP ViT-L + OpenCLIP ViT-bigG "
            "text) built offline: for speed and memory only, images are noise",
            inpaint=None,
            txt2img=None,
            resolution=1024,
            builtin=True,
            random_weights=True,
            family="sdxl",
            parameters=SDXL_PARAMETERS,
        ),
    )
}

TINY_SEED = 0

COMPILE_BACKEND = "inductor"  # torch.compile's backend for Execution.compile (tests use "eager")
COMPILE_SHAPES = 64  # input shapes a compiled UNet keeps graphs for

# Samplers a user can pick for the diffusers pipeline (`vanilla`'s `scheduler` option): name ->
# (diffusers class, config overrides). All are built from the model's scheduler config, so the
# noise schedule (betas, offsets, spacing) stays the model's. The hand-written latent loops keep
# DDIM. Class names as strings keep this table torch-free for the CLI's listings.
DEFAULT_SCHEDULER = "ddim"
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    # PLMS without the Runge-Kutta warm-up, as SD ships it; PLMS evaluates its second
    # timestep twice, so N steps cost N + 1 UNet calls.
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),  # needs scipy (diffusers only exports it then)
}


def scheduler_names() -> tuple[str, ...]:
    """The schedulers usable here (torch-free): all of SCHEDULERS, less `lms` without scipy."""
    import importlib.util

    has_scipy = importlib.util.find_spec("scipy") is not None
    return tuple(name for name in SCHEDULERS if name != "lms" or has_scipy)


def scheduler_class(name: str):
    """The diffusers scheduler class for a name in `scheduler_names()`."""
    import diffusers

    if name not in scheduler_names():
        raise ValueError(f"unknown scheduler {name!r} (known here: {', '.join(scheduler_names())})")
    return getattr(diffusers, SCHEDULERS[name][0])


def resolve_preset(name: str) -> ModelPreset:
    """A preset by name, or an ad-hoc preset for a local diffusers pipeline folder."""
    if name in PRESETS:
        return PRESETS[name]
    path = Path(name).expanduser()
    if path.is_dir() and (path / "transformer" / "config.json").is_file():
        return _flux_folder_preset(path)
    if path.is_dir():
        index = path / "model_index.json"
        unet_config = path / "unet" / "config.json"
        if not index.is_file() or not unet_config.is_file():
            raise ModelUnavailable(f"model folder {path} is not a diffusers pipeline (no model_index.json or unet/)")
        _read_config(index)  # only checked: diffusers would fail on it later, with a traceback
        unet = _read_config(unet_config)
        in_channels = _config_int(unet, "in_channels", 4, unet_config)
        sample_size = _config_int(unet, "sample_size", 64, unet_config)
        scheduler_config = path / "scheduler" / "scheduler_config.json"
        timesteps = None
        if scheduler_config.is_file():
            timesteps = _config_int(_read_config(scheduler_config), "num_train_timesteps", 1000, scheduler_config)
        is_inpaint = in_channels == 9
        # SDXL pipelines have a second text encoder (and their UNets a "text_time" embedding).
        family = "sdxl" if (path / "text_encoder_2").is_dir() or unet.get("addition_embed_type") == "text_time" \
            else "sd"
        return ModelPreset(
            name=str(path),
            description=f"local {'SDXL ' if family == 'sdxl' else ''}"
                        f"{'inpainting' if is_inpaint else 'text-to-image'} pipeline",
            inpaint=str(path) if is_inpaint else None,
            txt2img=None if is_inpaint else str(path),
            resolution=sample_size * 8,
            train_timesteps=timesteps,
            family=family,
        )
    known = ", ".join(PRESETS)
    raise ModelUnavailable(f"unknown model {name!r}: not a preset ({known}) nor a pipeline folder")


def _flux_folder_preset(path: Path) -> ModelPreset:
    """A local FLUX pipeline folder (transformer/ instead of unet/): Fill when its
    transformer takes more than the 64 packed latent channels (Fill [dev]: 384)."""
    index = path / "model_index.json"
    if not index.is_file():
        raise ModelUnavailable(f"model folder {path} is not a diffusers pipeline (no model_index.json)")
    _read_config(index)
    config_file = path / "transformer" / "config.json"
    in_channels = _config_int(_read_config(config_file), "in_channels", 64, config_file)
    is_fill = in_channels > 64
    return ModelPreset(
        name=str(path),
        description=f"local FLUX {'Fill' if is_fill else 'text-to-image'} pipeline",
        inpaint=str(path) if is_fill else None,
        txt2img=None if is_fill else str(path),
        resolution=1024,  # FLUX's pipelines' default (128 latent cells x 8)
        family="flux",
    )


def _read_config(file: Path) -> dict[str, Any]:
    """A model folder's JSON config; what is wrong with it as ModelUnavailable naming the file."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ModelUnavailable(f"model unavailable: {file}: cannot read it ({error})") from None
    except json.JSONDecodeError as error:
        raise ModelUnavailable(f"model unavailable: {file}: invalid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ModelUnavailable(f"model unavailable: {file}: expected a JSON object, got {type(data).__name__}")
    return data


def _config_int(config: dict[str, Any], key: str, default: int, file: Path) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelUnavailable(f"model unavailable: {file}: {key} must be a whole number >= 1, got {value!r}")
    return value


def _is_local(source: str) -> bool:
    return Path(source).expanduser().is_dir()


def _cached(repo_id: str, marker: str = "model_index.json") -> bool:
    """Whether the hub cache holds `marker` of `repo_id` (a pipeline's index; a lone VAE's config)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, marker)
    return isinstance(found, str)


def preset_status(preset: ModelPreset) -> dict[str, Any]:
    """Whether each part of a preset can be loaded without network (torch-free)."""
    parts = {}
    for role in ("inpaint", "txt2img"):
        source = getattr(preset, role)
        if source is None:
            parts[role] = "built-in" if preset.builtin else "n/a"
        elif _is_local(source):
            parts[role] = "local"
        else:
            parts[role] = "cached" if _cached(source) else "not cached"
    if preset.vae:
        parts["vae"] = "local" if _is_local(preset.vae) else "cached" if _cached(preset.vae, "config.json") \
            else "not cached"
    offline = preset.builtin or all(state in ("local", "cached", "n/a") for state in parts.values())
    weights = preset.weights_bytes()
    return {
        "name": preset.name,
        "description": preset.description,
        "family": preset.family,
        "resolution": preset.resolution,
        "inpaint": preset.inpaint,
        "txt2img": preset.txt2img,
        "vae": preset.vae,
        "parts": parts,
        "available_offline": offline,
        "random_weights": preset.random_weights,
        # both UNets, VAE and text encoders in fp16; activations come on top
        "weights_fp16_bytes": weights,
    }


DEVICE_FORMS = "cpu, cuda, cuda:N, mps or xpu"


def validate_device(device: str | None) -> str | None:
    """A device name torch will accept (checked without torch, before a run or a worker
    exists): otherwise every sample of the run would fail at model load."""
    import re

    if device is None or re.fullmatch(r"cpu|mps|(cuda|xpu)(:\d+)?", device):
        return device
    raise ParamError(f"device must be {DEVICE_FORMS}, got {device!r}")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> "torch.dtype":
    import torch

    return torch.float16 if device.startswith("cuda") else torch.float32


@dataclass
class Model:
    """Loaded components of a preset. UNets are loaded on first use and then kept."""

    preset: ModelPreset
    device: str
    dtype: "torch.dtype"
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict[str, Any]
    # SDXL's second text encoder (CLIP with a projection: its pooled output conditions the
    # UNet too) and its tokenizer; None for the SD family.
    text_encoder_2: Any = None
    tokenizer_2: Any = None
    _unets: dict[str, Any] = field(default_factory=dict)
    _builders: dict[str, Any] = field(default_factory=dict)
    # Called with each scheduler `new_scheduler` makes, before anyone steps it: the hook for
    # monitoring every denoising loop (engine.preview) without techniques knowing.
    scheduler_observers: list[Callable[[Any], None]] = field(default_factory=list, compare=False, repr=False)
    # Techniques already run once untimed on this model: engine.runner's warm-up.
    warmed: set[str] = field(default_factory=set, compare=False, repr=False)
    # How the components run (channels-last, compiled UNets, tiled VAE): set by `configure`.
    execution: Execution = field(default_factory=Execution)
    _compiled: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # A batch's VAE encodes and decodes go image by image: the same pixels as batch 1
        # (whatever kernels a batch picks) and a VAE peak that does not grow with the batch,
        # for a VAE share of a run's time of a few per cent.
        self.vae.enable_slicing()

    @property
    def name(self) -> str:
        return self.preset.name

    @property
    def resolution(self) -> int:
        return self.preset.resolution

    @property
    def family(self) -> str:
        return self.preset.family

    def unet(self, role: str):
        """The UNet for `role` ("inpaint": 9 channels, "txt2img": 4 channels); with
        `execution.compile` its torch.compile wrapper (same attributes and submodules, so
        hooks and diffusers' pipelines see the UNet itself)."""
        if role not in self._unets:
            builder = self._builders.get(role)
            if builder is None:
                raise ModelUnavailable(
                    f"model {self.name!r} has no {role} UNet; choose a preset that has one (e.g. --model tiny)"
                )
            self._unets[role] = self._layout(_to(builder(), self.device, self.dtype))
        if not self.execution.compile:
            return self._unets[role]
        if role not in self._compiled:
            import torch

            # One graph per input shape (a run has a few working sizes and batch sizes); the
            # default limit of 8 recompilations would fall back to eager mid-sweep.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, COMPILE_SHAPES)
            self._compiled[role] = torch.compile(self._unets[role], backend=COMPILE_BACKEND, dynamic=False)
        return self._compiled[role]

    def configure(self, execution: Execution) -> None:
        """Apply a run's execution choices to this (possibly shared, cached) model: memory
        layout of the loaded UNets and the VAE, compiled UNets on or off, VAE tiling. Every
        run configures it, so one run's choices never leak into the next."""
        if execution != self.execution:
            # other kernels (and, compiled, a compilation per shape) to pay untimed again
            self.warmed.clear()
        self.execution = execution
        for unet in self._unets.values():
            self._layout(unet)
        self._layout(self.vae)
        if execution.vae_tiling:
            self.vae.enable_tiling()
            # diffusers tiles only beyond the VAE's own sample size (the model's resolution,
            # which a working image never exceeds): tiles of half of it bound the memory.
            self.vae.tile_sample_min_size = max(self.resolution // 2, 8 * self.vae_scale_factor)
            self.vae.tile_latent_min_size = self.vae.tile_sample_min_size // self.vae_scale_factor
        else:
            self.vae.disable_tiling()

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def _layout(self, module):
        import torch

        layout = torch.channels_last if self.execution.channels_last_on(self.device) else torch.contiguous_format
        convolution = next((p for p in module.parameters() if p.ndim == 4), None)
        if convolution is None or convolution.is_contiguous(memory_format=layout):
            return module  # already so: diffusers warns on every `.to()` of a model
        return module.to(memory_format=layout)

    def new_scheduler(self, name: str = DEFAULT_SCHEDULER):
        """A fresh scheduler (schedulers keep per-run state, so never share one): DDIM unless
        `name` picks another from SCHEDULERS, built from the model's own noise schedule; for
        FLUX its flow-matching Euler scheduler (the only one it is sampled with)."""
        if self.family == "flux":
            if name != DEFAULT_SCHEDULER:
                raise ModelUnavailable(f"model {self.name!r} samples with its flow-matching Euler scheduler; "
                                       f"scheduler={name} does not apply to it")
            from diffusers import FlowMatchEulerDiscreteScheduler

            scheduler = FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config)
        else:
            scheduler = scheduler_class(name).from_config(self.scheduler_config, **SCHEDULERS[name][1])
        for observe in list(self.scheduler_observers):
            observe(scheduler)
        return scheduler

    def inpaint_pipeline(self, scheduler: str = DEFAULT_SCHEDULER):
        """diffusers' inpainting pipeline of this model's family (StableDiffusionInpaintPipeline,
        StableDiffusionXLInpaintPipeline) over this model's shared components."""
        if self.family == "flux":
            from diffusers import FluxFillPipeline

            pipe = FluxFillPipeline(scheduler=self.new_scheduler(scheduler), vae=self.vae,
                                    text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                                    text_encoder_2=self.text_encoder_2, tokenizer_2=self.tokenizer_2,
                                    transformer=self.unet("inpaint"))
            pipe.set_progress_bar_config(disable=True)
            return pipe
        if self.family == "sdxl":
            from diffusers import StableDiffusionXLInpaintPipeline

            # As the SDXL inpainting 0.1 checkpoint ships it: time ids (size, crop, size), no
            # aesthetic score; an empty negative prompt conditions on zeros.
            pipe = StableDiffusionXLInpaintPipeline(
                vae=self.vae, text_encoder=self.text_encoder, text_encoder_2=self.text_encoder_2,
                tokenizer=self.tokenizer, tokenizer_2=self.tokenizer_2, unet=self.unet("inpaint"),
                scheduler=self.new_scheduler(scheduler), requires_aesthetics_score=False,
                force_zeros_for_empty_prompt=True,
            )
            pipe.set_progress_bar_config(disable=True)
            return pipe
        from diffusers import StableDiffusionInpaintPipeline

        pipe = StableDiffusionInpaintPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=self.unet("inpaint"),
            scheduler=self.new_scheduler(scheduler),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe


def load_model(name: str, *, device: str | None = None, dtype: "torch.dtype | str | None" = None,
               allow_pickle_weights: bool = False) -> Model:
    """Load a preset (or a local pipeline folder). Reuses an already loaded identical model.

    Hub and folder weights load from safetensors only: a pickled `.bin` checkpoint can run
    code when unpickled, so it needs `allow_pickle_weights=True` (`--allow-pickle-weights`)."""
    device = device or default_device()
    torch_dtype = _parse_dtype(dtype) if dtype is not None else default_dtype(device)
    return _load_cached(name, device, torch_dtype, bool(allow_pickle_weights))


def _parse_dtype(dtype: "torch.dtype | str") -> "torch.dtype":
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return getattr(torch, parse_dtype_name(dtype))
    except ParamError as error:
        raise ModelUnavailable(str(error)) from None


@lru_cache(maxsize=2)
def _load_cached(name: str, device: str, dtype: "torch.dtype", allow_pickle_weights: bool = False) -> Model:
    preset = resolve_preset(name)
    if preset.name in FULL_SIZE:
        return _build_full_size(preset, device, dtype)
    if preset.builtin:
        return _build_tiny(preset, device, dtype)
    return _load_pretrained(preset, device, dtype, allow_pickle_weights)


PICKLE_HINT = ("weights load from safetensors only; if you trust this model's .bin files, "
               "pass --allow-pickle-weights")


def _load_pretrained(preset: ModelPreset, device: str, dtype: "torch.dtype",
                     allow_pickle_weights: bool = False) -> Model:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    sources = [s for s in (preset.inpaint, preset.txt2img) if s]
    for source in sources:
        _ensure_loadable(source, preset.name)
    if preset.vae:
        _ensure_loadable(preset.vae, preset.name, "config.json")
    shared = sources[0]  # one VAE and text encoder for every technique of the preset

    # None lets diffusers/transformers fall back to .bin; True makes a missing safetensors file an error.
    weights = dict(torch_dtype=dtype, use_safetensors=None if allow_pickle_weights else True)
    hint = "Try --model tiny" if allow_pickle_weights else f"Try --model tiny ({PICKLE_HINT})"

    def unet_builder(source: str):
        def build():
            try:
                if preset.family == "flux":
                    from diffusers import FluxTransformer2DModel

                    return FluxTransformer2DModel.from_pretrained(source, subfolder="transformer", **weights)
                return UNet2DConditionModel.from_pretrained(source, subfolder="unet", **weights)
            except OSError as error:
                raise ModelUnavailable(f"model {preset.name!r}: cannot load the UNet of {source}: {error}. {hint}") from error
        return build

    extra = {}
    try:
        vae = (AutoencoderKL.from_pretrained(preset.vae, **weights) if preset.vae
               else AutoencoderKL.from_pretrained(shared, subfolder="vae", **weights))
        text_encoder = CLIPTextModel.from_pretrained(shared, subfolder="text_encoder", **weights)
        tokenizer = CLIPTokenizer.from_pretrained(shared, subfolder="tokenizer")
        if preset.family == "sdxl":
            from transformers import CLIPTextModelWithProjection

            second = CLIPTextModelWithProjection.from_pretrained(shared, subfolder="text_encoder_2", **weights)
            extra = dict(text_encoder_2=second.to(device).eval().requires_grad_(False),
                         tokenizer_2=CLIPTokenizer.from_pretrained(shared, subfolder="tokenizer_2"))
        if preset.family == "flux":  # T5 for attention, CLIP pooled; the flow's own scheduler
            from diffusers import FlowMatchEulerDiscreteScheduler
            from transformers import AutoTokenizer, T5EncoderModel

            second = T5EncoderModel.from_pretrained(shared, subfolder="text_encoder_2", **weights)
            extra = dict(text_encoder_2=second.to(device).eval().requires_grad_(False),
                         tokenizer_2=AutoTokenizer.from_pretrained(shared, subfolder="tokenizer_2"))
            scheduler_config = dict(FlowMatchEulerDiscreteScheduler.from_pretrained(shared, subfolder="scheduler").config)
        else:
            scheduler_config = _ddim_config(shared)
    except OSError as error:
        raise ModelUnavailable(f"model {preset.name!r}: cannot load {preset.vae or shared}: {error}. {hint}") from error
    builders = {}
    if preset.inpaint:
        builders["inpaint"] = unet_builder(preset.inpaint)
    if preset.txt2img:
        builders["txt2img"] = unet_builder(preset.txt2img)
    return Model(
        preset=preset,
        device=device,
        dtype=dtype,
        vae=vae.to(device).eval().requires_grad_(False),
        text_encoder=text_encoder.to(device).eval().requires_grad_(False),
        tokenizer=tokenizer,
        scheduler_config=scheduler_config,
        _builders=builders,
        **extra,
    )


def _ddim_config(source: str) -> dict[str, Any]:
    # Every technique uses DDIM with the model's own noise schedule, so comparisons differ
    # only in the technique (the repos ship PNDM, whose multistep state does not suit blending).
    from diffusers import DDIMScheduler

    config = dict(DDIMScheduler.from_pretrained(source, subfolder="scheduler").config)
    config.update(clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return config


def check_available(name: str) -> None:
    """Raise ModelUnavailable (or ModelNotDownloaded) unless model `name` can be loaded here:
    built in, a usable local folder, or hub weights in the local cache or reachable. The faces
    call it before a run is queued (torch-free), so a missing model is one line, not a failed run."""
    preset = resolve_preset(name)
    for source in (preset.inpaint, preset.txt2img):
        if source and not preset.builtin:
            _ensure_loadable(source, preset.name)
    if preset.vae:
        _ensure_loadable(preset.vae, preset.name, "config.json")


def _ensure_loadable(source: str, preset_name: str, marker: str = "model_index.json") -> None:
    """Fail fast, before any multi-minute hub timeout, when a hub model cannot be had."""
    if _is_local(source) or _cached(source, marker):
        return
    # `hf` is huggingface_hub's current command line (`huggingface-cli` is deprecated).
    hint = f"Use --model tiny (offline), a local pipeline folder, or download it with `hf download {source}`."
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelNotDownloaded(f"model {preset_name!r} needs {source}, which is not in the local cache and "
                                 f"HF_HUB_OFFLINE is set. {hint}")
    from huggingface_hub import model_info

    try:
        model_info(source, timeout=10)
    except Exception as error:  # any failure here means the download below would fail too
        raise ModelNotDownloaded(
            f"model {preset_name!r} needs {source}, which is not cached and the hub cannot be reached "
            f"({type(error).__name__}). {hint}"
        ) from None


# --- the tiny offline family -------------------------------------------------------------

def tiny_components(seed: int = TINY_SEED) -> dict[str, Any]:
    """Random-weight SD components, identical for the same seed on any machine.

    Shapes follow diffusers' own pipeline tests: a 4-level VAE with SD's scale factor 8 (so
    masks meet the same coarse 16x16 latent grid at 128 px that SD meets at 64x64), UNets
    with block_out_channels (32, 64), a 2-layer CLIP text encoder of width 32. A 128 px
    image denoises in a few hundredths of a second per step on a CPU.
    """
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = tiny_tokenizer()

    def unet(in_channels: int) -> UNet2DConditionModel:
        return UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=64,
            in_channels=in_channels,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inpaint_unet = unet(9)
        txt2img_unet = unet(4)
        vae = tiny_vae()
        text_encoder = CLIPTextModel(tiny_clip_config(tokenizer))
    # SD's schedule, with the tiny preset's timestep count (what run specs are checked against).
    scheduler_config = sd_scheduler_config(PRESETS["tiny"].train_timesteps)
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "inpaint_unet": inpaint_unet,
        "txt2img_unet": txt2img_unet,
        "scheduler_config": scheduler_config,
    }


def tiny_sdxl_components(seed: int = TINY_SEED) -> dict[str, Any]:
    """Random-weight SDXL components, identical for the same seed on any machine: the shapes
    of diffusers' own SDXL pipeline tests (UNets with "text_time" added conditioning,
    transformer depths (1, 2), linear projections; two CLIP text encoders of width 32, the
    second with a projection whose pooled output joins the time ids), tiny's VAE with SDXL's
    latent scale 0.13025, at 128 px like `tiny`."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = tiny_tokenizer()
    width = 32  # each text encoder's; the UNet cross-attends to both, concatenated

    def unet(in_channels: int) -> UNet2DConditionModel:
        return UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=16,
            in_channels=in_channels,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            # 6 time ids (original size, crop corner, target size) x 8, + the pooled text
            projection_class_embeddings_input_dim=6 * 8 + width,
            cross_attention_dim=2 * width,
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)  # not tiny's stream: its weights stay as pinned
        inpaint_unet = unet(9)
        txt2img_unet = unet(4)
        # force_upcast off: as the fp16-safe SDXL VAE the `sdxl` preset uses
        vae = tiny_vae(scaling_factor=SDXL_LATENT_SCALE, force_upcast=False)
        text_encoder = CLIPTextModel(tiny_clip_config(tokenizer, projection_dim=width))
        text_encoder_2 = CLIPTextModelWithProjection(tiny_clip_config(tokenizer, projection_dim=width))
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": tiny_tokenizer(),
        "inpaint_unet": inpaint_unet,
        "txt2img_unet": txt2img_unet,
        "scheduler_config": sd_scheduler_config(PRESETS["tiny-sdxl"].train_timesteps),
    }


SDXL_LATENT_SCALE = 0.13025  # SDXL's VAE scaling factor (SD 1.x / 2.x: 0.18215)


def _build_tiny(preset: ModelPreset, device: str, dtype: "torch.dtype") -> Model:
    if preset.family == "flux":
        from engine.flux import tiny_flux_components

        parts = tiny_flux_components()
    else:
        parts = tiny_sdxl_components() if preset.family == "sdxl" else tiny_components()
    second = parts.get("text_encoder_2")
    model = Model(
        preset=preset,
        device=device,
        dtype=dtype,
        vae=_to(parts["vae"], device, dtype),
        text_encoder=_to(parts["text_encoder"], device, dtype),
        tokenizer=parts["tokenizer"],
        scheduler_config=parts["scheduler_config"],
        text_encoder_2=None if second is None else _to(second, device, dtype),
        tokenizer_2=parts.get("tokenizer_2"),
    )
    model._builders = {"inpaint": lambda: parts["inpaint_unet"], "txt2img": lambda: parts["txt2img_unet"]}
    return model


def _to(module, device: str, dtype: "torch.dtype"):
    # Only cast when needed: diffusers warns on every `.to(dtype)` of a freshly built model.
    if module.dtype != dtype:
        module = module.to(dtype)
    return module.to(device).eval().requires_grad_(False)


# --- full-size architectures with random weights ------------------------------------------
#
# `sd15-arch` and `sd2-arch`: the exact UNet, VAE and text-encoder configurations of Stable
# Diffusion 1.5 and 2 (2-inpainting / 2.1-base, 512 px), with random weights, built offline
# in seconds, so speed and memory can be measured on a GPU box without downloading anything.
# The images they make are noise.

FULL_SIZE_SEED = 0

_SD_UNET = dict(  # diffusers' defaults are SD 1.x's; stated so a diffusers change cannot alter them
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    sample_size=64,
    out_channels=4,
    norm_num_groups=32,
)
_SD_VAE = dict(  # the same VAE in SD 1.5 and SD 2
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4,
    sample_size=512,
    scaling_factor=0.18215,
)
FULL_SIZE: dict[str, dict[str, Any]] = {
    "sd15-arch": {
        "unet": dict(_SD_UNET, cross_attention_dim=768, attention_head_dim=8),
        "vae": _SD_VAE,
        # CLIP ViT-L/14's text tower.
        "text": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     hidden_act="quick_gelu", projection_dim=768),
    },
    "sd2-arch": {
        "unet": dict(_SD_UNET, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                     use_linear_projection=True),
        "vae": _SD_VAE,
        # OpenCLIP ViT-H/14's text tower as SD 2 ships it: 23 of its 24 layers (SD 2 takes the
        # penultimate layer's output, so the last one is dropped from the checkpoint).
        "text": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                     hidden_act="gelu", projection_dim=1024),
    },
    "sdxl-arch": {  # stable-diffusion-xl-base-1.0's and the inpainting 0.1 model's configs
        "unet": dict(block_out_channels=(320, 640, 1280), layers_per_block=2,
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                     transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                     cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                     addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816, sample_size=128,
                     out_channels=4, norm_num_groups=32),
        # The `sdxl` preset's fp16-safe VAE: the same architecture, no fp32 upcast asked.
        "vae": dict(_SD_VAE, sample_size=1024, scaling_factor=SDXL_LATENT_SCALE, force_upcast=False),
        "text": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     hidden_act="quick_gelu", projection_dim=768),
        # OpenCLIP ViT-bigG/14's text tower, with its projection (the pooled text embedding).
        "text_2": dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                       hidden_act="gelu", projection_dim=1280),
    },
}
# Build times on the 2-core CI machine, CPU fp32, shared with other jobs (so they vary 2-5x):
# sd15-arch VAE + text encoder 3.4 s, inpaint UNet 1.5-7.5 s, txt2img UNet 1.5-7.5 s;
# sd2-arch VAE + text encoder 2.9 s, UNets 2.8-4.1 s each (an fp32 UNet is 3.4 GB: the time
# is mostly first touch of that memory). Default initialisation took 9-19 s per UNet.
CLIP_VOCAB_SIZE = 49408  # CLIP's BPE vocabulary, SD 1.5's and SD 2's alike
CLIP_MAX_LENGTH = 77


def full_size_unet(name: str, in_channels: int, *, seed: int = FULL_SIZE_SEED, device: str = "cpu",
                   dtype: "torch.dtype | None" = None):
    """The UNet of preset `name` ("sd15-arch", "sd2-arch") with `in_channels` 4 or 9, random weights."""
    from diffusers import UNet2DConditionModel

    # Each component has its own seed, so a lazily built UNet is the same whichever was built first.
    return _random_init(lambda: UNet2DConditionModel(in_channels=in_channels, **FULL_SIZE[name]["unet"]),
                        seed + in_channels, device, dtype)


def full_size_vae(name: str, *, seed: int = FULL_SIZE_SEED, device: str = "cpu", dtype: "torch.dtype | None" = None):
    from diffusers import AutoencoderKL

    return _random_init(lambda: AutoencoderKL(**FULL_SIZE[name]["vae"]), seed + 1, device, dtype)


def full_size_text_encoder(name: str, *, seed: int = FULL_SIZE_SEED, device: str = "cpu",
                           dtype: "torch.dtype | None" = None, second: bool = False):
    """The preset's text encoder; `second`: SDXL's second one (with its text projection)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = tiny_tokenizer()
    config = CLIPTextConfig(vocab_size=CLIP_VOCAB_SIZE, max_position_embeddings=CLIP_MAX_LENGTH,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, **FULL_SIZE[name]["text_2" if second else "text"])
    kind = CLIPTextModelWithProjection if second else CLIPTextModel
    return _random_init(lambda: kind(config), seed + 2 + second, device, dtype)


def _random_init(make: Callable[[], Any], seed: int, device: str, dtype: "torch.dtype | None"):
    """`make()`'s module with seeded random weights, built in seconds.

    Default initialisation draws every weight from torch's CPU generator: 9-19 s per SD UNet
    (860 M draws) on this project's 2-core CI machine (shared with other jobs). Instead the
    parameters are made without storage (meta device; buffers such as CLIP's position ids stay
    real), allocated on `device` in `dtype`, and each weight tensor is filled from one seeded pool
    of 2^20 uniform values, from a random offset in it, scaled by 1/sqrt(fan-in) like
    torch's default; biases 0, norm scales 1. The weights are not i.i.d. (the pool repeats), which
    does not matter for timing or memory, and they are the same on every machine and device.
    """
    import torch
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        module = make()
    if dtype is not None:
        # On meta: free, and the real storage is made in `dtype` at once. nn.Module's own `to`,
        # since diffusers' warns on every dtype cast (none of these modules keeps fp32 parts).
        module = torch.nn.Module.to(module, dtype)
    buffers = {name: buffer.clone() for name, buffer in module.named_buffers()}  # to_empty wipes them too
    module = module.to_empty(device=device)
    for name, buffer in module.named_buffers():
        buffer.copy_(buffers[name])
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        pool_size = 2**20
        pool = (torch.rand(2 * pool_size, generator=generator) * 2 - 1).to(device)
        for name, parameter in module.named_parameters():
            if parameter.dim() >= 2:
                flat = parameter.view(-1)
                bound = parameter[0].numel() ** -0.5  # fan-in: input channels x kernel area
                for start in range(0, flat.numel(), pool_size):
                    chunk = flat[start : start + pool_size]
                    offset = int(torch.randint(pool_size, (1,), generator=generator))
                    torch.mul(pool[offset : offset + chunk.numel()], bound, out=chunk)
            elif name.endswith("bias"):
                parameter.zero_()
            else:
                parameter.fill_(1.0)
    return module.eval().requires_grad_(False)


def _build_full_size(preset: ModelPreset, device: str, dtype: "torch.dtype") -> Model:
    name = preset.name
    # Byte-level: its ids (< 600) are not the real CLIP tokenizer's, which does not matter for
    # speed or memory (the text encoder always sees 77 positions) and needs no download.
    tokenizer = tiny_tokenizer()
    assert len(tokenizer) <= CLIP_VOCAB_SIZE
    model = Model(
        preset=preset,
        device=device,
        dtype=dtype,
        vae=full_size_vae(name, device=device, dtype=dtype),
        text_encoder=full_size_text_encoder(name, device=device, dtype=dtype),
        tokenizer=tokenizer,
        scheduler_config=sd_scheduler_config(preset.train_timesteps),
    )
    if preset.family == "sdxl":
        model.text_encoder_2 = full_size_text_encoder(name, device=device, dtype=dtype, second=True)
        model.tokenizer_2 = tiny_tokenizer()
    model._builders = {"inpaint": lambda: full_size_unet(name, 9, device=device, dtype=dtype),
                       "txt2img": lambda: full_size_unet(name, 4, device=device, dtype=dtype)}
    return model


def sd_scheduler_config(train_timesteps: int | None = 1000) -> dict[str, Any]:
    """SD 1.5's and SD 2's noise schedule as DDIM uses it here (tiny's and the -arch presets')."""
    return {
        "num_train_timesteps": train_timesteps,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": "epsilon",
        # DDIM's default, stated so that other samplers built from this config space their
        # timesteps as they do from a pretrained SD config (which carries "leading").
        "timestep_spacing": "leading",
    }
