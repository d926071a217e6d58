"""Tensor building blocks shared by the hand-written denoising loops.

Shapes: images (B, 3, H, W) in [-1, 1]; latents (B, 4, H/f, W/f) with f the VAE scale
factor; masks (B, 1, h, w) float {0, 1}, 1 = generate; B samples of one run at one working
size (B = 1 unless the run is batched).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from engine import flux
from engine.models import Model
from engine.samples import Sample


class NonFiniteError(FloatingPointError):
    """A latent or image holding NaN or inf (fp16 overflow, a huge guidance): the sample fails
    with a message naming where, the dtype and the device, instead of saving a black image."""


def check_finite(values: "torch.Tensor | np.ndarray", where: str, model: Model, guidance: float | None = None) -> None:
    """Raise NonFiniteError when `values` holds NaN or inf. One reduction (and, on a GPU, one
    synchronisation): cheap beside a UNet call."""
    if isinstance(values, torch.Tensor):
        finite = bool(torch.isfinite(values).all())
        dtype, device = str(values.dtype).removeprefix("torch."), str(values.device)
    else:
        finite = bool(np.isfinite(values).all())
        dtype, device = str(model.dtype).removeprefix("torch."), str(model.device)  # the dtype it was computed in
    if not finite:
        hint = "use a smaller guidance"
        if dtype != "float32":
            hint = "run in float32 (--dtype fp32) or use a smaller guidance"
        if guidance is not None:
            hint += f" (now {guidance:g})"
        raise NonFiniteError(f"non-finite values (NaN or inf) in the {where} ({dtype} on {device}); {hint}")


def image_to_tensor(image, model: Model) -> torch.Tensor:
    """PIL RGB image to (1, 3, H, W) in [-1, 1] on the model's device and dtype."""
    return pixels_to_tensor(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0, model)


def pixels_to_tensor(array: np.ndarray, model: Model) -> torch.Tensor:
    """A float (H, W, 3) image in [0, 1] to (1, 3, H, W) in [-1, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    return (tensor * 2.0 - 1.0).to(model.device, model.dtype)


@torch.no_grad()
def encode_image(model: Model, image: torch.Tensor) -> torch.Tensor:
    """z_src = s·(E(x) − shift), the posterior mean (deterministic; no sampling noise)."""
    posterior = model.vae.encode(image).latent_dist
    return (posterior.mean - latent_shift(model)) * model.vae.config.scaling_factor


def latent_shift(model: Model) -> float:
    """The VAE's latent shift (FLUX: 0.1159; SD and SDXL have none)."""
    return getattr(model.vae.config, "shift_factor", None) or 0.0


@torch.no_grad()
def decode_latents(model: Model, latents: torch.Tensor) -> np.ndarray:
    """(1, 4, h, w) latents to a float32 (H, W, 3) image in [0, 1]."""
    return decode_batch(model, latents[:1])[0]


