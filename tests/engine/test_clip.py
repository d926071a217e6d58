"""CLIP score (engine/metrics/clip.py) on a random tiny CLIP built offline: the values equal a
hand computation from CLIPModel.forward's normalised embeddings and torchmetrics' CLIPScore;
the local score sees exactly the crop box; batching changes nothing."""

import numpy as np
import pytest
from PIL import Image

from engine.metrics.base import EvalItem, MetricUnavailable
from engine.metrics.clip import (
    CLIP_CROP_RULE,
    DEFAULT_CLIP_MODEL,
    clip_batch_metrics,
    clip_sample_metrics,
    global_clip_score,
    load_clip_scorer,
    local_clip_crop,
    local_clip_score,
    tiny_clip_scorer,
)
from engine.metrics.crop import crop_box

PROMPTS = ["a red apple", "a dog on a sofa", "snowy mountains at dusk", "an old wooden door", "x"]
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


@pytest.fixture(scope="module")
def scorer():
    return tiny_clip_scorer(seed=0)


@pytest.fixture(scope="module")
def flipped():
    """The same tiny CLIP with its text projection negated: every cosine changes sign."""
    import torch

    flipped = tiny_clip_scorer(seed=0)
    with torch.no_grad():
        flipped.model.text_projection.weight.neg_()
    return flipped


def _images(seed, sizes):
    rng = np.random.default_rng(seed)
    images = []
    for h, w in sizes:
        # Smooth gradients plus noise: less uniform than pure noise, so embeddings differ.
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x / w, y / h, rng.random() * np.ones((h, w))], axis=2) * 200
        images.append(np.clip(base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8))
    return images


def _hand_cosines(scorer, images, prompts):
    """Independent path: CLIP preprocessing by hand (PIL bicubic to a 224 shorter side, centre
    crop, CLIP mean/std), CLIPModel.forward's normalised embeddings, cosine in numpy."""
    import torch

    pixels = []
    for image in images:
        h, w = image.shape[:2]
        scale = 224 / min(h, w)
        resized = Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
        left, top = (resized.width - 224) // 2, (resized.height - 224) // 2
        array = np.asarray(resized.crop((left, top, left + 224, top + 224)), dtype=np.float64) / 255
        pixels.append(((array - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1))
    tokens = scorer.tokenizer(list(prompts), padding=True, return_tensors="pt")
    with torch.no_grad():
        out = scorer.model(
            input_ids=tokens["input_ids"],
            attention_mask=tokens["attention_mask"],
            pixel_values=torch.tensor(np.stack(pixels), dtype=torch.float32),
        )
    # forward() returns both embeddings already L2-normalised: the pairwise diagonal is cos.
    return (out.image_embeds.double().numpy() * out.text_embeds.double().numpy()).sum(axis=1)


# Square 224 images pass CLIP's resize untouched; 112×168 resizes to exactly 224×336.
SIZES = [(224, 224), (224, 224), (112, 168), (224, 224), (168, 112)]


def test_score_equals_a_hand_computation_from_normalised_embeddings(scorer, flipped):
    images = _images(0, SIZES)
    cosine = _hand_cosines(scorer, images, PROMPTS)
    got = scorer.score(images, PROMPTS)
    np.testing.assert_allclose(got, np.maximum(100 * cosine, 0), atol=1e-3)
    np.testing.assert_allclose(flipped.score(images, PROMPTS), np.maximum(-100 * cosine, 0), atol=1e-3)
    assert (got > 0).any() and (cosine < 0).any()  # both sides of the clamp are exercised


def test_clamp_at_zero_happens_exactly_when_the_cosine_is_negative(scorer, flipped):
    images = _images(1, [(64, 64)] * 8)
    prompts = PROMPTS + PROMPTS[:3]
    plain, negated = scorer.score(images, prompts), flipped.score(images, prompts)
    # cos and -cos: one of the two is clamped, the other keeps 100·|cos|.
    assert np.all(np.minimum(plain, negated) == 0)
    assert (plain > 0).any() and (negated > 0).any()
    np.testing.assert_allclose(plain - negated, 100 * _hand_cosines(scorer, images, prompts), atol=1e-3)


def test_equals_torchmetrics_clipscore_sample_by_sample(scorer):
    import torch
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPProcessor

    class Features(torch.nn.Module):
        """torchmetrics 1.9 expects get_*_features to return tensors (transformers 5 does not)."""

        def __init__(self, clip):
            super().__init__()
            self.clip, self.config = clip, clip.config

        def get_image_features(self, *args, **kwargs):
            return self.clip.get_image_features(*args, **kwargs).pooler_output

        def get_text_features(self, *args, **kwargs):
            return self.clip.get_text_features(*args, **kwargs).pooler_output

    processor = CLIPProcessor(image_processor=scorer.processor, tokenizer=scorer.tokenizer)
    metric = CLIPScore(model_name_or_path=lambda: (Features(scorer.model), processor))
    images = _images(2, [(96, 128), (224, 224), (130, 70), (50, 50), (300, 200)])
    expected = []
    for image, prompt in zip(images, PROMPTS):
        metric.reset()
        metric.update(torch.from_numpy(image).permute(2, 0, 1), prompt)
        expected.append(float(metric.compute()))  # one sample: the clamped mean is the clamped score
    got = scorer.score(images, PROMPTS)
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert max(expected) > 0


def test_scores_lie_between_0_and_100(scorer, flipped):
    images = _images(3, [(48, 80)] * 6) + [np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)]
    prompts = (PROMPTS * 2)[:8]
    for model in (scorer, flipped):
        values = model.score(images, prompts)
        assert values.shape == (8,) and values.dtype == np.float64
        assert np.all((values >= 0) & (values <= 100))


