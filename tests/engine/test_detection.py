"""Prompt-following precision: the hit rule on planted detections, IoU and Wilson interval
against hand computations, detector geometry with planted model outputs, a tiny random OWLv2
end to end, and the production loader failing offline with a clear message."""

import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from engine.metrics.base import EvalItem, MetricUnavailable
from engine.metrics.crop import Box, mask_bounding_box
from engine.metrics.detection import (
    DETECTORS,
    Detection,
    box_iou,
    box_xyxy,
    is_hit,
    prompt_phrase,
    prompt_precision,
    wilson_interval,
)
from engine.metrics.detectors import GroundingDinoDetector, OwlDetector, load_detector

ROOT = Path(__file__).resolve().parents[2]

# A 40×40 mask box: columns 30..69, rows 20..59 -> (x0, y0, x1, y1) = (30, 20, 70, 60).
MASK_BOX = Box(top=20, bottom=60, left=30, right=70)


# --- the phrase ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("a white space helmet", "white space helmet"),
        ("A cup of coffee on a saucer.", "cup of coffee on a saucer"),
        ("an  Apple", "apple"),
        ("The red car", "red car"),
        ("a white space helmet, highly detailed, 4k", "white space helmet"),
        ("cat; photorealistic", "cat"),
        ("a", "a"),  # a lone word is kept even if it is an article
    ],
)
def test_prompt_phrase_from_the_prompt(prompt, expected):
    assert prompt_phrase(prompt) == expected


def test_explicit_object_phrase_wins_and_blank_falls_back():
    assert prompt_phrase("a cup of coffee on a saucer", "A Mug") == "mug"
    # An explicit phrase is taken whole, commas included.
    assert prompt_phrase("whatever", "salt, pepper") == "salt, pepper"
    assert prompt_phrase("a white space helmet", "  ") == "white space helmet"
    assert prompt_phrase("a white space helmet", None) == "white space helmet"
    with pytest.raises(ValueError, match="no object phrase"):
        prompt_phrase(" , detailed")


# --- IoU ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "a, b, expected",
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),  # half overlap: 50 / (100 + 100 - 50)
        ((0, 0, 10, 10), (2, 2, 6, 6), 16 / 100),  # contained
        ((0, 0, 10, 10), (5, 5, 15, 15), 25 / 175),  # corner overlap
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching along an edge
        ((0, 0, 10, 10), (10, 10, 20, 20), 0.0),  # touching at a corner
        ((0, 0, 10, 10), (30, 30, 40, 45), 0.0),  # disjoint
        ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),  # empty boxes, no division by zero
        ((0.5, 0.5, 2.5, 1.5), (1.5, 0.5, 3.5, 1.5), 1 / 3),  # fractional coordinates
    ],
)
def test_box_iou_against_hand_computed_values(a, b, expected):
    assert box_iou(a, b) == pytest.approx(expected, abs=1e-12)
    assert box_iou(b, a) == pytest.approx(expected, abs=1e-12)


def test_mask_box_is_the_exclusive_rectangle_of_its_pixels():
    mask = np.zeros((32, 40), bool)
    mask[5:15, 8:20] = True  # rows 5..14, columns 8..19
    box = mask_bounding_box(mask)
    assert box_xyxy(box) == (8.0, 5.0, 20.0, 15.0)
    # A detection covering exactly those pixels matches perfectly; the inclusive-index
    # reading (8, 5, 19, 14) would lose a row and a column: 11·9 / (12·10).
    assert box_iou((8, 5, 20, 15), box_xyxy(box)) == 1.0
    assert box_iou((8, 5, 19, 14), box_xyxy(box)) == pytest.approx(99 / 120)


# --- the hit rule -------------------------------------------------------------------------

def test_a_detection_of_the_phrase_inside_the_mask_box_is_a_hit():
    assert is_hit([Detection("cup", 0.5, (32, 22, 68, 58))], "cup", MASK_BOX)


def test_right_phrase_wrong_place_is_no_hit():
    elsewhere = Detection("cup", 0.99, (0, 0, 30, 20))  # touches the box's corner only
    beside = Detection("cup", 0.99, (60, 20, 100, 60))  # IoU 400 / 2800 ≈ 0.14
    assert box_iou(beside.box, box_xyxy(MASK_BOX)) == pytest.approx(1 / 7)
    assert not is_hit([elsewhere], "cup", MASK_BOX)
    assert not is_hit([beside], "cup", MASK_BOX)
    assert is_hit([beside], "cup", MASK_BOX, iou_threshold=0.1)  # the threshold is what rejects it