@torch.no_grad()
def decode_batch(model: Model, latents: torch.Tensor) -> list[np.ndarray]:
    """(B, 4, h, w) latents to B float32 (H, W, 3) images in [0, 1], in one VAE call."""
    images = model.vae.decode(latents / model.vae.config.scaling_factor + latent_shift(model)).sample
    images = (images / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()
    return list(images)


NEAREST_RULE = "nearest-exact"
"""How a mask goes to a coarser grid (the latent grid, a UNet block's grid): nearest
neighbour sampling each cell's *centre*, pixel ⌊(k + ½)·scale⌋, which is what the authors'
PIL `Image.NEAREST` reads (tested: 0 differing cells). torch's plain "nearest" reads the
top-left pixel ⌊k·scale⌋ instead, which shifts the latent mask up to half a cell toward the
bottom-right (diffusers' inpaint pipeline uses that rule for its 9-channel conditioning,
which `LatentInpainting` keeps for that UNet)."""


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, 1, H, W) mask to (1, 1, *size) by `NEAREST_RULE`."""
    return F.interpolate(mask, size=size, mode=NEAREST_RULE)


def latent_mask(sample: Sample, latent_hw: tuple[int, int], model: Model) -> torch.Tensor:
    """m_lat: the binary mask (thresholded at 0.5 in pixel space) sampled at the centre of
    each latent cell's pixel block, as Blended Latent Diffusion's PIL NEAREST resize does
    (`NEAREST_RULE`)."""
    mask = torch.from_numpy(sample.binary_mask.astype(np.float32))[None, None]
    mask = resize_mask(mask, latent_hw)
    return (mask > 0.5).to(model.device, model.dtype)


def dilate(mask: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Binary dilation by a square kernel (max-pool with same-size padding)."""
    if kernel_size <= 1:
        return mask
    return F.max_pool2d(mask, kernel_size, stride=1, padding=kernel_size // 2)


@dataclass(frozen=True)
class PromptEmbeddings:
    """Text conditioning; with CFG every tensor's rows are [unconditional × B, conditional × B].

    `embeddings` (rows, 77, d) go to cross-attention. `added` is SDXL's added conditioning
    (None for SD): `text_embeds` (rows, p), the second text encoder's pooled projection, and
    `time_ids` (rows, 6), the micro-conditioning (original height, width, crop top, left,
    target height, width) in pixels."""

    embeddings: torch.Tensor
    guidance: float
    added: dict[str, torch.Tensor] | None = None
    # FLUX: the guidance scale is a model input (guidance-distilled), never a CFG pair.
    distilled: bool = False

    @property
    def cfg(self) -> bool:
        return self.guidance > 1.0 and not self.distilled

    def unet_kwargs(self, copies: int = 1) -> dict:
        """The UNet's conditioning arguments, every tensor tiled `copies` times along the rows
        (latentpaint's forward carries a second, known-region half)."""
        def tiled(tensor: torch.Tensor) -> torch.Tensor:
            return tensor if copies == 1 else torch.cat([tensor] * copies)

        kwargs = {"encoder_hidden_states": tiled(self.embeddings)}
        if self.added is not None:
            kwargs["added_cond_kwargs"] = {key: tiled(value) for key, value in self.added.items()}
        return kwargs


@torch.no_grad()
def encode_prompts(model: Model, prompts: list[str], negative_prompt: str, guidance: float,
                   size: tuple[int, int] | None = None) -> PromptEmbeddings:
    """B prompts' conditioning, with CFG [uncond × B, cond_1..B], the layout `predict_noise`
    splits in halves; the negative prompt is encoded once. `size` (height, width) in pixels is
    the working size, which SDXL's time ids state (original = target = the working size, crop
    at 0, 0, as diffusers' SDXL pipelines default to).

    SD: the text encoder's last hidden state (B, 77, d). SDXL, as diffusers' SDXL pipelines:
    both encoders' penultimate hidden states concatenated (B, 77, d1 + d2), the second
    encoder's pooled projection as `text_embeds`; an empty negative prompt conditions on zeros
    for both (the checkpoints' force_zeros_for_empty_prompt)."""
    if model.family == "sdxl":
        return _encode_sdxl(model, prompts, negative_prompt, guidance, size)
    if model.family == "flux":
        if negative_prompt:
            raise ValueError("FLUX takes no negative prompt (its guidance is distilled, without a CFG pair)")
        hidden, pooled = flux.encode_prompts(model, list(prompts))
        text_ids = torch.zeros(hidden.shape[1], 3, device=model.device, dtype=model.dtype)
        return PromptEmbeddings(hidden, guidance, {"pooled": pooled, "text_ids": text_ids}, distilled=True)

    def embed(texts: list[str]) -> torch.Tensor:
        return model.text_encoder(_tokens(model.tokenizer, texts, model))[0].to(model.dtype)

    conditional = embed(list(prompts))
    if guidance <= 1.0:
        return PromptEmbeddings(conditional, guidance)
    unconditional = embed([negative_prompt]).expand(len(prompts), -1, -1)
    return PromptEmbeddings(torch.cat([unconditional, conditional]), guidance)


def _tokens(tokenizer, texts: list[str], model: Model) -> torch.Tensor:
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids.to(model.device)


def _encode_sdxl(model: Model, prompts: list[str], negative_prompt: str, guidance: float,
                 size: tuple[int, int] | None) -> PromptEmbeddings:
    if size is None:
        raise ValueError("SDXL conditioning needs the working size (its time ids state it)")

    def embed(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        first = model.text_encoder(_tokens(model.tokenizer, texts, model), output_hidden_states=True)
        second = model.text_encoder_2(_tokens(model.tokenizer_2, texts, model), output_hidden_states=True)
        hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)  # (n, 77, d1 + d2)
        return hidden.to(model.dtype), second.text_embeds.to(model.dtype)  # pooled: (n, p)

    count = len(prompts)
    embeddings, pooled = embed(list(prompts))
    height, width = size
    time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=model.dtype,
                            device=model.device).expand(count, -1)
    if guidance <= 1.0:
        return PromptEmbeddings(embeddings, guidance, {"text_embeds": pooled, "time_ids": time_ids})
    if negative_prompt:
        negative, negative_pooled = embed([negative_prompt])
        negative, negative_pooled = negative.expand(count, -1, -1), negative_pooled.expand(count, -1)
    else:
        negative, negative_pooled = torch.zeros_like(embeddings), torch.zeros_like(pooled)
    return PromptEmbeddings(torch.cat([negative, embeddings]), guidance,
                            {"text_embeds": torch.cat([negative_pooled, pooled]),
                             "time_ids": torch.cat([time_ids, time_ids])})


