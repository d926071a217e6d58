"""Live previews of a denoising loop and animations of them: monitoring, never part of a result.

    with PreviewTap(model) as tap:
        output = technique.run(model, job)   # job.on_step may call tap.image() at any step

A tap wraps the `step` of every scheduler `Model.new_scheduler` makes while it is attached,
so it sees every technique's loop (the diffusers pipeline, the hand-written latent loops,
post-conditioning) without their knowing. It remembers the latest x0 prediction
(`pred_original_sample`: DDIM, DDPM, Euler, Euler ancestral, LMS), or, for schedulers whose
step output has none (PNDM, DPM-Solver++, UniPC), the latest `prev_sample`: the current noisy
latent, which looks noisier early on but converges to the same image.

The wrapper draws no random numbers and returns the scheduler's own output object, so outputs
are unchanged; preview decodes are not counted in any technique's Cost.

Importing this module is torch-free (the TUI writes animations without torch).
"""

from __future__ import annotations

import functools
import io
import time
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image, features

if TYPE_CHECKING:
    import torch

    from engine.models import Model

ANIMATION_FORMATS = ("gif", "webp")


class PreviewTap:
    """Remembers the latest latent of the model's denoising loops while attached.

    `latest_step` counts the scheduler steps seen; `seconds` is the wall time spent decoding
    previews, which the runner leaves out of a sample's time. Call `image` from the thread
    that runs the loop (e.g. in a progress callback).
    """

    def __init__(self, model: "Model") -> None:
        self.model = model
        self.latest_step = 0
        self.seconds = 0.0
        self._latents: "torch.Tensor | None" = None
        self._attached = False
        self._wrapped: list[tuple[Any, Any]] = []  # (scheduler, its wrapped step)

    def attach(self) -> "PreviewTap":
        if not self._attached:
            self._attached = True
            self.model.scheduler_observers.append(self._wrap)
        return self

    def detach(self) -> None:
        """Stop watching: new schedulers are left alone and wrapped ones get their class's
        `step` back (unless another tap wrapped them since; then this wrapper only passes through)."""
        if not self._attached:
            return
        self._attached = False
        self.model.scheduler_observers.remove(self._wrap)
        for scheduler, wrapped in self._wrapped:
            if scheduler.__dict__.get("step") is wrapped:
                del scheduler.step
        self._wrapped.clear()

    def __enter__(self) -> "PreviewTap":
        return self.attach()

    def __exit__(self, *exc_info: object) -> None:
        self.detach()

    def _wrap(self, scheduler: Any) -> None:
        step = scheduler.step

        # functools.wraps keeps step's signature visible (through __wrapped__): diffusers
        # pipelines inspect it to decide whether to pass `eta` and `generator`.
        @functools.wraps(step)
        def recording_step(*args: Any, **kwargs: Any) -> Any:
            output = step(*args, **kwargs)
            if self._attached:
                self._remember(output)
            return output

        scheduler.step = recording_step
        self._wrapped.append((scheduler, recording_step))

    def _remember(self, output: Any) -> None:
        # With return_dict=False diffusers' schedulers return (prev_sample, pred_original_sample)
        # or just (prev_sample,).
        if isinstance(output, tuple):
            latents = output[1] if len(output) > 1 and output[1] is not None else output[0]
        else:
            latents = getattr(output, "pred_original_sample", None)
            if latents is None:
                latents = output.prev_sample
        self._latents = latents.detach().clone()  # a snapshot: callers may modify theirs in place
        self.latest_step += 1

    def image(self, max_side: int = 256) -> Image.Image | None:
        """The latest remembered latent decoded by the model's VAE, as an RGB image whose
        longer side is at most `max_side` (never upscaled); None before the first step, and
        for a pipeline stepping packed tokens (FLUX Fill's (1, tokens, 64): the tap does not
        know the grid they unpack to)."""
        if max_side < 1:
            raise ValueError(f"max_side must be at least 1, got {max_side}")
        if self._latents is None or self._latents.ndim != 4:
            return None
        import torch

        from engine.latents import decode_latents

        latents = self._latents[:1].to(self.model.device, self.model.dtype)
        if latents.is_cuda:
            torch.cuda.synchronize(latents.device)  # time the decode, not the queued loop
        started = time.perf_counter()
        with torch.inference_mode():
            pixels = decode_latents(self.model, latents)
        self.seconds += time.perf_counter() - started
        image = Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8), mode="RGB")
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return image


def write_animation(frames: Sequence[Image.Image], fmt: str, duration_ms: int = 120) -> bytes:
    """Frames as a looping animated GIF or WebP (`fmt` in ANIMATION_FORMATS), each shown for
    `duration_ms`. Frames are resized to the first frame's size. GIF merges identical
    consecutive frames into one longer frame (Pillow's encoder)."""
    if fmt not in ANIMATION_FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(ANIMATION_FORMATS)}, not {fmt!r}")
    if not frames:
        raise ValueError("frames must hold at least one image")
    if duration_ms < 1:
        raise ValueError(f"duration_ms must be at least 1, got {duration_ms}")
    if fmt == "webp" and not features.check("webp"):
        raise ValueError("fmt 'webp' needs Pillow built with WebP support, which this one lacks; use 'gif'")
    size = frames[0].size
    images = [
        frame.convert("RGB") if frame.size == size else frame.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        for frame in frames
    ]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format=fmt.upper(), save_all=True, append_images=images[1:], duration=duration_ms, loop=0
    )
    return buffer.getvalue()
