import io

import numpy as np
import pytest
from PIL import Image

from engine.samples import SampleError, make_sample, normalise_mask, resize_to, working_size
from tests.conftest import box_mask, make_image

W, H = 64, 48


def _binary_u8() -> np.ndarray:
    return (box_mask(W, H, (10, 8, 40, 30)) * 255).astype(np.uint8)


def _roundtrip_png(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.seek(0)
    with Image.open(buffer) as opened:
        opened.load()
        return opened.copy()


EXPECTED = box_mask(W, H, (10, 8, 40, 30))


@pytest.mark.parametrize(
    "name, mask",
    [
        ("1-bit", Image.fromarray(_binary_u8()).convert("1")),
        ("L", Image.fromarray(_binary_u8(), mode="L")),
        ("LA", Image.merge("LA", [Image.fromarray(_binary_u8()), Image.new("L", (W, H), 255)])),
        ("RGB", Image.fromarray(np.repeat(_binary_u8()[:, :, None], 3, axis=2), mode="RGB")),
        ("RGBA opaque", Image.fromarray(np.dstack([_binary_u8()] * 3 + [np.full((H, W), 255, np.uint8)]), mode="RGBA")),
        # a cut-out: constant colour, the shape lives in the alpha channel
        ("RGBA alpha", Image.fromarray(np.dstack([np.full((H, W), 255, np.uint8)] * 3 + [_binary_u8()]), mode="RGBA")),
        ("16-bit PNG", _roundtrip_png(Image.fromarray((EXPECTED * 65535).astype(np.uint16)))),
        ("uint16 array", (EXPECTED * 65535).astype(np.uint16)),
        ("bool array", EXPECTED.astype(bool)),
        ("float array", EXPECTED.astype(np.float64)),
    ],
)
def test_every_mask_encoding_normalises_to_white_is_inpaint(name, mask):
    result = normalise_mask(mask, sample_id=name)
    assert result.dtype == np.float32 and result.shape == (H, W)
    np.testing.assert_array_equal(result, EXPECTED)


def test_soft_mask_is_kept_soft_with_a_binary_version():
    soft = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    sample = make_sample("soft", make_image(W, H), Image.fromarray(soft, mode="L"), "a thing")
    assert len(np.unique(sample.mask)) > 2  # still soft
    np.testing.assert_array_equal(sample.binary_mask, soft / 255.0 >= 0.5)


def test_mask_from_file(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(_binary_u8()).save(path)
    image_path = tmp_path / "i.png"
    make_image(W, H).save(image_path)
    sample = make_sample("files", image_path, path, "a thing")
    np.testing.assert_array_equal(sample.mask, EXPECTED)


@pytest.mark.parametrize(
    "mask, reference, message",
    [
        (box_mask(W + 8, H, (1, 1, 5, 5)), None, "mask is 72x48 but the image is 64x48"),
        (np.zeros((H, W), np.float32), None, "mask is empty"),
        (np.ones((H, W), np.float32), None, "covers the whole image"),
        (box_mask(W, H, (1, 1, 5, 5)), make_image(W, H + 8), "reference is 64x56"),
    ],
)
def test_unusable_samples_raise_naming_the_sample(mask, reference, message):
    with pytest.raises(SampleError, match=message) as caught:
        make_sample("broken-one", make_image(W, H), mask, "a thing", reference=reference)
    assert "broken-one" in str(caught.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SampleError, match=r"sample 'x': image file .*nope\.png does not exist"):
        make_sample("x", tmp_path / "nope.png", EXPECTED, "a thing")


def test_empty_prompt_is_an_error():
    with pytest.raises(SampleError, match="prompt is empty"):
        make_sample("p", make_image(W, H), EXPECTED, "  ")


@pytest.mark.parametrize(
    "size, resolution, expected",
    [((512, 512), 128, (128, 128)), ((600, 400), 512, (512, 336)), ((451, 300), 128, (128, 80)), ((300, 451), 512, (336, 512))],
)
def test_working_size_fits_longer_side_and_multiples_of_8(size, resolution, expected):
    assert working_size(size, resolution) == expected


def test_resizing_away_a_tiny_mask_is_an_error():
    sample = make_sample("speck", make_image(512, 512), box_mask(512, 512, (100, 100, 101, 101)), "a speck")
    with pytest.raises(SampleError, match="speck.*empty"):
        resize_to(sample, (64, 64))


def test_prepare_fit_is_the_working_size_resize():
    from engine.samples import prepare

    sample = make_sample("fit", make_image(600, 400), box_mask(600, 400, (100, 100, 200, 200)), "a thing")
    prepared = prepare(sample, 128, "fit")
    assert prepared.size == (128, 80)


def test_prepare_crop_takes_a_native_square_around_a_small_mask():
    from engine.samples import prepare

    image = make_image(640, 480)
    sample = make_sample("crop", image, box_mask(640, 480, (500, 300, 540, 340)), "a thing", reference=image)
    prepared = prepare(sample, 128, "crop")
    assert prepared.size == (128, 128)
    # 40 px mask + 25% (16 px min) padding < 128: a 128 px square of source pixels, no resampling
    box = (456, 256, 584, 384)  # centred on the mask (520, 320)
    np.testing.assert_array_equal(np.asarray(prepared.image), np.asarray(image.crop(box)))
    np.testing.assert_array_equal(prepared.mask, sample.mask[256:384, 456:584])
    np.testing.assert_array_equal(np.asarray(prepared.reference), np.asarray(image.crop(box)))


def test_prepare_crop_at_the_border_and_with_large_masks():
    from engine.samples import prepare

    sample = make_sample("edge", make_image(640, 480), box_mask(640, 480, (0, 0, 300, 200)), "a thing")
    prepared = prepare(sample, 128, "crop")
    assert prepared.size == (128, 128) and prepared.binary_mask.any() and not prepared.binary_mask.all()
    with pytest.raises(SampleError, match="unknown resize policy 'zoom'"):
        prepare(sample, 128, "zoom")
