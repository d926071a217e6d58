"""The FLUX.1 family: a flow-matching transformer on packed 16-channel latents.

What differs from the SD families, and where the shared latent code meets it:

- Latents z (B, 16, h, w) at scale factor 8, normalised as (E(x) − shift)·scale (the VAE's
  shift_factor and scaling_factor). The transformer sees them *packed*: 2×2 patches as
  tokens, (B, h/2·w/2, 64), with positional ids (0, row, column) per token; text tokens have
  ids 0 (`pack`, `unpack`, `image_ids`).
- Noising is the flow's straight line, x_σ = (1 − σ)·x_0 + σ·ε, with σ = t / 1000 (diffusers'
  FlowMatchEulerDiscreteScheduler.scale_noise), not √ᾱ·x_0 + √(1 − ᾱ)·ε.
- The schedule: σ_i = linspace(1, 1/N, N), shifted by the resolution-dependent μ of
  `calculate_shift` (exponential time shift), as diffusers' FLUX pipelines set it; the
  transformer predicts a velocity v and the Euler step is x ← x + (σ_{i+1} − σ_i)·v.
- Conditioning: T5's last hidden states (B, L, d) for attention and CLIP's pooled output
  (B, p); guidance is *distilled* (FLUX.1-dev and Fill take the guidance scale as an input
  embedding, one forward per step, no classifier-free pair).
- The Fill transformer takes, per token, the latent (64) then the masked image's latent
  (64) and the 8×8 pixel mask of the patch's 16×16 pixels (256): 384 channels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

# FLUX.1-dev's and FLUX.1-Fill-dev's scheduler configuration.
FLUX_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}
FLUX_T5_TOKENS = 512  # the pipelines' max_sequence_length for T5

# The released FLUX.1 [dev] / Fill [dev] configurations (what the `flux` preset's parameter
# counts, and so its memory estimate, are taken from; tests count modules built from them).
FLUX_TRANSFORMER_CONFIG: dict[str, Any] = dict(
    patch_size=1, num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
    joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56))
FLUX_FILL_IN_CHANNELS = 64 + 64 + 256  # latent, masked-image latent, 8x8 pixel mask per 2x2 patch
FLUX_T5_CONFIG: dict[str, Any] = dict(vocab_size=32128, d_model=4096, d_ff=10240, num_layers=24, num_heads=64,
                                      d_kv=64, feed_forward_proj="gated-gelu")  # T5 v1.1 XXL's encoder
FLUX_VAE_CONFIG: dict[str, Any] = dict(
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False,
    scaling_factor=0.3611, shift_factor=0.1159)


def calculate_shift(image_tokens: int, config: dict[str, Any]) -> float:
    """μ: linear in the number of image tokens, from base_shift at base_image_seq_len to
    max_shift at max_image_seq_len (diffusers' FLUX pipelines' rule)."""
    base, top = config["base_image_seq_len"], config["max_image_seq_len"]
    slope = (config["max_shift"] - config["base_shift"]) / (top - base)
    return image_tokens * slope + config["base_shift"] - slope * base


def set_timesteps(scheduler, steps: int, latent_hw: tuple[int, int], device) -> None:
    """The FLUX pipelines' schedule for a (h, w) latent: σ = linspace(1, 1/N, N), shifted by μ."""
    tokens = (latent_hw[0] // 2) * (latent_hw[1] // 2)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps), device=device,
                            mu=calculate_shift(tokens, dict(scheduler.config)))


def noise_to(latents: "torch.Tensor", noise: "torch.Tensor", sigma: "torch.Tensor") -> "torch.Tensor":
    """x_σ = (1 − σ)·x_0 + σ·ε: the flow's forward process (scale_noise's formula)."""
    sigma = sigma.to(latents.dtype)
    return sigma * noise + (1.0 - sigma) * latents


