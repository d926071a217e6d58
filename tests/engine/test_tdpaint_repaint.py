"""Zero-shot TD-Paint and RePaint: their defining invariants, on the real tiny model.

TD-Paint: the background fed to the UNet is z_src noised to min(t, c), so c >= t_0 is
Blended Latent Diffusion bit for bit. RePaint: the resampling schedule of the original
`get_schedule_jump`, forward-noising jumps that cost no UNet call, and jump_n_sample = 1
being Blended Latent Diffusion."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine.latents import LatentInpainting, encode_image, image_to_tensor, latent_mask
from engine.runner import inpaint
from engine.samples import resize_to, working_size
from engine.techniques import TechniqueJob, get_technique
from engine.techniques.repaint import check_step_spacing, repaint_schedule, resample, unet_calls
from engine.techniques.tdpaint import denoise

STEPS = 4
SEED = 7


@pytest.fixture(scope="module")
def sample(demo):
    return demo[0]


@pytest.fixture(scope="module")
def working(sample):
    return resize_to(sample, working_size(sample.size, 128))


@pytest.fixture(scope="module")
def blended(tiny_model, sample):
    """Blended Latent Diffusion through the runner: the reference both techniques reduce to."""
    (result,) = inpaint(tiny_model, "blended", [sample], seed=SEED, steps=STEPS, errors="raise")
    return result


def _pixels(tiny_model, technique, sample, steps=STEPS, **params):
    (result,) = inpaint(tiny_model, technique, [sample], seed=SEED, steps=steps, params=params, errors="raise")
    return result


def _job(technique, working, steps=STEPS, **params):
    return TechniqueJob(working, get_technique(technique).resolve_params(params), steps, 7.5, seed=SEED)


def _keep(tiny_model, working):
    """z_src and the boolean 'keep' region over the latent, computed independently of the techniques."""
    z_src = encode_image(tiny_model, image_to_tensor(working.image, tiny_model))
    keep = (latent_mask(working, tuple(z_src.shape[-2:]), tiny_model) == 0).expand_as(z_src)
    assert keep.any() and (~keep).any()
    return z_src, keep


def _noise_stream(task, seed=SEED):
    """The generator's draws in order, regenerated independently of the technique code."""
    generator = torch.Generator("cpu").manual_seed(seed)
    while True:
        yield torch.randn(task.shape, generator=generator, dtype=torch.float32)


def _noised(task, eps, timestep):
    return task.scheduler.add_noise(task.z_src, eps, torch.tensor([timestep]))


# --- TD-Paint -------------------------------------------------------------------------------


def test_tdpaint_with_c_at_or_above_t0_is_blended_and_c_50_is_not(tiny_model, sample, blended):
    # With 4 steps t_0 = 751: "inf" (parsed from the string) and 1000 both leave every
    # background at t_{i+1}, so the pixels are blended's exactly; c = 50 changes them.
    reference = np.asarray(blended.image)
    for c in ("inf", 1000.0):
        result = _pixels(tiny_model, "tdpaint", sample, t_bg=c)
        np.testing.assert_array_equal(np.asarray(result.image), reference)
        assert result.cost.unet_calls == blended.cost.unet_calls == STEPS
    assert not np.array_equal(np.asarray(_pixels(tiny_model, "tdpaint", sample, t_bg=50.0).image), reference)


@pytest.mark.parametrize("c", [50.0, 0.0])
def test_tdpaint_final_background_latent_is_exactly_the_source_latent(tiny_model, working, c):
    output = get_technique("tdpaint").run(tiny_model, _job("tdpaint", working, t_bg=c))
    z_src, keep = _keep(tiny_model, working)
    assert torch.equal(output.latents[keep], z_src[keep])
    assert not torch.equal(output.latents[~keep], z_src[~keep])  # the hole was generated
    assert output.cost.unet_calls == STEPS


