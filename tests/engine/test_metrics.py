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


# --- background SSIM, ring metrics, sample_metrics ---------------------------------------------

from skimage.metrics import structural_similarity  # noqa: E402

from engine.metrics.background import (  # noqa: E402
    background_ssim,
    ring_mask,
    ring_mse,
    ring_psnr,
    sample_metrics,
    ssim_region,
)


def _smooth_case(seed=0, h=40, w=48):
    """Correlated images (SSIM is uninformative on white noise): a gradient plus noise, and an
    output that is a noisier, slightly shifted copy."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w, y / h, (x + y) / (w + h)], axis=2)
    source = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
    output = np.clip(base + 0.03 + rng.normal(0, 0.08, base.shape), 0, 1)
    return (output * 255).round().astype(np.uint8), (source * 255).round().astype(np.uint8)


def _ssim_by_windows(output, source, mask):
    """Independent computation: Wang et al.'s formula evaluated window by window with an explicit
    11×11 Gaussian (σ 1.5, normalised), averaged over the pixels whose window lies inside the
    image and sees no masked pixel (found by looping)."""
    out, src = output / 255.0, source / 255.0
    k = np.arange(-5, 6)
    g = np.exp(-(k**2) / (2 * 1.5**2))
    weights = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    h, w = mask.shape
    for y in range(5, h - 5):
        for x in range(5, w - 5):
            if mask[y - 5 : y + 6, x - 5 : x + 6].any():
                continue
            for c in range(3):
                a, b = out[y - 5 : y + 6, x - 5 : x + 6, c], src[y - 5 : y + 6, x - 5 : x + 6, c]
                ma, mb = (weights * a).sum(), (weights * b).sum()
                va, vb = (weights * a * a).sum() - ma**2, (weights * b * b).sum() - mb**2
                cov = (weights * a * b).sum() - ma * mb
                values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


@pytest.mark.parametrize("shape", ["box", "corner", "two"])
def test_background_ssim_equals_an_independent_window_loop(shape):
    output, source = _smooth_case(1)
    mask = np.zeros(source.shape[:2], bool)
    if shape == "box":
        mask[12:25, 15:30] = True
    elif shape == "corner":
        mask[:9, :14] = True
    else:
        mask[3:8, 30:45] = True
        mask[28:36, 5:12] = True
    value = background_ssim(output, source, mask)
    assert 0.2 < value < 0.99  # a real, informative value
    assert value == pytest.approx(_ssim_by_windows(output, source, mask), rel=1e-9)


def test_background_ssim_with_an_empty_mask_is_skimages_ssim():
    output, source = _smooth_case(2)
    expected = structural_similarity(
        output / 255.0, source / 255.0, data_range=1.0, channel_axis=2,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )
    assert background_ssim(output, source, np.zeros(source.shape[:2], bool)) == pytest.approx(expected, rel=1e-12)


def test_background_ssim_ignores_the_mask_and_is_one_when_the_background_is_kept():
    output, source = _smooth_case(3)
    mask = np.zeros(source.shape[:2], bool)
    mask[10:30, 10:30] = True
    noise = np.random.default_rng(4).integers(0, 256, size=source.shape, dtype=np.uint8)
    repainted = np.where(mask[:, :, None], noise, output)
    assert background_ssim(repainted, source, mask) == background_ssim(output, source, mask)
    pasted = np.where(mask[:, :, None], noise, source)
    assert background_ssim(pasted, source, mask) == pytest.approx(1.0, abs=1e-12)


def test_background_ssim_of_flat_images_is_the_luminance_term():
    """Flat 0.5 against flat 0.25: variances vanish, SSIM = (2·0.5·0.25 + C1)/(0.5² + 0.25² + C1)
    = 0.2501/0.3126."""
    output = np.full((20, 20, 3), 0.5)
    source = np.full((20, 20, 3), 0.25)
    mask = np.zeros((20, 20), bool)
    mask[:3, :3] = True
    assert background_ssim(output, source, mask) == pytest.approx(0.2501 / 0.3126, rel=1e-9)


def test_background_ssim_region_and_errors():
    mask = np.zeros((14, 15), bool)
    mask[0, 0] = True
    region = ssim_region(mask)
    # Interior pixels are rows 5..8, cols 5..9; those within Chebyshev distance 5 of (0, 0) drop.
    expected = np.zeros((14, 15), bool)
    expected[5:9, 5:10] = True
    expected[5, 5] = False
    assert np.array_equal(region, expected)
    output, source = _smooth_case(5)
    everywhere = np.zeros(source.shape[:2], bool)
    everywhere[::10, ::10] = True  # every 11×11 window meets a masked pixel
    with pytest.raises(ValueError, match="SSIM window"):
        background_ssim(output, source, everywhere)
    with pytest.raises(ValueError, match="SSIM window"):
        background_ssim(output[:10, :10], source[:10, :10], np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="shape"):
        background_ssim(output, source[:20], everywhere)


def _parse(picture):
    """'#' masked, 'r' ring, '.' neither."""
    rows = [line.strip() for line in picture.strip().splitlines()]
    grid = np.array([list(row) for row in rows])
    return grid == "#", grid == "r"


@pytest.mark.parametrize(
    "width, picture",
    [
        (
            1,
            """
            #r.....
            rr.....
            ...rrr.
            ...r#r.
            ...rrr.
            .......
            """,
        ),
        (
            2,
            """
            #rr....
            rrrrrrr
            rrrrrrr
            ..rr#rr
            ..rrrrr
            ..rrrrr
            """,
        ),
    ],
)
def test_ring_mask_hand_drawn(width, picture):
    """A square neighbourhood (Chebyshev distance): (5, 2) is 2 rows and 2 columns from the
    masked (3, 4), in the width-2 ring although its Euclidean distance is 2.83. The ring stops
    at the image border."""
    mask, ring = _parse(picture)
    assert np.array_equal(ring_mask(mask, width), ring)


def _ring_by_loops(mask, width):
    ring = np.zeros_like(mask)
    masked = np.argwhere(mask)
    for y in range(mask.shape[0]):
        for x in range(mask.shape[1]):
            if not mask[y, x] and len(masked):
                ring[y, x] = np.abs(masked - [y, x]).max(axis=1).min() <= width
    return ring


def _masks(h=24, w=32):
    y, x = np.mgrid[0:h, 0:w]
    box = np.zeros((h, w), bool)
    box[8:14, 10:20] = True
    corner = np.zeros((h, w), bool)
    corner[:6, 24:] = True
    disk = (y - 12) ** 2 + (x - 16) ** 2 <= 30
    line = np.zeros((h, w), bool)
    line[:, 5] = True
    two = np.zeros((h, w), bool)
    two[2:4, 2:4] = True
    two[18:22, 25:30] = True
    return {"box": box, "corner": corner, "disk": disk, "line": line, "two": two}


@pytest.mark.parametrize("name", ["box", "corner", "disk", "line", "two"])
@pytest.mark.parametrize("width", [1, 3, 8])
def test_ring_mask_equals_a_distance_loop(name, width):
    mask = _masks()[name]
    assert np.array_equal(ring_mask(mask, width), _ring_by_loops(mask, width))
    assert np.array_equal(ring_mask(mask.astype(np.float32), width), ring_mask(mask, width))


def test_ring_mse_on_crafted_images_has_the_known_value():
    """Source 0; output 0.2 on the ring (cut by slicing), 0.9 inside the mask, 0.6 elsewhere:
    ring_mse = 0.04, ring_psnr = 10·log10(25)."""
    for mask_box, ring_box in (((10, 20, 10, 20), (7, 23, 7, 23)), ((0, 10, 0, 5), (0, 14, 0, 9))):
        mask = np.zeros((40, 40), bool)
        mask[mask_box[0] : mask_box[1], mask_box[2] : mask_box[3]] = True
        output = np.full((40, 40, 3), 0.6)
        output[ring_box[0] : ring_box[1], ring_box[2] : ring_box[3]] = 0.2
        output[mask] = 0.9
        source = np.zeros((40, 40, 3))
        assert ring_mse(output, source, mask, 3 if mask_box[0] else 4) == pytest.approx(0.04, rel=1e-12)
        assert ring_psnr(output, source, mask, 3 if mask_box[0] else 4) == pytest.approx(10 * math.log10(25))


@pytest.mark.parametrize("name", ["box", "corner", "disk", "line", "two"])
def test_ring_mse_equals_direct_numpy_over_the_ring(name):
    mask = _masks()[name]
    output, source, _ = _case(8)
    ring = _ring_by_loops(mask, 3)
    expected = ((output[ring] / 255.0 - source[ring] / 255.0) ** 2).mean()
    assert ring_mse(output, source, mask, 3) == pytest.approx(expected, rel=1e-12)
    assert ring_psnr(output, source, mask, 3) == pytest.approx(10 * math.log10(1 / expected), rel=1e-12)


def test_ring_of_an_empty_or_full_mask_is_an_error_and_a_kept_ring_is_infinite_psnr():
    output, source, mask = _case(9)
    for bad in (np.zeros_like(mask), np.ones_like(mask)):
        assert not ring_mask(bad, 4).any()
        with pytest.raises(ValueError, match="ring is empty"):
            ring_mse(output, source, bad, 4)
        with pytest.raises(ValueError, match="ring is empty"):
            ring_psnr(output, source, bad, 4)
    pasted = np.where(mask[:, :, None], output, source)
    assert ring_mse(pasted, source, mask) == 0.0 and ring_psnr(pasted, source, mask) == math.inf
    for width in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="width"):
            ring_mask(mask, width)


def test_sample_metrics_adds_ssim_and_ring_and_keeps_the_background_numbers():
    output, source = _smooth_case(6)
    mask = np.zeros(source.shape[:2], bool)
    mask[10:25, 12:30] = True
    metrics = sample_metrics(output, source, mask)
    assert set(metrics) == {"bg_mse", "bg_psnr", "bg_ssim", "ring_mse", "ring_psnr"}
    assert metrics["bg_mse"] == background_mse(output, source, mask)
    assert metrics["bg_psnr"] == background_psnr(output, source, mask)
    assert metrics["bg_ssim"] == background_ssim(output, source, mask)
    assert metrics["ring_mse"] == ring_mse(output, source, mask, 8)
    assert metrics["ring_psnr"] == ring_psnr(output, source, mask, 8)
    narrow = sample_metrics(output, source, mask, ring_width=2)
    assert narrow["ring_mse"] == ring_mse(output, source, mask, 2) != metrics["ring_mse"]
    assert all(isinstance(v, float) for v in metrics.values())


def test_sample_metrics_leaves_out_what_is_undefined():
    output, source = _smooth_case(7)
    empty = sample_metrics(output, source, np.zeros(source.shape[:2], bool))
    assert set(empty) == {"bg_mse", "bg_psnr", "bg_ssim"}
    dotted = np.zeros(source.shape[:2], bool)
    dotted[::10, ::10] = True
    assert set(sample_metrics(output, source, dotted)) == {"bg_mse", "bg_psnr", "ring_mse", "ring_psnr"}
    with pytest.raises(ValueError, match="whole image"):
        sample_metrics(output, source, np.ones(source.shape[:2], bool))