def test_iou_threshold_is_inclusive():
    exactly = Detection("cup", 0.5, (30, 20, 42, 60))  # 12×40 = 30% of the box, inside it
    short = Detection("cup", 0.5, (30, 20, 41.9, 60))
    assert box_iou(exactly.box, box_xyxy(MASK_BOX)) == pytest.approx(0.3)
    assert is_hit([exactly], "cup", MASK_BOX)
    assert not is_hit([short], "cup", MASK_BOX)


def test_below_the_score_threshold_is_no_hit():
    box = (30, 20, 70, 60)
    assert not is_hit([Detection("cup", 0.09, box)], "cup", MASK_BOX)
    assert is_hit([Detection("cup", 0.1, box)], "cup", MASK_BOX)  # inclusive
    assert not is_hit([Detection("cup", 0.3, box)], "cup", MASK_BOX, score_threshold=0.35)


def test_wrong_phrase_is_no_hit_case_and_spacing_do_not_matter():
    box = (30, 20, 70, 60)
    assert not is_hit([Detection("saucer", 0.99, box)], "cup", MASK_BOX)
    assert not is_hit([Detection("cup of coffee", 0.99, box)], "cup", MASK_BOX)
    assert is_hit([Detection("Cup  of Coffee", 0.99, box)], "cup of coffee", MASK_BOX)


def test_several_detections_only_one_qualifies():
    decoys = [
        Detection("saucer", 0.95, (30, 20, 70, 60)),  # wrong phrase, perfect place
        Detection("cup", 0.05, (30, 20, 70, 60)),  # right phrase and place, too weak
        Detection("cup", 0.95, (80, 0, 100, 20)),  # right phrase, wrong place
    ]
    good = Detection("cup", 0.4, (34, 24, 66, 56))
    assert not is_hit(decoys, "cup", MASK_BOX)
    assert is_hit(decoys + [good], "cup", MASK_BOX)
    assert is_hit([good] + decoys, "cup", MASK_BOX)
    assert not is_hit([], "cup", MASK_BOX)


# --- Wilson interval ----------------------------------------------------------------------