@pytest.mark.parametrize("c", [50.0, 0.0])
def test_tdpaint_background_is_the_source_noised_to_min_t_c_at_every_step(tiny_model, working, c):
    """At every index k the background the UNet sees is add_noise(z_src, ε, min(t_k, c)),
    with ε the k-th draw of the seeded generator (the initial noise at k = 0): c = 50 with
    timesteps 751, 501, 251, 1 gives 50, 50, 50, 1 (blended would give 751, 501, 251, 1);
    c = 0 gives the clean z_src throughout."""
    task = LatentInpainting(tiny_model, _job("tdpaint", working, t_bg=c), "txt2img")
    assert [int(t) for t in task.timesteps] == [751, 501, 251, 1]
    seen = {}
    denoise(task, c, observer=lambda index, latents: seen.setdefault(index, latents.clone()))
    assert sorted(seen) == [0, 1, 2, 3, 4]

    keep = (task.mask == 0).expand(task.shape)
    draws = _noise_stream(task)
    initial = next(draws)
    for index in range(STEPS):
        eps = initial if index == 0 else next(draws)
        t_bg = min(int(task.timesteps[index]), int(c))
        expected = task.z_src if t_bg == 0 else _noised(task, eps, t_bg)
        assert torch.equal(seen[index][keep], expected[keep]), index
    assert torch.equal(seen[4][keep], task.z_src[keep])
    # The first call sees the generated region as pure noise, the background as above.
    assert torch.equal(seen[0][~keep], (initial * task.scheduler.init_noise_sigma)[~keep])


def test_tdpaint_parameters():
    schema = get_technique("tdpaint").full_schema
    assert schema.get("t_bg").parse("inf", technique="tdpaint") == float("inf")
    assert schema.get("t_bg").default == 50.0
    with pytest.raises(ValueError):
        schema.resolve({"t_bg": -1.0}, technique="tdpaint")


# --- RePaint: the schedule ------------------------------------------------------------------


def _path(*stops):
    """Transitions (from, to) walking one index at a time through the given stops."""
    states = [stops[0]]
    for stop in stops[1:]:
        step = 1 if stop > states[-1] else -1
        states += list(range(states[-1] + step, stop + step, step))
    return list(zip(states[:-1], states[1:]))


def test_repaint_schedule_50_steps_10_10_by_hand():
    # Jump points are the original's tau = 0, 10, 20, 30 (tau < N - j = 40): indices 49, 39,
    # 29, 19. Down to 19, then 9 times up to 9 and back; on to 29, 9 times 19 <-> 29; and so
    # on; the final step 49 -> 50 comes once, after the last round.
    expected = _path(0, 19, *[9, 19] * 9, 29, *[19, 29] * 9, 39, *[29, 39] * 9, 49, *[39, 49] * 9, 50)
    schedule = repaint_schedule(50, 10, 10)
    assert schedule == expected
    downs = [pair for pair in schedule if pair[1] > pair[0]]
    assert len(downs) == unet_calls(schedule) == 410
    assert len(schedule) - len(downs) == 360


def test_repaint_schedule_50_steps_5_5():
    stops = [0]
    for point in range(9, 50, 5):  # indices 9, 14, ..., 49 (tau = 40, 35, ..., 0)
        stops += [point, *[point - 5, point] * 4]
    expected = _path(*stops, 50)
    schedule = repaint_schedule(50, 5, 5)
    assert schedule == expected
    assert unet_calls(schedule) == 230 and len(schedule) - 230 == 180


# The cross-check against RePaint's own get_schedule_jump: tests/engine/test_peer_crosschecks.py.


def test_repaint_schedule_counts_from_the_paper_setting():
    schedule = repaint_schedule(250, 10, 10)
    assert (len(schedule), unet_calls(schedule)) == (4570, 2410)
    assert repaint_schedule(50, 10, 1) == _path(0, 50)


# --- RePaint: the DDIM step revisited after jumps -------------------------------------------


def test_ddim_step_from_each_index_lands_on_the_next_timestep(tiny_model):
    """Given the true noise, a deterministic DDIM step from add_noise(x0, ε, t_i) gives
    add_noise(x0, ε, t_{i+1}) (ᾱ of timestep 0 after the last): so a step from index i lands
    on index i+1 however often it is revisited. 6 steps do not divide 1000 (stride 166)."""
    scheduler = tiny_model.new_scheduler()
    scheduler.set_timesteps(6)
    timesteps = [int(t) for t in scheduler.timesteps]
    check_step_spacing(SimpleNamespace(scheduler=scheduler, timesteps=scheduler.timesteps))
    generator = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 1, 4, 8, 8, generator=generator)
    for i, t in enumerate(timesteps):
        x_t = scheduler.add_noise(x0, eps, torch.tensor([t]))
        for _ in range(2):  # a revisit steps exactly as the first visit
            stepped = scheduler.step(eps, t, x_t).prev_sample
            if i + 1 < len(timesteps):
                target = scheduler.add_noise(x0, eps, torch.tensor([timesteps[i + 1]]))
            else:
                target = scheduler.add_noise(x0, eps, torch.tensor([0]))
            torch.testing.assert_close(stepped, target, rtol=1e-5, atol=1e-5)


