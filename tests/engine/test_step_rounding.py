"""Fractions of the denoising steps become step counts through one rule, ⌊f·N⌋ taken on the
decimal value the user typed (issue 13, item 4), and progressive shrinking is chunked over
the steps that actually run (item 5)."""

import math
from fractions import Fraction

import pytest

from engine.params import fraction_of_steps
from engine.samples import make_sample
from engine.techniques import TechniqueJob, get_technique
from engine.techniques.blended import shrink_kernels, shrink_schedule
from tests.conftest import box_mask, make_image

FRACTIONS = [Fraction(k, 100) for k in range(1, 101)]  # 0.01 … 1.00
STEP_COUNTS = [10, 20, 25, 30, 40, 50, 100]


@pytest.fixture(scope="module")
def small_sample():
    """64×64, a block-aligned hole: a cheap sample at the tiny model's latent scale."""
    return make_sample("small", make_image(64, 64, seed=3), box_mask(64, 64, (16, 24, 48, 56)), "a small thing")


def test_fraction_of_steps_is_the_exact_floor_on_the_whole_grid():
    for fraction in FRACTIONS:
        for steps in STEP_COUNTS:
            value = float(fraction)  # what a user's "0.58" becomes
            assert fraction_of_steps(value, steps) == math.floor(fraction * steps), (value, steps)
            complement = 1.0 - value  # post-conditioning starts at ⌊(1 − s)·N⌋
            assert fraction_of_steps(complement, steps) == math.floor((1 - fraction) * steps), (value, steps)


def test_plain_truncation_is_off_on_this_grid():
    """The reason for the helper: plain float arithmetic misses the exact floor on grid
    points (so the grid test above can fail): int(f·N) on 4, ⌊(1 − f)·N⌋ on 33."""
    off = [(f, n) for f in FRACTIONS for n in STEP_COUNTS if int(float(f) * n) != math.floor(f * n)]
    off_complement = [(f, n) for f in FRACTIONS for n in STEP_COUNTS
                      if math.floor((1.0 - float(f)) * n) != math.floor((1 - f) * n)]
    assert (Fraction(58, 100), 50) in off and (Fraction(8, 10), 10) in off_complement


@pytest.mark.parametrize("technique", ["blended", "tdpaint"])
def test_blend_start_058_at_50_steps_runs_21_unet_calls(tiny_model, small_sample, technique):
    """blend_start = 0.58, N = 50: ⌊29⌋ steps skipped, 21 run (int() made it 22)."""
    tech = get_technique(technique)
    job = TechniqueJob(small_sample, tech.resolve_params({"blend_start": 0.58}), 50, 7.5, seed=0)
    assert tech.run(tiny_model, job).cost.unet_calls == 21


@pytest.mark.parametrize("strength, rerun", [(0.8, 8), (0.9, 9)])
def test_post_condition_reruns_the_rounded_tail(tiny_model, small_sample, strength, rerun):
    """post_strength s at N = 10 re-runs N − ⌊(1 − s)·N⌋ steps: 8 for s = 0.8 (floor of the
    float 1.999… made it 9)."""
    from engine.postprocess import postprocess

    tech = get_technique("blended")
    params = tech.resolve_params({"post_condition": True, "post_strength": strength})
    job = TechniqueJob(small_sample, params, 10, 7.5, seed=0)
    base = tech.run(tiny_model, job)
    calls_before = base.cost.unet_calls
    assert postprocess(tiny_model, job, base).cost.unet_calls - calls_before == rerun


def _authors_chunks(steps: int, start: int, dilations: int) -> list[int]:
    """Blended Latent Diffusion's progressive shrinking, chunked over the steps left after
    the skipped ones: chunks of ⌊M/(n+1)⌋+1 of the M = N − start steps that run."""
    remaining = steps - start
    chunk = remaining // (dilations + 1) + 1
    return [min(j // chunk, dilations) for j in range(remaining)]


def test_progressive_shrink_is_chunked_over_the_steps_that_run():
    # N = 20, n = 2, blend_start 0.5: 10 steps run, chunks of 4: 5×5, 5×5, 5×5, 5×5, 3×3 ×4, exact ×2.
    schedule = shrink_schedule(20, 2, start=10)
    assert [shrink_kernels(2)[k] for k in schedule] == [5] * 4 + [3] * 4 + [1] * 2
    for steps in (4, 10, 20, 50):
        for dilations in (1, 2, 3):
            for start in range(0, steps - 1, 3):
                expected = _authors_chunks(steps, start, dilations)
                expected[-1] = dilations  # our documented deviation: the last step uses the exact mask
                assert shrink_schedule(steps, dilations, start=start) == expected, (steps, dilations, start)


def test_progressive_shrink_with_blend_start_uses_every_dilation(tiny_model, small_sample):
    """The running loop records the kernel of the mask each step blended with: with
    blend_start 0.5 at N = 20 the 5×5 dilation is used (before, it never was)."""
    tech = get_technique("blended")
    job = TechniqueJob(small_sample, tech.resolve_params({"blend_start": 0.5, "progressive_shrink": 2}), 20, 7.5, 0)
    output = tech.run(tiny_model, job)
    assert output.extras.get("mask_kernels") == [5] * 4 + [3] * 4 + [1] * 2
    assert output.cost.unet_calls == 10
