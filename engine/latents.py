"""Tensor building blocks shared by the hand-written denoising loops.

Shapes: images (1, 3, H, W) in [-1, 1]; latents (1, 4, H/f, W/f) with f the VAE scale
factor; masks (1, 1, h, w) float {0, 1}, 1 = generate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.models import Model
from engine.samples import Sample


def image_to_tensor(image, model: Model) -> torch.Tensor:
    """PIL RGB image to (1, 3, H, W) in [-1, 1] on the model's device and dtype."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)
    return (tensor * 2.0 - 1.0).to(model.device, model.dtype)


@torch.no_grad()
def encode_image(model: Model, image: torch.Tensor) -> torch.Tensor:
    """z_src = s * E(x), the posterior mean (deterministic; no sampling noise)."""
    posterior = model.vae.encode(image).latent_dist
    return posterior.mean * model.vae.config.scaling_factor


@torch.no_grad()
def decode_latents(model: Model, latents: torch.Tensor) -> np.ndarray:
    """Latents to a float32 (H, W, 3) image in [0, 1]."""
    image = model.vae.decode(latents / model.vae.config.scaling_factor).sample
    image = (image / 2 + 0.5).clamp(0, 1)
    return image[0].permute(1, 2, 0).float().cpu().numpy()


def latent_mask(sample: Sample, latent_hw: tuple[int, int], model: Model) -> torch.Tensor:
    """m_lat: the binary mask resized to the latent grid with nearest neighbour, as Blended
    Latent Diffusion does (a pixel-space mask thresholded at 0.5, then sampled)."""
    mask = torch.from_numpy(sample.binary_mask.astype(np.float32))[None, None]
    mask = F.interpolate(mask, size=latent_hw, mode="nearest")
    return (mask > 0.5).to(model.device, model.dtype)


def dilate(mask: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Binary dilation by a square kernel (max-pool with same-size padding)."""
    if kernel_size <= 1:
        return mask
    return F.max_pool2d(mask, kernel_size, stride=1, padding=kernel_size // 2)


@dataclass(frozen=True)
class PromptEmbeddings:
    """Text conditioning; with CFG the batch is [unconditional, conditional]."""

    embeddings: torch.Tensor
    guidance: float

    @property
    def cfg(self) -> bool:
        return self.guidance > 1.0


@torch.no_grad()
def encode_prompt(model: Model, prompt: str, negative_prompt: str, guidance: float) -> PromptEmbeddings:
    def embed(text: str) -> torch.Tensor:
        tokens = model.tokenizer(
            text,
            padding="max_length",
            max_length=model.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(model.device)
        return model.text_encoder(tokens)[0].to(model.dtype)

    conditional = embed(prompt)
    if guidance <= 1.0:
        return PromptEmbeddings(conditional, guidance)
    return PromptEmbeddings(torch.cat([embed(negative_prompt), conditional]), guidance)


@torch.no_grad()
def predict_noise(unet, scheduler, latents: torch.Tensor, t: torch.Tensor, prompt: PromptEmbeddings) -> torch.Tensor:
    """ε̂(z_t, t, c) with classifier-free guidance when enabled."""
    batch = torch.cat([latents] * 2) if prompt.cfg else latents
    batch = scheduler.scale_model_input(batch, t)
    noise = unet(batch, t, encoder_hidden_states=prompt.embeddings).sample
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
