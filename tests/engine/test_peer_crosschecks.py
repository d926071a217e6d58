"""Peer cross-checks: each technique against the code its source published (or the library
the source calls), on the offline `tiny` model. Each test names its reference and its
tolerance; the deviations a test neutralises are those the technique's docstring lists."""


import numpy as np
import pytest
import torch
from PIL import Image

from engine.latents import latent_mask
from engine.samples import make_sample, resize_to, working_size
from tests.conftest import box_mask, make_image

STEPS = 4


def _pil_nearest_latent_mask(mask: np.ndarray, latent_hw: tuple[int, int]) -> np.ndarray:
    """Blended Latent Diffusion's `_read_mask`: the 8-bit mask resized with PIL NEAREST to
    the latent grid, then /255 and thresholded at 0.5."""
    image = Image.fromarray(np.round(mask * 255).astype(np.uint8), mode="L")
    resized = np.asarray(image.resize((latent_hw[1], latent_hw[0]), Image.NEAREST), dtype=np.float64) / 255
    return resized >= 0.5


def _random_masks():
    rng = np.random.default_rng(7)
    for height, width in ((64, 64), (128, 96), (72, 136)):
        blobs = rng.random((height // 4, width // 4)) > 0.6  # blocks of 4 px: every 8×8 cell is mixed somewhere
        yield np.kron(blobs, np.ones((4, 4))).astype(np.float32)
        yield (rng.random((height, width)) > 0.5).astype(np.float32)


def test_latent_mask_equals_pil_nearest(tiny_model, demo):
    """Reference: the authors' PIL NEAREST resize (each block's centre pixel). Tolerance: 0
    differing latent cells, on the demo masks at working size and on random masks."""
    masks = [resize_to(sample, working_size(sample.size, 128)).mask for sample in demo] + list(_random_masks())
    for k, mask in enumerate(masks):
        height, width = mask.shape
        sample = make_sample(f"m{k}", make_image(width, height), np.maximum(mask, box_mask(width, height, (0, 0, 1, 1))),
                             "x")
        hw = (height // 8, width // 8)
        ours = latent_mask(sample, hw, tiny_model)[0, 0].cpu().numpy() > 0.5
        differing = int((ours != _pil_nearest_latent_mask(sample.mask, hw)).sum())
        assert differing == 0, (k, differing)


# --- Differential Diffusion vs the authors' loop -------------------------------------------

BLOCK_VALUES = (0.13, 0.37, 0.62, 0.88, 1.0)
"""Change values m with m·N off the integers at N = 4 (their `>` and our `≥` agree off ties)
and 1.0 present (no leading step is skipped); no 0 (their loop never restores z_src)."""


@pytest.fixture(scope="module")
def soft_block_sample():
    """64×64 (an 8×8 latent grid), the change map constant on each 8×8 pixel block, so our
    area resize and their bilinear resize read the same value per latent cell."""
    rng = np.random.default_rng(5)
    cells = rng.choice(BLOCK_VALUES, size=(8, 8)).astype(np.float32)
    cells[0, 0] = 1.0
    mask = np.kron(cells, np.ones((8, 8), dtype=np.float32))
    return make_sample("soft", make_image(64, 64, seed=1), mask, "a soft change"), cells


def _authors_diffdiff(model, task, keep: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Differential Diffusion's SD loop (exx8/differential-diffusion `diff_pipe.py`), written
    from the paper and their code: one ε noised to every t_i, thresholds i/N, frozen where
    keep > threshold, start from the noised source at i = 0, nothing after the loop."""
    scheduler = model.new_scheduler()
    scheduler.set_timesteps(task.steps)
    timesteps = scheduler.timesteps
    noised = scheduler.add_noise(task.z_src, noise, timesteps)  # (N, 4, h, w): one ε, every t_i
    thresholds = torch.arange(len(timesteps), dtype=keep.dtype) / len(timesteps)
    frozen = keep[0] > thresholds[:, None, None]  # (N, h, w)
    embeddings = task.prompt.embeddings
    latents = None
    for i, t in enumerate(timesteps):
        if i == 0:
            latents = noised[:1]
        else:
            mask = frozen[i][None, None].to(latents.dtype)
            latents = noised[i : i + 1] * mask + latents * (1 - mask)
        batch = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        uncond, cond = task.unet(batch, t, encoder_hidden_states=embeddings).sample.chunk(2)
        latents = scheduler.step(uncond + task.prompt.guidance * (cond - uncond), t, latents).prev_sample
    return latents


def test_diffdiff_equals_the_authors_loop(tiny_model, soft_block_sample):
    """Reference: the authors' loop (above) on the same z_src (our posterior mean; theirs a
    posterior sample) and change map. Tolerance: exact latents with noise=fixed."""
    from engine.latents import LatentInpainting, make_generator, randn
    from engine.techniques import TechniqueJob, get_technique

    sample, cells = soft_block_sample
    technique = get_technique("diffdiff")
    job = TechniqueJob(sample, technique.resolve_params({"noise": "fixed"}), STEPS, 7.5, seed=4)
    ours = technique.run(tiny_model, job).latents
    task = LatentInpainting(tiny_model, job, "txt2img")
    noise = randn(task.shape, make_generator(tiny_model, 4), tiny_model)  # the first draw of the seed
    keep = torch.from_numpy(1.0 - cells)[None, None]
    with torch.no_grad():
        theirs = _authors_diffdiff(tiny_model, task, keep, noise)
    assert torch.equal(ours, theirs)


# --- Poisson and feather vs OpenCV -----------------------------------------------------------

def _images(h=64, w=64, seed=2):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / 30.0
    source = np.clip(np.stack([0.4 + 0.3 * np.sin(x), 0.5 + 0.2 * np.cos(y), 0.3 + 0.2 * x * y / 4], axis=2), 0, 1)
    generated = np.clip(0.6 - 0.3 * np.cos(3 * x + y)[:, :, None] + rng.normal(0, 0.04, (h, w, 3)), 0, 1)
    return generated, source


def _box(top, bottom, left, right, h=64, w=64):
    mask = np.zeros((h, w), bool)
    mask[top:bottom, left:right] = True
    return mask


def _cv2_clone_in_place(generated8, source8, mask):
    """cv2.seamlessClone(generated, input, mask, centre, NORMAL_CLONE), the call Blended
    Latent Diffusion makes, with the centre that puts OpenCV's box on the mask's own box."""
    import cv2

    mask8 = mask.astype(np.uint8) * 255
    left, top, width, height = cv2.boundingRect(mask8)
    return cv2.seamlessClone(generated8, source8, mask8, (left + width // 2, top + height // 2), cv2.NORMAL_CLONE)


POISSON_TOLERANCE_LEVELS = 0
"""Poisson vs OpenCV: the engine calls OpenCV itself, so the same 8-bit pixels are expected."""


@pytest.mark.parametrize("box", [(10, 40, 12, 50), (5, 20, 30, 60), (20, 30, 20, 30)])
def test_poisson_equals_opencv_seamless_clone_inside_the_image(box):
    """Reference: cv2.seamlessClone NORMAL_CLONE called directly (no padding) on masks away
    from the borders. Tolerance: POISSON_TOLERANCE_LEVELS 8-bit levels."""
    from engine.postprocess import poisson_blend, to_8bit

    generated, source = _images()
    mask = _box(*box)
    mask[box[1] - 1, box[2] : box[2] + 3] = False  # not a plain rectangle
    ours = np.round(poisson_blend(generated, source, mask) * 255).astype(int)
    theirs = _cv2_clone_in_place(to_8bit(generated), to_8bit(source), mask).astype(int)
    assert np.abs(ours - theirs).max() <= POISSON_TOLERANCE_LEVELS


@pytest.mark.parametrize("box", [(0, 20, 10, 50), (44, 64, 10, 50), (10, 50, 0, 20), (10, 50, 44, 64),
                                 (0, 64, 0, 24), (0, 64, 0, 64)],
                         ids=["top", "bottom", "left", "right", "three borders", "whole image"])
def test_poisson_at_the_borders_equals_opencv_inside_a_larger_image(box):
    """Reference: cv2.seamlessClone on the image extended by 16 replicated pixels each side
    (the mask then lies inside), cropped back: a mask at a border behaves as it would inside
    a larger picture. Tolerance: POISSON_TOLERANCE_LEVELS."""
    import cv2

    from engine.postprocess import poisson_blend, to_8bit

    generated, source = _images()
    mask = _box(*box)
    margin = 16

    def extend(image):
        return cv2.copyMakeBorder(to_8bit(image), margin, margin, margin, margin, cv2.BORDER_REPLICATE)

    theirs = _cv2_clone_in_place(extend(generated), extend(source), np.pad(mask, margin))[margin:-margin, margin:-margin]
    ours = np.round(poisson_blend(generated, source, mask) * 255).astype(int)
    assert np.abs(ours - theirs.astype(int)).max() <= POISSON_TOLERANCE_LEVELS


FEATHER_TOLERANCE = 1e-6
"""Feather vs OpenCV: our separable float64 blur against cv2.GaussianBlur in float64, then a
float32 result."""


@pytest.mark.parametrize("kernel", [5, 21, 31])
def test_feather_equals_the_brushnet_opencv_recipe(kernel):
    """Reference: BrushNet's evaluation blending, m_b = cv2.GaussianBlur(m, (k, k), 0),
    m' = 1 − (1 − m)(1 − m_b), out = m'·x_gen + (1 − m')·x; masks at a border and inside.
    Tolerance: FEATHER_TOLERANCE."""
    import cv2

    from engine.postprocess import feather

    generated, source = _images()
    for mask in (_box(10, 40, 12, 50), _box(0, 30, 40, 64)):
        binary = mask.astype(np.float64)
        blurred = cv2.GaussianBlur(binary, (kernel, kernel), 0)
        weight = (1 - (1 - binary) * (1 - blurred))[:, :, None]
        expected = weight * generated + (1 - weight) * source
        assert np.abs(feather(generated, source, mask, kernel) - expected).max() <= FEATHER_TOLERANCE


# --- vanilla and blended vs diffusers ---------------------------------------------------------

@pytest.fixture(scope="module")
def working_samples(demo):
    return [resize_to(sample, working_size(sample.size, 128)) for sample in demo[:2]]


def _diffusers_pipe(unet_name: str):
    """An inpaint pipeline built independently from freshly made tiny components (the same
    seeded weights as the engine's `tiny`), as a diffusers user would assemble it."""
    from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionInpaintPipeline

    from engine.models import tiny_components

    parts = tiny_components()
    for name in ("vae", "text_encoder", unet_name):
        parts[name].eval()
    pipe = StableDiffusionInpaintPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts[unet_name],
        scheduler=DDIMScheduler.from_config(parts["scheduler_config"]), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.pndm = PNDMScheduler.from_config(parts["scheduler_config"], skip_prk_steps=True)  # as SD ships PLMS
    return pipe


@pytest.mark.parametrize("options", [{}, {"strength": 0.6}, {"negative_prompt": "blurry"}, {"scheduler": "pndm"}],
                         ids=["default", "strength", "negative", "pndm"])
def test_vanilla_equals_diffusers_inpaint_pipeline(tiny_model, working_samples, options):
    """Reference: diffusers StableDiffusionInpaintPipeline with the 9-channel UNet, same
    seed and settings. Tolerance: exact in 8 bits (the stored images)."""
    from engine.runner import to_uint8
    from engine.techniques import TechniqueJob, get_technique

    pipe = _diffusers_pipe("inpaint_unet")
    options = dict(options)
    negative = options.pop("negative_prompt", "")
    if options.get("scheduler") == "pndm":
        pipe.scheduler = pipe.pndm
    technique = get_technique("vanilla")
    for k, sample in enumerate(working_samples):
        job = TechniqueJob(sample, technique.resolve_params(options), STEPS, 7.5, seed=20 + k, negative_prompt=negative)
        ours = technique.run(tiny_model, job).image
        theirs = pipe(prompt=sample.prompt, negative_prompt=negative or None, image=sample.image,
                      mask_image=sample.mask_image(), height=sample.size[1], width=sample.size[0],
                      strength=options.get("strength", 1.0), num_inference_steps=STEPS, guidance_scale=7.5,
                      generator=torch.Generator("cpu").manual_seed(20 + k), output_type="np").images[0]
        np.testing.assert_array_equal(np.asarray(to_uint8(ours)), np.asarray(to_uint8(theirs)))


@pytest.mark.parametrize("blend_start", [0.0, 0.5])
def test_blended_equals_diffusers_pipeline_with_a_4_channel_unet(tiny_model, blend_start, one_noise_draw):
    """Reference: diffusers StableDiffusionInpaintPipeline given the text-to-image UNet, which
    blends after every step as Blended Latent Diffusion does. Aligned: one noise tensor for
    the start and every background (diffusers' convention; ours draws fresh ε per step, so
    the test makes every draw return the first), the source latent passed in (ours is the
    posterior mean, diffusers would sample), blend_start p as strength 1 − p, and a mask on
    whole 8×8 blocks (diffusers' latent mask reads the top-left pixel, ours the centre).
    Tolerance: exact latents."""
    from engine.techniques import TechniqueJob, get_technique

    sample = make_sample("blocks", make_image(64, 64, seed=8), box_mask(64, 64, (16, 8, 48, 40)), "a red box")
    technique = get_technique("blended")
    job = TechniqueJob(sample, technique.resolve_params({"blend_start": blend_start}), STEPS, 7.5, seed=9)
    output = technique.run(tiny_model, job)
    z_src = output.extras["z_src"]

    pipe = _diffusers_pipe("txt2img_unet")
    theirs = pipe(prompt=sample.prompt, image=z_src, masked_image_latents=z_src, mask_image=sample.mask_image(),
                  height=64, width=64, strength=1.0 - blend_start, num_inference_steps=STEPS, guidance_scale=7.5,
                  generator=torch.Generator("cpu").manual_seed(9), output_type="latent").images
    assert torch.equal(output.latents, theirs)


# --- RePaint's schedule ---------------------------------------------------------------------

def _original_get_schedule_jump(t_T, jump_length, jump_n_sample):
    """RePaint's `get_schedule_jump` (andreas128/RePaint), written from the paper: time labels
    t_T−1 … −1; at each jump point (every j labels from 0, below t_T − j) with jumps left,
    go back up j labels, one at a time (n_sample = 1, no jump2/jump3)."""
    jumps = {j: jump_n_sample - 1 for j in range(0, t_T - jump_length, jump_length)}
    t, ts = t_T, []
    while t >= 1:
        t -= 1
        ts.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(jump_length):
                t += 1
                ts.append(t)
    return ts + [-1]


@pytest.mark.parametrize("steps", [1, 2, 6, 25, 50, 250])
@pytest.mark.parametrize("jump", [(1, 1), (1, 2), (2, 3), (5, 5), (10, 10), (3, 1), (49, 2), (300, 4)])
def test_repaint_schedule_matches_the_original_and_diffusers_counts(steps, jump):
    """Reference: RePaint's get_schedule_jump (above) and diffusers' RePaintScheduler counts.
    Tolerance: the exact sequence of transitions; the same UNet-call and transition counts."""
    from engine.techniques.repaint import repaint_schedule, unet_calls

    from diffusers import RePaintScheduler

    schedule = repaint_schedule(steps, *jump)
    states = [steps - 1 - tau for tau in _original_get_schedule_jump(steps, *jump)]
    assert schedule == list(zip(states[:-1], states[1:]))
    assert all(abs(a - b) == 1 and 0 <= min(a, b) and max(a, b) <= steps for a, b in schedule)
    assert schedule[-1] == (steps - 1, steps)  # the clean latent is reached once, at the very end

    scheduler = RePaintScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(steps, *jump)
    listed = scheduler.timesteps.tolist()
    calls = 1 + sum(b < a for a, b in zip(listed, listed[1:]))  # the first listed timestep is a call
    assert unet_calls(schedule) == calls and len(schedule) == len(listed)
