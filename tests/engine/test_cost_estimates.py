"""Each technique owns its UNet-call estimate (torch-free, the loops' rounding helpers); the
estimate equals what the loop measured, exactly wherever it says exact (issue 12, item 7)."""

import pytest

from engine.postprocess import postprocess
from engine.samples import make_sample
from engine.techniques import TechniqueJob, estimate_unet_calls, get_technique, technique_names
from tests.conftest import box_mask, make_image

CASES = {
    "vanilla": [{}, {"strength": 0.58}, {"scheduler": "pndm"}],
    "blended": [{}, {"blend_start": 0.58}, {"blend_start": 0.3, "progressive_shrink": 2}],
    "tdpaint": [{}, {"blend_start": 0.58}],
    "diffdiff": [{}, {"strength": 0.45}],
    "latentpaint": [{}, {"propagate_until": 0.3}],
    "repaint": [{"jump_length": 2, "jump_n_sample": 2}, {"jump_length": 3, "jump_n_sample": 3}],
}


@pytest.fixture(scope="module")
def small_sample():
    return make_sample("small", make_image(64, 64, seed=3), box_mask(64, 64, (16, 24, 48, 56)), "a small thing")


def test_every_technique_has_cases_here():
    assert set(CASES) == set(technique_names())


@pytest.mark.parametrize("post", [False, True], ids=["plain", "post_condition"])
@pytest.mark.parametrize("steps", [10])
@pytest.mark.parametrize("name", sorted(CASES))
def test_estimate_equals_the_measured_unet_calls(tiny_model, small_sample, name, steps, post):
    technique = get_technique(name)
    for given in CASES[name]:
        given = dict(given, post_condition=post, post_strength=0.8)  # 0.8 at N = 10: the rounding case
        params = technique.resolve_params(given)
        job = TechniqueJob(small_sample, params, steps, 7.5, seed=0)
        measured = postprocess(tiny_model, job, technique.run(tiny_model, job)).cost.unet_calls
        estimate, exact = estimate_unet_calls(name, given, steps)
        if exact:
            assert estimate == measured, (given, steps)
        else:  # an upper bound that the mask or sampler may undercut
            assert measured <= estimate <= measured + 1, (given, steps)