def test_unevenly_spaced_timesteps_are_refused(tiny_model):
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config({**tiny_model.scheduler_config, "timestep_spacing": "trailing"})
    scheduler.set_timesteps(6)  # 999, 832, 666, ...: DDIM's step of 166 would miss them
    with pytest.raises(ValueError, match="evenly spaced"):
        check_step_spacing(SimpleNamespace(scheduler=scheduler, timesteps=scheduler.timesteps))


# --- RePaint: runs on the tiny model ----------------------------------------------------------


def test_repaint_without_resampling_is_blended(tiny_model, sample, blended):
    result = _pixels(tiny_model, "repaint", sample, jump_length=1, jump_n_sample=1)
    assert result.cost.unet_calls == blended.cost.unet_calls == STEPS
    np.testing.assert_array_equal(np.asarray(result.image), np.asarray(blended.image))


def test_repaint_transitions_follow_the_schedule_exactly(tiny_model, working):
    """Every transition of (4 steps, j = 1, r = 2), against the seeded noise stream: a down
    step leaves the background at add_noise(z_src, ε, t_to) (clean at the end); an up step is
    √(ᾱ'/ᾱ)·z + √(1−ᾱ'/ᾱ)·ε on the whole latent, with no UNet call."""
    schedule = repaint_schedule(STEPS, 1, 2)
    task = LatentInpainting(tiny_model, _job("repaint", working, jump_length=1, jump_n_sample=2), "txt2img")
    seen = []
    final = resample(task, schedule, observer=lambda a, b, latents: seen.append((a, b, latents.clone())))
    assert [(a, b) for a, b, _ in seen] == schedule
    assert task.cost.unet_calls == unet_calls(schedule) == 7

    keep = (task.mask == 0).expand(task.shape)
    abar = task.scheduler.alphas_cumprod.double()
    draws = _noise_stream(task)
    previous = next(draws) * task.scheduler.init_noise_sigma
    for start, end, latents in seen:
        if end > start:
            if end == STEPS:
                assert torch.equal(latents[keep], task.z_src[keep])
            else:
                expected = _noised(task, next(draws), int(task.timesteps[end]))
                assert torch.equal(latents[keep], expected[keep]), (start, end)
        else:
            ratio = abar[int(task.timesteps[end])] / abar[int(task.timesteps[start])]
            expected = (ratio.sqrt() * previous.double() + (1 - ratio).sqrt() * next(draws).double()).float()
            torch.testing.assert_close(latents, expected, rtol=0, atol=1e-5)
        previous = latents
    z_src, keep_independent = _keep(tiny_model, working)
    assert torch.equal(final[keep_independent], z_src[keep_independent])


def test_repaint_end_to_end_progress_cost_and_determinism(tiny_model, sample):
    seen = []
    params = {"jump_length": 2, "jump_n_sample": 2}
    (first,) = inpaint(tiny_model, "repaint", [sample], seed=SEED, steps=6, params=params, on_step=seen.append,
                       errors="raise")
    expected_calls = unet_calls(repaint_schedule(6, 2, 2))
    assert expected_calls == 10  # 6 steps + 2 jump points (indices 5, 3) x 2 indices
    assert first.cost.unet_calls == expected_calls
    assert [(p.step, p.steps) for p in seen] == [(k, expected_calls) for k in range(1, expected_calls + 1)]
    (again,) = inpaint(tiny_model, "repaint", [sample], seed=SEED, steps=6, params=params, errors="raise")
    np.testing.assert_array_equal(np.asarray(first.image), np.asarray(again.image))
    (other,) = inpaint(tiny_model, "repaint", [sample], seed=SEED + 1, steps=6, params=params, errors="raise")
    assert not np.array_equal(np.asarray(first.image), np.asarray(other.image))


def test_repaint_final_background_latent_is_exactly_the_source_latent(tiny_model, working):
    output = get_technique("repaint").run(tiny_model, _job("repaint", working, jump_length=2, jump_n_sample=2))
    z_src, keep = _keep(tiny_model, working)
    assert torch.equal(output.latents[keep], z_src[keep])
    assert not torch.equal(output.latents[~keep], z_src[~keep])
    assert output.cost.unet_calls == unet_calls(repaint_schedule(STEPS, 2, 2)) == 6
    assert output.extras["noising_steps"] == 2
