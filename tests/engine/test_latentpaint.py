"""`latentpaint`: training-free context propagation (engine/techniques/latentpaint.py).

All on the real tiny model (2 down blocks: 16x16 -> 8x8 latent grids at 128 px, a mid block,
2 up blocks), 4 steps, one demo sample with a large mask."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.latents import encode_image, image_to_tensor, latent_mask
from engine.runner import inpaint
from engine.samples import resize_to, working_size
from engine.techniques import TechniqueJob, get_technique
from engine.techniques.latentpaint import propagated_steps, select_blocks

STEPS = 4


@pytest.fixture(scope="module")
def sample(demo):
    return resize_to(demo[0], working_size(demo[0].size, 128))


@pytest.fixture(scope="module")
def unet(tiny_model):
    return tiny_model.unet("txt2img")


def _run(model, sample, technique="latentpaint", guidance=7.5, on_step=None, **params):
    chosen = get_technique(technique)
    job = TechniqueJob(sample, chosen.resolve_params(params), STEPS, guidance, seed=11, on_step=on_step)
    return chosen.run(model, job)


def _hooked_modules(unet):
    return [name or "<unet>" for name, module in unet.named_modules() if module._forward_hooks]


def _keep(sample, model, size):
    """The known region (latent mask 0) at `size`, computed independently of the technique."""
    z_src = encode_image(model, image_to_tensor(sample.image, model))
    mask = latent_mask(sample, tuple(z_src.shape[-2:]), model)
    return F.interpolate(mask, size=size, mode="nearest-exact") == 0  # the centre rule, as the technique


@pytest.fixture
def observe(unet):
    """Temporary forward hooks (name -> list of outputs); always removed after the test."""
    handles = []

    def attach(names, hook_factory=None):
        seen = {name: [] for name in names}
        modules = dict(unet.named_modules())
        for name in names:
            hook = hook_factory(name) if hook_factory else (lambda n: lambda m, a, out: seen[n].append(out))(name)
            handles.append(modules[name].register_forward_hook(hook))
        return seen

    yield attach
    for handle in handles:
        handle.remove()


def _tensors(output):
    if isinstance(output, torch.Tensor):
        return [output] if output.ndim == 4 else []
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors(item)]
    return []


def test_hooks_are_removed_and_later_techniques_are_unaffected(tiny_model, sample, unet):
    before = _run(tiny_model, sample, "blended")
    _run(tiny_model, sample, blocks="all")
    assert _hooked_modules(unet) == []
    after = _run(tiny_model, sample, "blended")
    np.testing.assert_array_equal(before.image, after.image)
    assert torch.equal(before.latents, after.latents)


def test_hooks_are_removed_when_the_progress_callback_raises(tiny_model, sample, unet):
    def abort(done, total):
        if done == 2:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        _run(tiny_model, sample, blocks="all", on_step=abort)
    assert _hooked_modules(unet) == []


def test_hooks_are_removed_when_the_forward_raises_inside_a_hooked_block(tiny_model, sample, unet, observe):
    class Boom(Exception):
        pass

    def factory(name):
        def hook(module, args, output):
            raise Boom(name)

        return hook

    observe(["up_blocks.1"], factory)  # runs after the technique's (prepended) hooks
    with pytest.raises(Boom):
        _run(tiny_model, sample, blocks="all")
    assert _hooked_modules(unet) == ["up_blocks.1"]  # only the test's own observer is left


def test_generation_half_equals_known_pass_in_the_known_region_of_hooked_blocks(tiny_model, sample, unet, observe):
    """The defining mechanism, observed inside a real run: in every output tensor of every
    hooked block (down-block skips included), the generation half equals the known pass
    exactly where the resized latent mask is 0, and differs from it in the hole."""
    hooked = [name for name, _ in select_blocks(unet, "mid+up")]
    assert hooked == ["mid_block", "up_blocks.0", "up_blocks.1"]
    not_hooked = [f"down_blocks.{k}" for k in range(len(unet.down_blocks))]
    seen = observe(hooked + not_hooked)
    _run(tiny_model, sample, blocks="mid+up")

    checked_sizes = set()
    for name in hooked + not_hooked:
        doubled = [out for out in seen[name] if _tensors(out)[0].shape[0] == 4]  # [gen u, gen c, known u, known c]
        assert len(doubled) == STEPS, name
        equal_in_known = []
        for output in doubled:
            for tensor in _tensors(output):
                keep = _keep(sample, tiny_model, tuple(tensor.shape[-2:])).expand(2, *tensor.shape[1:])
                assert keep.any() and (~keep).any()
                generation, known = tensor[:2], tensor[2:]
                equal_in_known.append(torch.equal(generation[keep], known[keep]))
                if name in hooked:
                    assert not torch.equal(generation[~keep], known[~keep]), name  # the hole is generated
                    checked_sizes.add(tuple(tensor.shape[-2:]))
        if name in hooked:
            assert all(equal_in_known), name
        else:
            assert not all(equal_in_known), name  # an unhooked block keeps its own features
    assert checked_sizes == {(8, 8), (16, 16)}  # resized masks at both resolutions


def test_down_blocks_overwrite_their_skip_residuals_too(tiny_model, sample, unet, observe):
    seen = observe(["down_blocks.0", "down_blocks.1"])
    _run(tiny_model, sample, blocks="down")
    for name, outputs in seen.items():
        for hidden, residuals in outputs:
            assert hidden.shape[0] == 4
            for tensor in (hidden, *residuals):
                keep = _keep(sample, tiny_model, tuple(tensor.shape[-2:])).expand(2, *tensor.shape[1:])
                assert torch.equal(tensor[:2][keep], tensor[2:][keep]), name
    assert {r.shape[-1] for _, residuals in seen["down_blocks.0"] for r in residuals} == {8, 16}


def test_known_pass_is_the_source_noised_with_the_background_noise(tiny_model, sample, unet):
    """The UNet's input: the known half is add_noise(z_src, ε, t_i) with the ε of the current
    background, so from step 1 on it equals the generation half outside the mask."""
    inputs = []
    handle = unet.register_forward_pre_hook(lambda m, args: inputs.append(args[0].clone()))
    try:
        output = _run(tiny_model, sample)
    finally:
        handle.remove()
    assert [batch.shape[0] for batch in inputs] == [4] * STEPS
    keep = _keep(sample, tiny_model, (16, 16)).expand(1, 4, 16, 16)
    z_src = output.extras["z_src"]
    scheduler = tiny_model.new_scheduler()
    scheduler.set_timesteps(STEPS)
    for i, batch in enumerate(inputs):
        assert torch.equal(batch[0], batch[1]) and torch.equal(batch[2], batch[3])  # CFG copies
        generation, known = batch[:1], batch[2:3]
        if i == 0:  # pure noise ε: known = √ᾱ·z_src + √(1-ᾱ)·ε
            expected = scheduler.add_noise(z_src, generation, scheduler.timesteps[:1])
            torch.testing.assert_close(known, expected, rtol=0, atol=1e-6)
        else:
            assert torch.equal(generation[keep], known[keep])
            assert not torch.equal(generation[~keep], known[~keep])


def test_propagation_changes_the_result_and_zero_is_exactly_blended(tiny_model, sample):
    blended = _run(tiny_model, sample, "blended")
    off = _run(tiny_model, sample, propagate_until=0.0)
    on = _run(tiny_model, sample)
    half = _run(tiny_model, sample, propagate_until=0.5)
    np.testing.assert_array_equal(off.image, blended.image)
    assert torch.equal(off.latents, blended.latents)
    assert not np.array_equal(on.image, blended.image)
    assert not np.array_equal(half.image, blended.image) and not np.array_equal(half.image, on.image)


@pytest.mark.parametrize(("until", "guidance", "calls", "batches"), [
    (1.0, 7.5, 2 * STEPS, [4] * STEPS),
    (0.5, 7.5, STEPS + 2, [4, 4, 2, 2]),
    (0.0, 7.5, STEPS, [2] * STEPS),
    (1.0, 1.0, 2 * STEPS, [2] * STEPS),  # no CFG: [gen, known]
])
def test_unet_call_cost_is_counted_honestly(tiny_model, sample, unet, until, guidance, calls, batches):
    seen = []
    handle = unet.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        output = _run(tiny_model, sample, guidance=guidance, propagate_until=until)
    finally:
        handle.remove()
    assert seen == batches  # one forward per step, doubled while propagating
    assert output.cost.unet_calls == calls == STEPS + propagated_steps(STEPS, until)


def test_propagated_steps_floor():
    assert [propagated_steps(4, p) for p in (0.0, 0.24, 0.25, 0.5, 0.99, 1.0)] == [0, 0, 1, 2, 3, 4]
    assert propagated_steps(100, 0.29) == 29


@pytest.mark.parametrize("blocks", ["mid+up", "all"])
def test_final_latent_is_the_source_latent_outside_the_mask(tiny_model, sample, blocks):
    output = _run(tiny_model, sample, blocks=blocks)
    z_src = encode_image(tiny_model, image_to_tensor(sample.image, tiny_model))
    keep = _keep(sample, tiny_model, tuple(z_src.shape[-2:])).expand_as(z_src)
    assert torch.equal(output.latents[keep], z_src[keep])
    assert not torch.equal(output.latents[~keep], z_src[~keep])


def test_same_seed_same_pixels_through_the_runner(tiny_model, demo):
    seen = []

    def images(seed, **kw):
        return [np.asarray(r.image) for r in inpaint(tiny_model, "latentpaint", demo[:1], seed=seed, steps=STEPS,
                                                      errors="raise", **kw)]

    first = images(5, on_step=seen.append)
    again, other = images(5), images(6)
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other[0])
    assert [(p.step, p.steps) for p in seen] == [(s, STEPS) for s in range(1, STEPS + 1)]
