"""Differential Diffusion (`diffdiff`): the freezing schedule, exactly, on real latents of the
tiny model."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import ImageFilter

from engine.latents import LatentInpainting
from engine.params import ParamError
from engine.runner import inpaint
from engine.samples import make_sample, resize_to, working_size
from engine.techniques import TechniqueJob, get_technique
from engine.techniques.diffdiff import (
    change_map,
    denoise,
    denoise_steps,
    frozen_schedule,
    last_frozen_step,
    noised_sources,
)
from tests.conftest import make_image

STEPS = 4


@pytest.fixture(scope="module")
def working(demo):
    return resize_to(demo[0], working_size(demo[0].size, 128))


@pytest.fixture(scope="module")
def binary(working):
    return dataclasses.replace(working, mask=working.binary_mask.astype(np.float32))


@pytest.fixture(scope="module")
def feathered(binary):
    blurred = binary.mask_image().filter(ImageFilter.GaussianBlur(8))
    return dataclasses.replace(binary, mask=np.asarray(blurred, dtype=np.float32) / 255)


def _job(sample, seed=11, on_step=None, **params):
    return TechniqueJob(sample, get_technique("diffdiff").resolve_params(params), STEPS, 7.5, seed=seed, on_step=on_step)


def _observed(model, job):
    """The loop `run` uses, set up as `run` does, with the observer hook: (final latents,
    sources, latent change map, {i: (incoming, replaced)}, task)."""
    task = LatentInpainting(model, job, "txt2img")
    change = change_map(task, job.params["strength"])
    last = torch.from_numpy(last_frozen_step(change.numpy(), task.steps))
    seen = {}
    with torch.no_grad():
        sources = noised_sources(task, job.params["noise"])
        latents = denoise(task, last, sources, job.report, lambda i, a, b: seen.__setitem__(i, (a.clone(), b.clone())))
    return latents, sources, change, seen, task


def _entries(region, like):
    return region.expand_as(like)  # (1, 1, h, w) -> (1, 4, h, w)


def test_hand_worked_freezing_schedule():
    # m in {0, 0.25, 0.5, 1}, N = 4: frozen (latent := noised source) before steps i = 0..L,
    # L = N - ceil(mN); i = 4 is the final replacement by the clean z_src.
    schedule = frozen_schedule(np.array([0.0, 0.25, 0.5, 1.0]), 4)
    assert schedule.shape == (5, 4)
    frozen_steps = [np.flatnonzero(schedule[:, k]).tolist() for k in range(4)]
    assert frozen_steps == [[0, 1, 2, 3, 4], [0, 1, 2, 3], [0, 1, 2], [0]]
    # So m = 0 is never denoised, m = 0.25 once (from t_3), m = 0.5 twice (from t_2), m = 1 all 4.
    assert denoise_steps(np.array([0.0, 0.25, 0.5, 1.0]), 4).tolist() == [0, 1, 2, 4]
    assert denoise_steps(np.array([0.01, 0.3, 0.74, 0.76, 0.99]), 4).tolist() == [1, 2, 3, 4, 4]
    # float32 round-off does not move a value across a step boundary (0.8 -> 0.800000012).
    assert denoise_steps(np.float32(0.8), 50) == 40 and denoise_steps(np.float32(1) - np.float32(0.8), 50) == 10


def test_schedule_matches_the_paper_code_except_at_ties():
    """Their code: frozen at i = 0 (start from the noised source) and, for i = 1..N-1, where
    keep > i/N; nothing after the loop. Ours agrees off ties and is one step shorter at ties."""
    steps = 4

    def paper_code(m):
        keep = 1.0 - m
        return np.array([True] + [keep > i / steps for i in range(1, steps)] + [False])

    for m in (0.01, 0.1, 0.3, 0.6, 0.9, 0.99, 1.0):
        assert frozen_schedule(m, steps).tolist() == paper_code(m).tolist(), m
    for m in (0.0, 0.25, 0.5, 0.75):  # keep*N an integer: their `>` freezes one step less
        ours, theirs = frozen_schedule(m, steps), paper_code(m)
        assert ours.sum() == theirs.sum() + 1, m


def test_binary_map_background_is_the_noised_source_every_step_and_ends_as_z_src(tiny_model, binary):
    job = _job(binary)
    latents, sources, change, seen, task = _observed(tiny_model, job)
    assert torch.equal(latents, get_technique("diffdiff").run(tiny_model, job).latents)  # the hook saw `run`'s loop
    background, hole = _entries(change == 0, latents), _entries(change == 1, latents)
    assert background.any() and hole.any()
    assert sorted(seen) == list(range(STEPS + 1))
    for i in range(STEPS):
        incoming, replaced = seen[i]
        assert torch.equal(replaced[background], sources[i][background]), i
        if i == 0:  # the loop starts from the source noised to t_0 everywhere
            assert torch.equal(replaced, sources[0])
        else:  # the hole keeps what the previous step produced
            assert torch.equal(replaced[hole], incoming[hole]), i
            assert not torch.equal(replaced[hole], sources[i][hole]), i
    # After the last step the background is the clean source latent, bit for bit.
    assert torch.equal(latents[background], task.z_src[background])
    assert not torch.equal(latents[hole], task.z_src[hole])


def test_soft_map_is_not_thresholded_and_each_entry_follows_its_own_schedule(tiny_model, feathered, binary):
    job = _job(feathered)
    latents, sources, change, seen, task = _observed(tiny_model, job)
    values = change.numpy()
    assert ((values > 0.05) & (values < 0.95)).sum() > 20  # in-between values survive the resize
    schedule = torch.from_numpy(frozen_schedule(values, STEPS))  # (N+1, 1, 1, h, w)
    assert len(np.unique(last_frozen_step(values, STEPS))) == STEPS + 1  # every start step 0..4 occurs
    for i in range(STEPS + 1):
        incoming, replaced = seen[i]
        frozen = _entries(schedule[i], latents)
        assert torch.equal(replaced[frozen], sources[i][frozen]), i
        assert torch.equal(replaced[~frozen], incoming[~frozen]), i
    # The soft result differs from the binarised one, and in-between entries end neither as the
    # source nor as the binarised run's fully regenerated hole.
    soft = get_technique("diffdiff").run(tiny_model, job)
    hard = get_technique("diffdiff").run(tiny_model, _job(binary))
    assert torch.equal(soft.latents, latents)
    between = _entries(torch.from_numpy((values > 0.05) & (values < 0.95)), latents)
    assert not torch.equal(latents[between], hard.latents[between])
    assert not torch.equal(latents[between], task.z_src[between])
    assert np.abs(soft.image - hard.image).max() > 1e-3


@pytest.mark.parametrize("noise", ["fixed", "fresh"])
def test_one_noise_for_every_step_index_unless_fresh(tiny_model, binary, noise):
    """noise=fixed (the default, the authors' code): z^i = add_noise(z_src, ε, t_i) with one ε;
    noise=fresh: a new ε_i per index. ε is recovered from each z^i (float round-off: 1e-4)."""
    task = LatentInpainting(tiny_model, _job(binary, noise=noise), "txt2img")
    sources = noised_sources(task, noise)
    alphas = task.scheduler.alphas_cumprod[task.timesteps.long()]
    eps = [(z - alphas[i].sqrt() * task.z_src) / (1 - alphas[i]).sqrt() for i, z in enumerate(sources[:-1])]
    assert len(sources) == STEPS + 1 and torch.equal(sources[-1], task.z_src)
    for i in range(1, STEPS):
        gap = (eps[i] - eps[0]).abs().max()
        assert (gap < 1e-4) if noise == "fixed" else (gap > 0.1), (i, float(gap))


def test_default_noise_is_the_authors_fixed_noise():
    assert get_technique("diffdiff").resolve_params()["noise"] == "fixed"


def test_change_map_is_the_area_mean_of_the_soft_mask(tiny_model):
    # Left half 0.3; on the right one 8x8 block of 1 across two latent cells; the rest 0.
    mask = np.zeros((128, 128), dtype=np.float32)
    mask[:, :64] = 0.3
    mask[60:68, 96:104] = 1.0  # straddles latent rows 7 and 8 in column 12: each gets half
    sample = make_sample("ramp", make_image(128, 128), mask, "a test")
    task = LatentInpainting(tiny_model, _job(sample), "txt2img")
    change = change_map(task, 1.0)[0, 0].numpy()
    assert change.shape == (16, 16)
    np.testing.assert_allclose(change[:, :8], 0.3, rtol=1e-6)
    np.testing.assert_allclose(change[7:9, 12], [0.5, 0.5], rtol=1e-6)
    assert change[:, 8:].sum() == pytest.approx(1.0) and change[:7, 12].max() == 0
    np.testing.assert_allclose(change_map(task, 0.5)[0, 0].numpy(), change * 0.5, rtol=1e-6)


def test_unet_calls_and_progress(tiny_model, binary):
    technique = get_technique("diffdiff")
    seen = []
    full = technique.run(tiny_model, _job(binary, on_step=lambda done, total: seen.append((done, total))))
    assert full.cost.unet_calls == STEPS and full.cost.vae_encodes == 1 and full.cost.vae_decodes == 1
    assert seen == [(i, STEPS) for i in range(1, STEPS + 1)]
    # strength 0.5: the hole is denoised over the last ceil(0.5*4) = 2 steps; the first two
    # steps would be overwritten everywhere, so they are not run.
    seen.clear()
    half = technique.run(tiny_model, _job(binary, strength=0.5, on_step=lambda done, total: seen.append((done, total))))
    assert half.cost.unet_calls == 2 and seen == [(1, 2), (2, 2)]
    assert not torch.equal(half.latents, full.latents)


def test_same_seed_same_pixels_through_the_runner(tiny_model, demo):
    def image(seed):
        (result,) = inpaint(tiny_model, "diffdiff", demo[:1], seed=seed, steps=STEPS, errors="raise")
        assert result.cost.unet_calls == STEPS
        return np.asarray(result.image)

    first = image(5)
    np.testing.assert_array_equal(first, image(5))
    assert not np.array_equal(first, image(6))


def test_schema():
    technique = get_technique("diffdiff")
    assert technique.unet == "txt2img" and technique.resolve_params()["strength"] == 1.0
    for bad in ("0", "1.5"):
        with pytest.raises(ParamError, match="strength"):
            technique.resolve_params({"strength": bad})
