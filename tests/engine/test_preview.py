"""Live previews (engine.preview) and the runner's out-of-memory path.

Previews are monitoring: asking for one at every step must leave every technique's output
bit-identical, and a preview must show what the scheduler predicted at that step."""

import functools
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence, features

from engine.latents import decode_latents
from engine.models import scheduler_names
from engine.params import ParamSchema
from engine.preview import ANIMATION_FORMATS, PreviewTap, write_animation
from engine.runner import Progress, inpaint, to_uint8
from engine.techniques import Technique, TechniqueOutput, register, technique_names
from engine.techniques.registry import _REGISTRY

STEPS = 4
FALLBACK_SCHEDULERS = ("pndm", "dpmpp_2m", "unipc")  # step outputs without pred_original_sample

CASES = (
    [(name, {}) for name in technique_names()]
    + [("vanilla", {"scheduler": name}) for name in scheduler_names() if name != "ddim"]
    + [("vanilla", {"padding_mask_crop": 8}), ("blended", {"post_condition": True, "post_strength": 0.5})]
)


@pytest.fixture(scope="module")
def sample(demo):
    return demo[0]


def _run(model, technique, sample, params=None, on_step=None):
    [result] = inpaint(model, technique, [sample], seed=5, steps=STEPS, params=params, on_step=on_step, errors="raise")
    return result


def _record_x0(model) -> list[torch.Tensor]:
    """Independently of PreviewTap: every step's x0 prediction (or prev_sample) of the
    model's next schedulers, in order. The caller removes the observer."""
    seen: list[torch.Tensor] = []

    def observe(scheduler):
        step = scheduler.step

        @functools.wraps(step)
        def recording(*args, **kwargs):
            output = step(*args, **kwargs)
            if isinstance(output, tuple):
                seen.append((output[1] if len(output) > 1 else output[0]).clone())
            else:
                x0 = getattr(output, "pred_original_sample", None)
                seen.append((output.prev_sample if x0 is None else x0).clone())
            return output

        scheduler.step = recording

    model.scheduler_observers.append(observe)
    return seen


@pytest.mark.parametrize("technique, params", CASES, ids=lambda value: str(value) if isinstance(value, str) else
                         ",".join(f"{k}={v}" for k, v in value.items()) or "defaults")
def test_previews_at_every_step_leave_the_output_unchanged(tiny_model, sample, technique, params):
    plain = _run(tiny_model, technique, sample, params)
    previews = []
    watched = _run(tiny_model, technique, sample, params, on_step=lambda p: previews.append(p.preview(64)))
    np.testing.assert_array_equal(np.asarray(watched.image), np.asarray(plain.image))
    assert watched.cost == plain.cost
    assert len(previews) >= STEPS
    assert all(isinstance(image, Image.Image) and max(image.size) <= 64 for image in previews)
    assert tiny_model.scheduler_observers == []


@pytest.mark.parametrize("technique", ["vanilla", "blended"])  # tuple and object step outputs
def test_preview_decodes_the_latest_x0_prediction(tiny_model, sample, technique):
    recorded = _record_x0(tiny_model)
    previews, at_step = [], []

    def on_step(progress: Progress):
        previews.append(progress.preview(1024))
        at_step.append(len(recorded))

    try:
        result = _run(tiny_model, technique, sample, on_step=on_step)
    finally:
        tiny_model.scheduler_observers.clear()
    assert len(recorded) == STEPS
    for preview, count in zip(previews, at_step):
        expected = to_uint8(decode_latents(tiny_model, recorded[count - 1]))
        assert preview.mode == "RGB" and preview.size == result.size  # never upscaled
        np.testing.assert_array_equal(np.asarray(preview), expected)
    assert not np.array_equal(np.asarray(previews[0]), np.asarray(previews[-1]))
    # x0 predicted at the last DDIM step is nearly the final latent (alpha_bar_0 ~ 0.999).
    final = np.asarray(result.image, dtype=np.float64)
    assert np.abs(np.asarray(previews[-1], dtype=np.float64) - final).mean() < np.abs(
        np.asarray(previews[0], dtype=np.float64) - final
    ).mean()


@pytest.mark.parametrize("scheduler", FALLBACK_SCHEDULERS)
def test_schedulers_without_x0_preview_the_current_latent(tiny_model, sample, scheduler):
    previews = []
    result = _run(tiny_model, "vanilla", sample, {"scheduler": scheduler}, on_step=lambda p: previews.append(p.preview(1024)))
    assert all(isinstance(image, Image.Image) for image in previews)
    # The last step's prev_sample is the latent vanilla decodes into its output.
    np.testing.assert_array_equal(np.asarray(previews[-1]), np.asarray(result.image))
    assert not np.array_equal(np.asarray(previews[0]), np.asarray(previews[-1]))