def pack(latents: "torch.Tensor") -> "torch.Tensor":
    """(B, C, h, w) -> (B, h/2·w/2, 4C): 2×2 patches as tokens, row-major, channels then patch."""
    b, c, h, w = latents.shape
    return latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: "torch.Tensor", latent_hw: tuple[int, int]) -> "torch.Tensor":
    """The inverse of `pack`: (B, h/2·w/2, 4C) -> (B, C, h, w)."""
    b, _, channels = tokens.shape
    h, w = latent_hw
    return tokens.view(b, h // 2, w // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, channels // 4, h, w)


def image_ids(latent_hw: tuple[int, int], device, dtype) -> "torch.Tensor":
    """(h/2·w/2, 3) positional ids (0, row, column) of the packed tokens."""
    import torch

    h, w = latent_hw[0] // 2, latent_hw[1] // 2
    ids = torch.zeros(h, w, 3)
    ids[..., 1] += torch.arange(h)[:, None]
    ids[..., 2] += torch.arange(w)[None, :]
    return ids.reshape(h * w, 3).to(device=device, dtype=dtype)


def encode_prompts(model, prompts: list[str]) -> tuple["torch.Tensor", "torch.Tensor"]:
    """(T5 hidden states (B, L, d), CLIP pooled output (B, p)), as the FLUX pipelines encode."""
    clip_tokens = model.tokenizer(prompts, padding="max_length", max_length=model.tokenizer.model_max_length,
                                  truncation=True, return_tensors="pt").input_ids.to(model.device)
    pooled = model.text_encoder(clip_tokens, output_hidden_states=False).pooler_output.to(model.dtype)
    t5_tokens = model.tokenizer_2(prompts, padding="max_length", max_length=FLUX_T5_TOKENS, truncation=True,
                                  return_tensors="pt").input_ids.to(model.device)
    hidden = model.text_encoder_2(t5_tokens, output_hidden_states=False)[0].to(model.dtype)
    return hidden, pooled


def predict_velocity(transformer, latents: "torch.Tensor", t: "torch.Tensor", prompt, condition=None) -> "torch.Tensor":
    """v̂(z_σ, σ, c) for (B, C, h, w) latents, unpacked: one forward with the distilled
    guidance as input. `condition` (packed Fill conditioning: masked-image latent and mask)
    is concatenated to each token."""
    import torch

    latent_hw = tuple(latents.shape[-2:])
    tokens = pack(latents)
    if condition is not None:
        tokens = torch.cat([tokens, condition], dim=2)
    batch = latents.shape[0]
    guidance = None
    if transformer.config.guidance_embeds:
        guidance = torch.full([batch], prompt.guidance, device=latents.device, dtype=torch.float32)
    velocity = transformer(
        hidden_states=tokens,
        timestep=(t.expand(batch).to(latents.dtype)) / 1000,
        guidance=guidance,
        pooled_projections=prompt.added["pooled"],
        encoder_hidden_states=prompt.embeddings,
        txt_ids=prompt.added["text_ids"],
        img_ids=image_ids(latent_hw, latents.device, latents.dtype),
        return_dict=False,
    )[0]
    return unpack(velocity, latent_hw)


def tiny_flux_components(seed: int = 0) -> dict[str, Any]:
    """Random-weight FLUX components, identical for the same seed on any machine: the shapes
    of diffusers' own FLUX pipeline tests (one double and one single transformer block, head
    dim 16, rope axes (4, 4, 8), guidance embedding), a 16-channel VAE with FLUX's factor 8 and
    no quant convs, a CLIP text encoder (pooled) and a T5 encoder of width 32. The tokenizer
    is tiny's byte-level one for both encoders (no download)."""
    import torch
    from diffusers import FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    from engine.tiny import tiny_clip_config, tiny_tokenizer, tiny_vae

    tokenizer = tiny_tokenizer()
    width = 32

    def transformer(in_channels: int) -> FluxTransformer2DModel:
        return FluxTransformer2DModel(patch_size=1, in_channels=in_channels, out_channels=64, num_layers=1,
                                      num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                                      joint_attention_dim=width, pooled_projection_dim=width,
                                      axes_dims_rope=(4, 4, 8), guidance_embeds=True)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 2)  # a stream of its own: tiny's and tiny-sdxl's weights stay as pinned
        fill = transformer(FLUX_FILL_IN_CHANNELS)
        txt2img = transformer(64)
        vae = tiny_vae(latent_channels=16, use_quant_conv=False, use_post_quant_conv=False, force_upcast=False,
                       scaling_factor=FLUX_VAE_CONFIG["scaling_factor"], shift_factor=FLUX_VAE_CONFIG["shift_factor"])
        clip = CLIPTextModel(tiny_clip_config(tokenizer, projection_dim=width))
        t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=width, d_kv=8, d_ff=37, num_layers=2,
                                     num_heads=4, relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
                                     decoder_start_token_id=tokenizer.pad_token_id))
    return {"vae": vae, "text_encoder": clip, "text_encoder_2": t5, "tokenizer": tokenizer,
            "tokenizer_2": tiny_tokenizer(), "inpaint_unet": fill, "txt2img_unet": txt2img,
            "scheduler_config": dict(FLUX_SCHEDULER_CONFIG)}