@torch.no_grad()
def predict_noise(
    unet, scheduler, latents: torch.Tensor, t: torch.Tensor, prompt: PromptEmbeddings, condition: torch.Tensor | None = None
) -> torch.Tensor:
    """ε̂(z_t, t, c) with classifier-free guidance when enabled. `condition` (the mask and
    masked-image latent of a 9-channel inpainting UNet) is concatenated after scaling."""
    batch = torch.cat([latents] * 2) if prompt.cfg else latents
    batch = scheduler.scale_model_input(batch, t)
    if condition is not None:
        batch = torch.cat([batch, torch.cat([condition] * (2 if prompt.cfg else 1))], dim=1)
    noise = unet(batch, t, **prompt.unet_kwargs()).sample
    if not prompt.cfg:
        return noise
    unconditional, conditional = noise.chunk(2)
    return unconditional + prompt.guidance * (conditional - unconditional)


def randn(shape: tuple[int, ...], generator: torch.Generator, model: Model) -> torch.Tensor:
    """Gaussian noise from `generator`, drawn in float32 on the generator's device so a seed
    gives the same noise whatever the model dtype."""
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32).to(
        model.device, model.dtype
    )


def make_generator(model: Model, seed: int) -> torch.Generator:
    """A seeded generator on the model's device (CPU noise on CPU, CUDA noise on CUDA)."""
    device = "cpu" if model.device == "cpu" else model.device
    return torch.Generator(device=device).manual_seed(seed)


