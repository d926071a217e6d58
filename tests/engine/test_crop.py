import numpy as np
import pytest

from engine.metrics.crop import Box, CropRule, crop_box, mask_bounding_box


def _mask(h, w, top, bottom, left, right):
    mask = np.zeros((h, w), bool)
    mask[top:bottom, left:right] = True
    return mask


def _inside(box: Box, h: int, w: int) -> bool:
    return 0 <= box.top < box.bottom <= h and 0 <= box.left < box.right <= w


def _contains(outer: Box, inner: Box) -> bool:
    return outer.top <= inner.top and outer.left <= inner.left and outer.bottom >= inner.bottom and outer.right >= inner.right


RULE = CropRule(margin=0.1, min_padding=16, min_side=128)


@pytest.mark.parametrize(
    "name, h, w, region",
    [
        ("centre", 512, 512, (200, 260, 220, 300)),
        ("top-left corner", 512, 512, (0, 30, 0, 40)),
        ("bottom-right corner", 512, 384, (490, 512, 370, 384)),
        ("left edge", 300, 500, (100, 200, 0, 10)),
        ("tiny mask", 512, 512, (300, 301, 300, 301)),
        ("near-full mask", 256, 256, (2, 254, 3, 250)),
        ("wide strip", 200, 600, (90, 110, 0, 600)),
    ],
)
def test_crop_is_square_inside_the_image_and_covers_the_mask(name, h, w, region):
    mask = _mask(h, w, *region)
    box = crop_box(mask, RULE)
    assert _inside(box, h, w), box
    assert box.height == box.width, box
    bbox = mask_bounding_box(mask)
    side = box.height
    if side < min(h, w):  # the image allowed the full rule: mask plus padding inside the crop
        assert _contains(box, bbox)
        assert side >= RULE.min_side
    else:
        assert side == min(h, w)


def test_worked_example():
    # box 60x80 at rows 200-260, cols 220-300: padding max(16, 0.1*80=8) = 16 -> 92x112;
    # side max(92, 112, 128) = 128, centred on (230, 260): rows 166-294, cols 196-324.
    assert crop_box(_mask(512, 512, 200, 260, 220, 300), RULE) == Box(166, 294, 196, 324)


def test_corner_crops_shift_instead_of_shrinking():
    assert crop_box(_mask(512, 512, 0, 30, 0, 40), RULE) == Box(0, 128, 0, 128)
    assert crop_box(_mask(512, 384, 490, 512, 370, 384), RULE) == Box(384, 512, 256, 384)


def test_large_masks_use_the_margin():
    # box 200x200, margin 10% = 20 px > 16: side 240
    box = crop_box(_mask(512, 512, 100, 300, 100, 300), RULE)
    assert box == Box(80, 320, 80, 320)


def test_empty_mask_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        crop_box(np.zeros((10, 10), bool), RULE)


def test_cut_and_key():
    image = np.arange(10 * 12 * 3).reshape(10, 12, 3)
    assert Box(1, 4, 2, 5).cut(image).shape == (3, 3, 3)
    assert CropRule().key() != CropRule(margin=0.2).key()