def test_preview_downscales_keeping_the_aspect_ratio(tiny_model):
    with PreviewTap(tiny_model) as tap:
        assert tap.image() is None and tap.latest_step == 0  # no step yet
        scheduler = tiny_model.new_scheduler()
        scheduler.set_timesteps(STEPS)
        latents = torch.randn(1, 4, 12, 16, generator=torch.Generator().manual_seed(0))
        scheduler.step(torch.zeros_like(latents), scheduler.timesteps[0], latents)
        assert tap.latest_step == 1
        image = tap.image(max_side=32)
        assert image.mode == "RGB" and image.size == (32, 24)
        assert tap.seconds > 0  # decode time, which the runner leaves out of a sample's time
        assert tap.image(max_side=1000).size == (128, 96)
        with pytest.raises(ValueError, match="max_side"):
            tap.image(max_side=0)


def test_tap_detaches_on_exit(tiny_model):
    with PreviewTap(tiny_model):
        inside = tiny_model.new_scheduler("euler")
        assert "step" in vars(inside)
    assert "step" not in vars(inside)  # its class's step again
    after = tiny_model.new_scheduler("euler")
    assert "step" not in vars(after) and after.step.__func__ is type(after).step
    assert tiny_model.scheduler_observers == []


def test_tap_detaches_when_the_block_raises(tiny_model):
    with pytest.raises(RuntimeError, match="boom"):
        with PreviewTap(tiny_model):
            tiny_model.new_scheduler()
            raise RuntimeError("boom")
    after = tiny_model.new_scheduler()
    assert "step" not in vars(after) and after.step.__func__ is type(after).step
    assert tiny_model.scheduler_observers == []


def test_progress_keeps_its_positional_form_and_ignores_the_preview_in_comparisons():
    plain = Progress(0, 2, "a", 1, 4)
    assert plain.preview is None
    assert Progress(0, 2, "a", 1, 4, preview=lambda side: None) == plain
    assert "preview" not in repr(plain)


def _frames() -> list[Image.Image]:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    frames = [Image.new("RGB", (40, 30), colour) for colour in colours]
    frames[2] = Image.new("RGB", (20, 15), colours[2])  # resized to the first frame's size
    return frames


@pytest.mark.parametrize("fmt", ANIMATION_FORMATS)
def test_write_animation_loops_every_frame(fmt):
    if fmt == "webp" and not features.check("webp"):
        pytest.skip("Pillow without WebP")
    frames = _frames()
    data = write_animation(frames, fmt, duration_ms=80)
    with Image.open(io.BytesIO(data)) as animation:
        assert animation.format == fmt.upper()
        assert animation.is_animated and animation.n_frames == len(frames)
        assert animation.info["loop"] == 0
        decoded = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(animation)]
    assert all(frame.shape == (30, 40, 3) for frame in decoded)
    for frame, colour in zip(decoded, [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]):
        assert np.abs(frame.astype(int) - colour).max() <= 8  # lossy WebP


def test_write_animation_rejects_bad_arguments(monkeypatch):
    with pytest.raises(ValueError, match="fmt"):
        write_animation(_frames(), "apng")
    with pytest.raises(ValueError, match="frames"):
        write_animation([], "gif")
    monkeypatch.setattr(features, "check", lambda name: False)
    with pytest.raises(ValueError, match="webp"):
        write_animation(_frames(), "webp")


@pytest.fixture
def oom_technique(demo):
    """A throwaway technique that runs out of GPU memory on the first demo sample."""

    def run(model, jobs):
        if any(job.sample.id == demo[0].id for job in jobs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [TechniqueOutput(image=np.full((job.sample.size[1], job.sample.size[0], 3), 0.5, dtype=np.float32))
                for job in jobs]

    technique = register(Technique("test_oom", "fails with OOM on its first sample", "txt2img", ParamSchema(()), run))
    try:
        yield technique
    finally:
        _REGISTRY.pop(technique.name)


def test_out_of_memory_frees_the_cache_and_the_run_goes_on(tiny_model, demo, oom_technique, monkeypatch):
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    failed, passed = inpaint(tiny_model, "test_oom", demo[:2], seed=0, steps=STEPS)
    width, height = failed.size
    assert failed.error.startswith(f"out of GPU memory at {width}x{height} on cpu (torch.float32)")
    assert failed.image is None and "OutOfMemoryError" in failed.traceback
    assert emptied == [True, True]  # after the warm-up's OOM and the failed sample's, not the passing one's
    assert passed.ok and passed.image is not None and passed.image.size == passed.size
    emptied.clear()
    list(inpaint(tiny_model, "test_oom", demo[:2], seed=0, steps=STEPS, warm_up=False))
    assert emptied == [True]