class LatentInpainting:
    """The set-up every hand-written latent loop shares, and its cost accounting, for a batch
    of B samples of one run at one working size (B = 1 is the single-sample case).

    Holds the source latents z_src = s·E(x) (B, 4, h, w), the exact latent masks m_lat
    (B, 1, h, w), the text conditioning ([uncond_1..B, cond_1..B] with CFG), a fresh
    scheduler with its timesteps t_0 > ... > t_{N-1}, and one seeded generator per sample
    from which that sample's noise is drawn in call order. Each draw is taken per sample at
    batch 1's shape, so a sample sees the same noise in any batch. With a 9-channel UNet,
    `predict` adds the inpainting conditioning (mask and masked-image latent) itself.
    `cost` is per image (every image of the batch costs the same).
    """

    def __init__(self, model: Model, jobs, unet_role: str = "txt2img", *, seeds=None) -> None:
        from engine.techniques.registry import Cost, TechniqueJob, check_batch

        self.jobs = [jobs] if isinstance(jobs, TechniqueJob) else list(jobs)
        check_batch(self.jobs)
        self.job = self.jobs[0]  # the shared settings (params, steps, guidance)
        self.model = model
        self.cost = Cost()
        self.unet = model.unet(unet_role)
        self.scheduler = model.new_scheduler()
        self.flow = model.family == "flux"  # flow matching: straight-line noising, velocity prediction
        seeds = [job.seed for job in self.jobs] if seeds is None else list(seeds)
        self.generators = [make_generator(model, seed) for seed in seeds]
        # (B, 3, H, W) in [-1, 1]
        self.source_pixels = torch.cat([image_to_tensor(job.sample.image, model) for job in self.jobs])
        self.z_src = self.encode(self.source_pixels)  # (B, 4, h, w)
        latent_hw = tuple(self.z_src.shape[-2:])
        if self.flow:
            flux.set_timesteps(self.scheduler, self.job.steps, latent_hw, model.device)  # shifted for this size
        else:
            self.scheduler.set_timesteps(self.job.steps, device=model.device)
        self.timesteps = self.scheduler.timesteps
        self.mask = torch.cat([latent_mask(job.sample, latent_hw, model) for job in self.jobs])  # (B, 1, h, w)
        self.prompt = encode_prompts(model, [job.sample.prompt for job in self.jobs], self.job.negative_prompt,
                                     self.job.guidance, size=tuple(self.source_pixels.shape[-2:]))
        self._inpaint_condition: torch.Tensor | None = None
        if self.flow and unet_role == "inpaint":
            self._inpaint_condition = self._fill_condition()
        elif not self.flow and self.unet.config.in_channels == 9:
            self._inpaint_condition = self._inpainting_condition()

    @property
    def size(self) -> int:
        return len(self.jobs)

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.z_src.shape)

    def noise(self) -> torch.Tensor:
        """(B, 4, h, w): one draw of batch 1's shape from each sample's generator."""
        single = (1,) + self.shape[1:]
        return torch.cat([randn(single, generator, self.model) for generator in self.generators])

    @property
    def init_noise_sigma(self) -> float:
        """The scale of the pure-noise start (1 for DDIM and for the flow)."""
        return getattr(self.scheduler, "init_noise_sigma", 1.0)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, index: int) -> torch.Tensor:
        """add_noise(z, ε, t_index): the schedule's own forward process at its index'th
        timestep, √ᾱ_t·z + √(1-ᾱ_t)·ε (DDPM), or (1 − σ)·z + σ·ε (the flow's σ_index)."""
        if self.flow:
            return flux.noise_to(latents, noise, self.scheduler.sigmas[index])
        return self.scheduler.add_noise(latents, noise, self.timesteps[index : index + 1])

    def noise_to_timestep(self, latents: torch.Tensor, noise: torch.Tensor, timestep: float) -> torch.Tensor:
        """z noised to a training timestep off the schedule's grid (TD-Paint's constant c):
        DDPM through the scheduler's add_noise; the flow at σ = t / num_train_timesteps."""
        if self.flow:
            sigma = torch.tensor(timestep / self.scheduler.config.num_train_timesteps, device=latents.device)
            return flux.noise_to(latents, noise, sigma)
        value = torch.tensor([timestep], dtype=self.timesteps.dtype, device=self.timesteps.device)
        return self.scheduler.add_noise(latents, noise, value)

    def noised_source(self, index: int) -> torch.Tensor:
        """z_src noised to t_index with fresh noise; the clean z_src past the last step."""
        if index >= self.steps:
            return self.z_src
        return self.add_noise(self.z_src, self.noise(), index)

    def predict(self, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The denoiser's output for `latents` at t: ε̂ (SD, SDXL) or the flow's velocity v̂ (FLUX),
        in the latents' layout; what `step` takes."""
        self.cost.unet_calls += 1
        if self.flow:
            return flux.predict_velocity(self.unet, latents, t, self.prompt, self._inpaint_condition)
        return predict_noise(self.unet, self.scheduler, latents, t, self.prompt, self._inpaint_condition)

    def step(self, noise_pred: torch.Tensor, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        latents = self.scheduler.step(noise_pred, t, latents).prev_sample
        if not bool(torch.isfinite(latents).all()):  # stop at the first bad step, not after decoding it
            index = int((self.timesteps == t).nonzero()[0, 0]) + 1 if (self.timesteps == t).any() else "?"
            check_finite(latents, f"latent after denoising step {index} of {self.steps} (timestep {int(t)})",
                         self.model, self.job.guidance)
        return latents

    def report(self, done: int, total: int) -> None:
        from engine.techniques.registry import report

        report(self.jobs, done, total)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        self.cost.vae_encodes += 1
        return encode_image(self.model, pixels)

    def decode(self, latents: torch.Tensor) -> list[np.ndarray]:
        """(B, 4, h, w) latents to B float32 (H, W, 3) images in [0, 1]."""
        self.cost.vae_decodes += 1
        return decode_batch(self.model, latents)

    def outputs(self, latents: torch.Tensor, **extras) -> list:
        """One TechniqueOutput per sample. A tensor extra with B rows is split per sample
        (row b kept as (1, ...)); other extras are shared."""
        from engine.techniques.registry import TechniqueOutput

        images = self.decode(latents)
        results = []
        for b, image in enumerate(images):
            own = {key: value[b : b + 1] if self._per_sample(value) else value for key, value in extras.items()}
            results.append(TechniqueOutput(image=image, latents=latents[b : b + 1], cost=replace(self.cost),
                                           extras=own))
        return results

    def _per_sample(self, value) -> bool:
        return isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == self.size

    def _fill_condition(self) -> torch.Tensor:
        # As diffusers' FluxFillPipeline: the latent of the image with the hole set to 0
        # (mid-grey), packed, then per token the 8x8 pixel mask of each latent cell of its
        # 2x2 patch (256 values). The masked image's latent is the posterior mean here (the
        # pipeline samples it with its generator).
        pixel_mask = torch.cat([torch.from_numpy(job.sample.binary_mask.astype(np.float32))[None, None]
                                for job in self.jobs]).to(self.model.device, self.model.dtype)  # (B, 1, H, W)
        masked_latent = self.encode(self.source_pixels * (1 - pixel_mask))  # (B, 16, h, w)
        factor = self.model.vae_scale_factor
        b, _, height, width = pixel_mask.shape
        h, w = height // factor, width // factor
        cells = pixel_mask[:, 0].view(b, h, factor, w, factor).permute(0, 2, 4, 1, 3).reshape(b, factor * factor, h, w)
        return torch.cat([flux.pack(masked_latent), flux.pack(cells)], dim=2)

    def _inpainting_condition(self) -> torch.Tensor:
        # As diffusers' inpaint pipeline: the mask resized to the latent grid (its plain
        # "nearest", top-left pixel: the rule the 9-channel UNet was trained with), and the
        # latent of the image with the masked region set to 0 (mid-grey in [-1, 1]).
        pixel_mask = torch.cat([torch.from_numpy(job.sample.binary_mask.astype(np.float32))[None, None]
                                for job in self.jobs])  # (B, 1, H, W)
        pixel_mask = pixel_mask.to(self.model.device, self.model.dtype)
        masked_latent = self.encode(self.source_pixels * (pixel_mask < 0.5))
        mask = F.interpolate(pixel_mask, size=tuple(self.z_src.shape[-2:]), mode="nearest")
        return torch.cat([mask, masked_latent], dim=1)