@pytest.mark.parametrize(
    "k, n, low, high",
    [
        # Published 95% Wilson intervals (e.g. statsmodels' proportion_confint, method="wilson").
        (0, 10, 0.0, 0.2775),
        (1, 10, 0.0179, 0.4042),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_interval_known_values(k, n, low, high):
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_ends_are_exact_at_zero_and_all():
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0


@pytest.mark.parametrize("k, n, confidence", [(3, 7, 0.95), (12, 40, 0.9), (1, 3, 0.99)])
def test_wilson_ends_solve_the_score_equation(k, n, confidence):
    """Independent check: the ends are the roots of (p̂ − p)² = z²·p(1 − p)/n."""
    z = {0.9: 1.6448536269514722, 0.95: 1.959963984540054, 0.99: 2.5758293035489004}[confidence]
    p_hat = k / n
    a, b, c = 1 + z * z / n, -(2 * p_hat + z * z / n), p_hat * p_hat
    root = math.sqrt(b * b - 4 * a * c)
    assert wilson_interval(k, n, confidence) == pytest.approx(((-b - root) / (2 * a), (-b + root) / (2 * a)), rel=1e-12)


def test_wilson_narrows_with_lower_confidence_and_rejects_nonsense():
    low95, high95 = wilson_interval(5, 10, 0.95)
    low90, high90 = wilson_interval(5, 10, 0.90)
    assert low95 < low90 < high90 < high95
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(1, 10, confidence=1.0)


# --- prompt_precision with a planted detector ---------------------------------------------

class PlantedDetector:
    """Returns, for each call in turn, the detections planted for it; records the phrases."""

    def __init__(self, planted):
        self.planted = list(planted)
        self.calls = []

    def detect(self, image, phrases):
        assert image.dtype == np.uint8 and image.ndim == 3
        self.calls.append(list(phrases))
        return self.planted.pop(0)


def _item(sample_id, prompt, size=(80, 100)):
    mask = np.zeros(size, bool)
    mask[20:60, 30:70] = True  # MASK_BOX
    image = np.zeros(size + (3,), np.uint8)
    return EvalItem(sample_id=sample_id, output=image, source=image, mask=mask, prompt=prompt)


def test_prompt_precision_counts_hits_in_order_with_the_interval():
    items = [
        _item("s0", "a white space helmet"),
        _item("s1", "a cup of coffee on a saucer"),
        _item("s2", "a red apple, studio light"),
        _item("s3", "a dog"),
    ]
    inside = (32, 22, 68, 58)
    detector = PlantedDetector(
        [
            [Detection("white space helmet", 0.6, inside)],  # hit
            [Detection("cup of coffee on a saucer", 0.6, (0, 0, 20, 20))],  # wrong place
            [Detection("apple", 0.6, inside)],  # hit, via the explicit phrase
            [Detection("dog", 0.02, inside)],  # too weak
        ]
    )
    result = prompt_precision(items, detector, phrases={"s2": "an apple"})
    assert detector.calls == [["white space helmet"], ["cup of coffee on a saucer"], ["apple"], ["dog"]]
    assert result.per_sample == [True, False, True, False]
    assert (result.hits, result.n, result.precision) == (2, 4, 0.5)
    assert result.interval == wilson_interval(2, 4)
    assert result.sample_ids == ["s0", "s1", "s2", "s3"]
    assert result.phrases == ["white space helmet", "cup of coffee on a saucer", "apple", "dog"]


def test_prompt_precision_thresholds_are_passed_to_the_rule():
    detections = [Detection("dog", 0.2, (30, 20, 50, 60))]  # IoU 0.5
    assert prompt_precision([_item("a", "a dog")], PlantedDetector([detections])).hits == 1
    strict = prompt_precision([_item("a", "a dog")], PlantedDetector([detections]), iou_threshold=0.6)
    assert strict.hits == 0 and strict.iou_threshold == 0.6
    weak = prompt_precision([_item("a", "a dog")], PlantedDetector([detections]), score_threshold=0.35)
    assert weak.hits == 0 and weak.score_threshold == 0.35


def test_prompt_precision_empty_inputs():
    result = prompt_precision([], PlantedDetector([]))
    assert result.n == 0 and math.isnan(result.precision) and result.interval == (0.0, 1.0)
    empty_mask = EvalItem("blank", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8),
                          np.zeros((8, 8), bool), "a cup")
    with pytest.raises(ValueError, match="blank"):
        prompt_precision([empty_mask], PlantedDetector([[]]))


# --- detectors: geometry with planted model outputs ---------------------------------------

@pytest.fixture(scope="module")
def tiny_owl():
    """A random OWLv2 with tiny towers and a processor built offline (64 px input)."""
    from engine.metrics.detectors import tiny_owl as build

    return build(0)


class PlantedModel:
    """Stands in for a detection model: returns fixed logits and normalised (cx, cy, w, h)
    boxes whatever the input, so the post-processing's geometry can be checked exactly."""

    def __init__(self, logits, boxes, text_length=None):
        import torch

        if text_length is not None:  # the text tower's position table, as a real config has it
            self.config = types.SimpleNamespace(text_config=types.SimpleNamespace(max_position_embeddings=text_length))
        self.logits = torch.tensor([logits], dtype=torch.float32)
        self.boxes = torch.tensor([boxes], dtype=torch.float32)
        self.inputs = None

    def __call__(self, **inputs):
        self.inputs = inputs
        return types.SimpleNamespace(logits=self.logits, pred_boxes=self.boxes)


def test_owlv2_boxes_map_to_pixels_of_a_non_square_image(tiny_owl):
    _, processor = tiny_owl
    # OWLv2 pads a 60×120 image at the bottom to 120×120, so normalised coordinates scale by
    # 120 on both axes (OWL-ViT's per-axis scaling would put box 0 at y 7.5..22.5).
    model = PlantedModel(
        logits=[[3.0, -3.0], [-3.0, 2.0], [-4.0, -4.0], [2.0, 0.0]],
        boxes=[
            [0.5, 0.25, 0.5, 0.25],  # -> (30, 15, 90, 45)
            [0.9, 0.25, 0.4, 0.3],  # -> (84, 12, 132, 48), clipped to x1 = 120
            [0.5, 0.5, 0.2, 0.2],  # score σ(-4) ≈ 0.018 < min_score: dropped
            [0.5, 0.75, 0.2, 0.2],  # y 78..102 lies in the padding: dropped
        ],
        text_length=16,
    )
    detector = OwlDetector(model, processor, min_score=0.05)
    detections = detector.detect(np.zeros((60, 120, 3), np.uint8), ["helmet", "cup"])
    assert [d.label for d in detections] == ["helmet", "cup"]
    assert detections[0].box == pytest.approx((30, 15, 90, 45))
    assert detections[1].box == pytest.approx((84, 12, 120, 48))
    assert detections[0].score == pytest.approx(1 / (1 + math.exp(-3.0)))
    # One query per phrase, padded to the text tower's length (not the tokenizer's 77).
    assert model.inputs["input_ids"].shape == (2, 16)


def test_grounding_dino_boxes_scale_per_axis_and_answer_their_phrase(tmp_path):
    from transformers import BertTokenizer, GroundingDinoProcessor
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cup", "of", "coffee", "."]))
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(size={"shortest_edge": 32, "longest_edge": 64}),
        tokenizer=BertTokenizer(str(vocab)),
    )
    logits = np.full((2, 256), -20.0)
    logits[0, 1:4] = 2.0  # box 0 matches the query's tokens
    model = PlantedModel(logits=logits.tolist(), boxes=[[0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.1, 0.1]])
    detections = GroundingDinoDetector(model, processor, min_score=0.05).detect(
        np.zeros((60, 120, 3), np.uint8), ["Cup of coffee"]
    )
    # No padding here: x scales by the width, y by the height.
    assert len(detections) == 1 and detections[0].label == "Cup of coffee"
    assert detections[0].box == pytest.approx((30, 15, 90, 45))
    assert detections[0].score == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert processor.tokenizer.decode(model.inputs["input_ids"][0], skip_special_tokens=True) == "cup of coffee."


