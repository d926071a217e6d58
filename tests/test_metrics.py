import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from engine.metrics import METRICS, background_mse, background_psnr
from engine.runner import inpaint
from engine.samples import resize_to, working_size


def _case(seed=0, h=24, w=32):
    rng = np.random.default_rng(seed)
    source = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    output = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[5:15, 8:20] = True
    return output, source, mask


def _mse_by_loops(output, source, mask):
    """Independent computation: plain Python over every unmasked pixel and channel."""
    total, count = 0.0, 0
    for y in range(source.shape[0]):
        for x in range(source.shape[1]):
            if mask[y, x]:
                continue
            for c in range(3):
                total += (int(output[y, x, c]) / 255 - int(source[y, x, c]) / 255) ** 2
                count += 1
    return total / count


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_background_mse_equals_an_independent_loop(seed):
    output, source, mask = _case(seed)
    assert background_mse(output, source, mask) == pytest.approx(_mse_by_loops(output, source, mask), rel=1e-12)


def test_background_psnr_equals_skimage_on_the_unmasked_pixels():
    output, source, mask = _case(3)
    keep = ~mask
    expected = peak_signal_noise_ratio(source[keep], output[keep], data_range=255)
    assert background_psnr(output, source, mask) == pytest.approx(expected, rel=1e-9)


def test_changes_inside_the_mask_do_not_count_and_identical_background_is_zero():
    output, source, mask = _case(4)
    pasted = np.where(mask[:, :, None], output, source)
    assert background_mse(pasted, source, mask) == 0.0
    assert background_psnr(pasted, source, mask) == math.inf


def test_brushbench_convention_is_three_times_ours():
    output, source, mask = _case(5)
    keep = ~mask
    diff = (output.astype(float) - source.astype(float)) / 255
    brushbench = (diff**2).sum(axis=2)[keep].sum() / keep.sum()
    assert brushbench == pytest.approx(3 * background_mse(output, source, mask))


def test_float_and_uint8_inputs_agree():
    output, source, mask = _case(6)
    assert background_mse(output / 255.0, source / 255.0, mask) == pytest.approx(background_mse(output, source, mask))


def test_shape_mismatch_and_full_mask_are_errors():
    output, source, mask = _case(7)
    with pytest.raises(ValueError, match="shape"):
        background_mse(output[:10], source, mask)
    with pytest.raises(ValueError, match="whole image"):
        background_mse(output, source, np.ones_like(mask))


def test_runner_metrics_are_those_of_the_saved_image(tiny_model, demo):
    """Stored numbers must be recomputable from the stored files."""
    sample = demo[0]
    result = next(inpaint(tiny_model, "blended", [sample], steps=2))
    working = resize_to(sample, working_size(sample.size, tiny_model.resolution))
    recomputed = background_mse(np.asarray(result.image), np.asarray(working.image), working.binary_mask)
    assert result.metrics["bg_mse"] == recomputed


def test_every_metric_has_a_direction_and_description():
    for info in METRICS.values():
        assert info.description and isinstance(info.higher_is_better, bool)
    assert METRICS["bg_mse"].higher_is_better is False and METRICS["bg_psnr"].higher_is_better is True