def _item(output, mask, prompt="a red apple", sample_id="s"):
    return EvalItem(sample_id, output, output.copy(), mask, prompt)


def _mask(h=96, w=128):
    mask = np.zeros((h, w), bool)
    mask[30:50, 40:70] = True
    return mask


def test_local_score_sees_exactly_the_crop_box(scorer):
    mask = _mask()
    box = crop_box(mask, CLIP_CROP_RULE)
    assert (box.height, box.width) == (64, 64)  # padded 8 px, then squared up to the minimum side
    inside = np.zeros(mask.shape, bool)
    inside[box.top : box.bottom, box.left : box.right] = True
    rng = np.random.default_rng(4)
    # A prompt whose local and global scores are both above the clamp, so changes can show.
    for prompt in PROMPTS:
        output = _images(5, [mask.shape])[0]
        values = clip_sample_metrics(_item(output, mask, prompt), scorer)
        if min(values.values()) > 0:
            break
    else:
        pytest.fail("no prompt scores above 0 on this tiny CLIP")

    outside_changed = np.where(inside[:, :, None], output, rng.integers(0, 256, output.shape, dtype=np.uint8))
    after = clip_sample_metrics(_item(outside_changed, mask, prompt), scorer)
    assert after["clip_local"] == values["clip_local"]
    assert abs(after["clip_global"] - values["clip_global"]) > 1e-3

    # The box's corners are outside the mask but inside the crop: they count for clip_local.
    corners_changed = output.copy()
    corners_changed[box.top : box.top + 8, box.left : box.left + 8] = 255
    corners_changed[box.bottom - 8 : box.bottom, box.right - 8 : box.right] = 0
    corners = clip_sample_metrics(_item(corners_changed, mask, prompt), scorer)
    assert abs(corners["clip_local"] - values["clip_local"]) > 1e-3


def test_local_crop_is_the_box_resized_bicubic_to_the_clip_input(scorer):
    mask = _mask()
    output = _images(6, [mask.shape])[0]
    item = _item(output, mask)
    crop = local_clip_crop(item, scorer.input_size)
    box = crop_box(mask, CLIP_CROP_RULE)
    region = Image.fromarray(output[box.top : box.bottom, box.left : box.right])
    expected = region.resize((224, 224), Image.Resampling.BICUBIC)
    assert scorer.input_size == 224
    np.testing.assert_array_equal(crop, np.asarray(expected))
    assert local_clip_score(item, scorer) == pytest.approx(float(scorer.score([crop], [item.prompt])[0]), abs=1e-4)
    assert global_clip_score(item, scorer) == pytest.approx(float(scorer.score([output], [item.prompt])[0]), abs=1e-4)


def test_batching_gives_the_values_of_one_by_one(scorer):
    import torch

    sizes = [(96, 128), (128, 96), (64, 64), (96, 128), (80, 80)]
    outputs = _images(7, sizes)
    masks = []
    for index, (h, w) in enumerate(sizes):
        mask = np.zeros((h, w), bool)
        if index != 4:  # the last sample has an empty mask: no local region
            mask[10 + index * 3 : 40 + index * 5, 5 + index * 4 : 50] = True
        masks.append(mask)
    items = [_item(o, m, p, f"s{i}") for i, (o, m, p) in enumerate(zip(outputs, masks, PROMPTS))]

    batched = clip_batch_metrics(items, scorer)
    single = [clip_sample_metrics(item, scorer) for item in items]
    assert [list(d) for d in batched] == [["clip_local", "clip_global"]] * 4 + [["clip_global"]]
    for got, want in zip(batched, single):
        assert got == pytest.approx(want, abs=1e-4)

    images = [item.output for item in items]
    small = tiny_clip_scorer(seed=0)
    small.batch_size = 2  # several model passes instead of one
    np.testing.assert_allclose(small.score(images, PROMPTS), scorer.score(images, PROMPTS), atol=1e-4)
    one_by_one = [scorer.score([i], [p])[0] for i, p in zip(images, PROMPTS)]
    np.testing.assert_allclose(scorer.score(images, PROMPTS), one_by_one, atol=1e-4)
    # Different weights give different numbers: the comparison above can fail.
    assert not np.allclose(tiny_clip_scorer(seed=1).score(images, PROMPTS), one_by_one, atol=1e-4)
    assert torch.equal(small.model.text_projection.weight, scorer.model.text_projection.weight)


def test_bad_inputs_are_errors(scorer):
    image = _images(8, [(32, 32)])[0]
    with pytest.raises(ValueError, match="prompts"):
        scorer.score([image, image], ["one"])
    with pytest.raises(ValueError, match="uint8"):
        scorer.score([image / 255.0], ["a"])
    with pytest.raises(ValueError, match="mask shape"):
        local_clip_crop(_item(image, np.ones((16, 16), bool)), 224)
    with pytest.raises(ValueError, match="empty"):
        local_clip_score(_item(image, np.zeros((32, 32), bool)), scorer)
    assert scorer.score([], []).shape == (0,)


def test_production_loader_offline_raises_metric_unavailable_naming_the_model(tmp_path):
    with pytest.raises(MetricUnavailable, match="openai/clip-vit-base-patch16"):
        load_clip_scorer()
    assert DEFAULT_CLIP_MODEL == "openai/clip-vit-base-patch16"
    missing = str(tmp_path / "no-clip-here")
    with pytest.raises(MetricUnavailable, match="no-clip-here"):
        load_clip_scorer(missing, device="cpu")