# --- the tiny OWLv2 end to end ------------------------------------------------------------

def test_tiny_owlv2_runs_end_to_end(tiny_owl):
    model, processor = tiny_owl
    detector = OwlDetector(model, processor, min_score=0.0)
    image = np.random.default_rng(0).integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    phrases = ["white space helmet", "cup of coffee on a saucer"]
    detections = detector.detect(image, phrases)
    assert detections and all(isinstance(d, Detection) for d in detections)
    for d in detections:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 96
        assert 0.0 <= d.score <= 1.0 and d.label in phrases
    items = [_item("a", "a white space helmet"), _item("b", "a cup")]
    result = prompt_precision(items, detector)
    assert result.n == 2 and len(result.per_sample) == 2 and 0 <= result.hits <= 2


def test_load_detector_from_a_local_folder_matches_the_model_it_saved(tiny_owl, tmp_path):
    model, processor = tiny_owl
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = load_detector(str(tmp_path), device="cpu", min_score=0.0)
    assert isinstance(loaded, OwlDetector) and loaded.name == str(tmp_path)
    assert not loaded.model.training
    saved = model.state_dict()
    assert all(torch_equal(value, saved[key]) for key, value in loaded.model.state_dict().items())
    assert loaded.processor.tokenizer("cup")["input_ids"] == processor.tokenizer("cup")["input_ids"]
    # The same weights through the loaded processor: transformers may pick another image
    # backend on reload (torchvision's where installed), whose resize differs slightly.
    image = np.random.default_rng(1).integers(0, 256, size=(64, 80, 3), dtype=np.uint8)
    original = OwlDetector(model, loaded.processor, min_score=0.0).detect(image, ["cup"])
    again = loaded.detect(image, ["cup"])
    assert again
    assert [(d.label, d.box) for d in again] == [(d.label, d.box) for d in original]
    assert [d.score for d in again] == pytest.approx([d.score for d in original], abs=1e-6)


def torch_equal(a, b):
    import torch

    return torch.equal(a, b)


# --- the production loader offline --------------------------------------------------------

@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """Offline, with a cache that holds nothing, whatever this machine has downloaded."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.mark.parametrize("name", ["owlv2", "grounding-dino", "google/owlvit-base-patch32"])
def test_production_loader_offline_names_the_model(empty_hub_cache, name):
    model_id = DETECTORS.get(name, name)
    with pytest.raises(MetricUnavailable, match=f"detector {model_id}.*HF_HUB_OFFLINE"):
        load_detector(name)


def test_default_detector_is_owlv2(empty_hub_cache):
    with pytest.raises(MetricUnavailable, match="google/owlv2-base-patch16-ensemble"):
        load_detector()


def test_unloadable_local_folders_raise_metric_unavailable(tmp_path):
    with pytest.raises(MetricUnavailable, match=f"cannot load the detector {tmp_path}"):
        load_detector(str(tmp_path))
    from transformers import CLIPTextConfig

    CLIPTextConfig(hidden_size=32).save_pretrained(tmp_path)
    with pytest.raises(MetricUnavailable, match="supports OWLv2"):
        load_detector(str(tmp_path))


def test_the_definitions_import_without_torch():
    probe = "import sys, engine.metrics.detection\nprint('torch' in sys.modules, 'transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
