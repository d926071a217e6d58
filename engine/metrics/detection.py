"""Prompt-following precision: does an open-vocabulary detector find the prompted object where
the mask asked for it?

Definitions, for samples i = 1..n with output image x_i, mask m_i and prompt p_i:

    phrase_i   = prompt_phrase(p_i, object_phrase_i)            see `prompt_phrase`
    B_i        = bounding box of m_i                             (crop.mask_bounding_box)
    D_i        = detector(x_i, [phrase_i])                       boxes in pixels of x_i
    hit_i      = ∃ d ∈ D_i:  d.label = phrase_i
                             and d.score ≥ score_threshold       (default 0.1)
                             and IoU(d.box, B_i) ≥ iou_threshold  (default 0.3)
    precision  = Σ hit_i / n,  with a Wilson score interval      see `wilson_interval`

Boxes. A detection box is (x0, y0, x1, y1) in continuous pixel coordinates: pixel (row r,
column c) covers [c, c+1) × [r, r+1). A `Box` from crop.py (top, bottom, left, right with
bottom/right exclusive indices) is therefore exactly the rectangle (left, top, right, bottom):
the exclusive end index is the far edge, so areas are plain products, without the "+1" of
inclusive-index conventions, and boxes that only touch have IoU 0.

Why the whole image and not the mask crop (HD-Painter's generation accuracy runs the detector
on the crop): the detector sees the object in context, and the IoU test is what ties the
detection to the masked region, so an object the background already had next to the mask
does not count as a hit, as it could inside a padded crop.

Defaults. score_threshold 0.1 is OWL-ViT/OWLv2's own post-processing default in transformers
and in the authors' examples; Grounding DINO's demos use a box threshold of 0.35, so pass that
explicitly when comparing with its literature. iou_threshold 0.3 rather than COCO's 0.5
because the reference is the mask's box, not the object's: masks (and box masks especially)
are drawn looser than the object, and a detection lying wholly inside the mask box passes
exactly when it covers at least 30% of the box's area.

Production loads a detector from transformers by hub id (`load_detector`), OWLv2 by default;
where it cannot be loaded the metric raises `MetricUnavailable`, so a run records it as
missing, never as 0. Only the definitions above are torch-free; detectors import torch.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np

from engine.metrics.base import EvalItem, MetricUnavailable
from engine.metrics.crop import Box, mask_bounding_box


XYXY = tuple[float, float, float, float]

# Short names for the `detector` option -> hub id (a hub id or local folder is also accepted).
DETECTORS: dict[str, str] = {
    "owlv2": "google/owlv2-base-patch16-ensemble",
    "owlvit": "google/owlvit-base-patch32",
    "grounding-dino": "IDEA-Research/grounding-dino-tiny",
}
DEFAULT_DETECTOR = "owlv2"

DEFAULT_SCORE_THRESHOLD = 0.1
DEFAULT_IOU_THRESHOLD = 0.3
# Detectors drop boxes below this before they reach the hit rule (OWLv2 returns one box per
# image patch, 3600 at 960 px); hit thresholds below it therefore see no extra detections.
DEFAULT_MIN_SCORE = 0.05


@dataclass(frozen=True)
class Detection:
    """One detected box: `label` is the query phrase it answers, `box` (x0, y0, x1, y1) in
    continuous pixel coordinates of the image given to the detector (see module docstring)."""

    label: str
    score: float
    box: XYXY


class Detector(Protocol):
    def detect(self, image: np.ndarray, phrases: list[str]) -> list[Detection]:
        """Detections of `phrases` in a uint8 (H, W, 3) image, boxes inside the image."""
        ...


# --- the phrase ---------------------------------------------------------------------------

_ARTICLES = {"a", "an", "the"}


def prompt_phrase(prompt: str, object_phrase: str | None = None) -> str:
    """The phrase the detector is asked for.

    An explicit `object_phrase` (sample metadata) wins when it is not blank. Otherwise the
    prompt's first clause: the text before the first "," or ";", since what follows is
    usually style ("a white space helmet, highly detailed"), while "a cup of coffee on a
    saucer" stays whole (the open-vocabulary detector takes the phrase as it is). Either way
    the phrase is lower-cased, whitespace collapsed, outer punctuation (.!?) stripped and one
    leading article (a, an, the) removed, so that "A cup." and "the cup" give the same label.
    """
    explicit = object_phrase is not None and object_phrase.strip() != ""
    text = " ".join((object_phrase if explicit else prompt).split()).lower()
    if not explicit:
        text = re.split(r"[,;]", text, maxsplit=1)[0]
    words = text.strip(" .!?").split()
    if len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    if not words:
        raise ValueError(f"no object phrase in prompt {prompt!r}")
    return " ".join(words)


def _same_phrase(label: str, phrase: str) -> bool:
    # Case and spacing only: detectors may lower-case their queries (Grounding DINO does).
    return " ".join(label.lower().split()) == " ".join(phrase.lower().split())


# --- boxes and the hit rule ---------------------------------------------------------------

def box_xyxy(box: Box) -> XYXY:
    """A crop.py `Box` as (x0, y0, x1, y1): its exclusive ends are the far edges."""
    return (float(box.left), float(box.top), float(box.right), float(box.bottom))


def box_iou(a: XYXY, b: XYXY) -> float:
    """Intersection over union of two (x0, y0, x1, y1) rectangles; 0 when they are disjoint
    or only touch, and 0 when both are empty."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def is_hit(
    detections: Iterable[Detection],
    phrase: str,
    mask_box: Box,
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
) -> bool:
    """True when some detection of `phrase` has score ≥ score_threshold and
    IoU(detection box, mask box) ≥ iou_threshold (both inclusive; see module docstring)."""
    reference = box_xyxy(mask_box)
    return any(
        _same_phrase(d.label, phrase) and d.score >= score_threshold and box_iou(d.box, reference) >= iou_threshold
        for d in detections
    )


# --- the proportion and its interval ------------------------------------------------------

def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion: with p̂ = k/n and z the two-sided
    normal quantile of `confidence`,

        centre = (p̂ + z²/2n) / (1 + z²/n),  half = z/(1 + z²/n) · √(p̂(1−p̂)/n + z²/4n²)

    i.e. the p with (p̂ − p)² ≤ z²·p(1−p)/n. Unlike p̂ ± z√(p̂(1−p̂)/n) it stays inside [0, 1]
    and is not empty at 0/n or n/n, which small runs hit often. n = 0 gives (0, 1)."""
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 ≤ successes ≤ n, got {successes}/{n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At 0/n and n/n an end is exactly 0 or 1 in exact arithmetic; floats leave ~1e-17 there.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class PrecisionResult:
    """hits of n samples; `per_sample`, `phrases` and `sample_ids` follow the items' order;
    `interval` is the Wilson interval at `confidence`. precision is NaN when n = 0."""

    hits: int
    n: int
    precision: float
    per_sample: list[bool]
    interval: tuple[float, float]
    confidence: float = 0.95
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    iou_threshold: float = DEFAULT_IOU_THRESHOLD
    phrases: list[str] = field(default_factory=list)
    sample_ids: list[str] = field(default_factory=list)


def prompt_precision(
    items: Iterable[EvalItem],
    detector: Detector,
    *,
    phrases: Mapping[str, str] | None = None,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    confidence: float = 0.95,
) -> PrecisionResult:
    """The share of items whose output shows the prompted object in the mask's box (module
    docstring). `phrases` maps sample_id -> explicit object phrase (metadata `object_phrase`);
    items without one use their prompt. An empty mask is an error: nothing was asked for."""
    phrases = phrases or {}
    per_sample: list[bool] = []
    used: list[str] = []
    ids: list[str] = []
    for item in items:
        phrase = prompt_phrase(item.prompt, phrases.get(item.sample_id))
        try:
            mask_box = mask_bounding_box(item.mask)
        except ValueError as error:
            raise ValueError(f"sample {item.sample_id!r}: {error}") from None
        detections = detector.detect(item.output, [phrase])
        per_sample.append(
            is_hit(detections, phrase, mask_box, score_threshold=score_threshold, iou_threshold=iou_threshold)
        )
        used.append(phrase)
        ids.append(item.sample_id)
    hits, n = sum(per_sample), len(per_sample)
    return PrecisionResult(
        hits=hits,
        n=n,
        precision=hits / n if n else math.nan,
        per_sample=per_sample,
        interval=wilson_interval(hits, n, confidence),
        confidence=confidence,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        phrases=used,
        sample_ids=ids,
    )


# --- detectors (torch) --------------------------------------------------------------------

def _as_pil(image: np.ndarray):
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {array.dtype} {array.shape}")
    return Image.fromarray(array)


def _clipped(box: Sequence[float], height: int, width: int) -> XYXY | None:
    """The box clipped to the image, or None when nothing of it lies inside (OWLv2 pads
    images to a square, so it can place boxes in the padding)."""
    x0, x1 = (min(max(float(v), 0.0), float(width)) for v in (box[0], box[2]))
    y0, y1 = (min(max(float(v), 0.0), float(height)) for v in (box[1], box[3]))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


class OwlDetector:
    """OWL-ViT or OWLv2 (transformers): all phrases are scored in one forward pass; each image
    patch yields one box with its best phrase. The processor's post-processing knows each
    model's geometry (OWLv2 pads to a square, OWL-ViT stretches), so boxes come back in pixels
    of the given image; they are then clipped to it."""

    def __init__(self, model: Any, processor: Any, *, device: str = "cpu", min_score: float = DEFAULT_MIN_SCORE,
                 name: str = "owl"):
        self.model = model
        self.processor = processor
        self.device = device
        self.min_score = min_score
        self.name = name

    def _max_text_length(self) -> int:
        # The text tower's position table (16 for the released models) bounds the query;
        # longer phrases are truncated rather than failing.
        config = getattr(self.model, "config", None)
        text_config = getattr(config, "text_config", None)
        length = getattr(text_config, "max_position_embeddings", None)
        return int(length) if length else int(self.processor.tokenizer.model_max_length)

    def detect(self, image: np.ndarray, phrases: list[str]) -> list[Detection]:
        import torch

        if not phrases:
            return []
        picture = _as_pil(image)
        height, width = np.asarray(image).shape[:2]
        inputs = self.processor(
            text=[list(phrases)], images=picture, return_tensors="pt",
            padding="max_length", truncation=True, max_length=self._max_text_length(),
        ).to(self.device)
        with torch.no_grad():
            outputs = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            outputs, threshold=self.min_score, target_sizes=[(height, width)]
        )[0]
        detections = []
        for score, label, box in zip(result["scores"].tolist(), result["labels"].tolist(), result["boxes"].tolist()):
            clipped = _clipped(box, height, width)
            if clipped is not None:
                detections.append(Detection(phrases[int(label)], float(score), clipped))
        return detections


class GroundingDinoDetector:
    """Grounding DINO (transformers). One forward pass per phrase: its labels are decoded
    token spans, which need not equal the phrase, and with a single phrase every box answers
    it. The phrase is lower-cased and ended with ".", as the model was trained."""

    def __init__(self, model: Any, processor: Any, *, device: str = "cpu", min_score: float = DEFAULT_MIN_SCORE,
                 name: str = "grounding-dino"):
        self.model = model
        self.processor = processor
        self.device = device
        self.min_score = min_score
        self.name = name

    def detect(self, image: np.ndarray, phrases: list[str]) -> list[Detection]:
        import torch

        picture = _as_pil(image)
        height, width = np.asarray(image).shape[:2]
        detections = []
        for phrase in phrases:
            query = phrase.strip().lower().rstrip(".") + "."
            inputs = self.processor(images=picture, text=query, return_tensors="pt").to(self.device)
            with torch.no_grad():
                outputs = self.model(**inputs)
            # Token labels are not used (every box answers the one phrase): a text threshold no
            # probability exceeds skips decoding them.
            result = self.processor.post_process_grounded_object_detection(
                outputs, inputs["input_ids"], threshold=self.min_score, text_threshold=1.0,
                target_sizes=[(height, width)],
            )[0]
            for score, box in zip(result["scores"].tolist(), result["boxes"].tolist()):
                clipped = _clipped(box, height, width)
                if clipped is not None:
                    detections.append(Detection(phrase, float(score), clipped))
        return detections


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _ensure_available(source: str) -> None:
    """Fail fast, before any hub timeout, when a hub detector is neither local nor cached."""
    if Path(source).expanduser().is_dir():
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        return
    hint = f"Download it with `hf download {source}` where the hub is reachable, or pass a local model folder."
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise MetricUnavailable(
            f"prompt precision needs the detector {source}, which is not in the local cache "
            f"and HF_HUB_OFFLINE is set. {hint}"
        )
    from huggingface_hub import model_info

    try:
        model_info(source, timeout=10)
    except Exception as error:  # any failure here means the download would fail too
        raise MetricUnavailable(
            f"prompt precision needs the detector {source}, which is not cached and the hub cannot be reached "
            f"({type(error).__name__}). {hint}"
        ) from None


def load_detector(
    name: str = DEFAULT_DETECTOR, device: str | None = None, *, min_score: float = DEFAULT_MIN_SCORE
) -> OwlDetector | GroundingDinoDetector:
    """A detector by short name (DETECTORS), hub id or local folder, in float32 (scores then
    agree across CPU and GPU up to rounding). Raises MetricUnavailable naming the model when
    it cannot be loaded here."""
    source = DETECTORS.get(name, name)
    _ensure_available(source)
    from transformers import AutoConfig, AutoModelForZeroShotObjectDetection, AutoProcessor

    try:
        config = AutoConfig.from_pretrained(source)
        if config.model_type not in ("owlv2", "owlvit", "grounding-dino"):
            raise MetricUnavailable(
                f"{source} is a {config.model_type!r} model; "
                "prompt precision supports OWLv2, OWL-ViT and Grounding DINO"
            )
        processor = AutoProcessor.from_pretrained(source)
        model = AutoModelForZeroShotObjectDetection.from_pretrained(source)
    except (OSError, ValueError, ImportError, KeyError) as error:
        raise MetricUnavailable(f"prompt precision cannot load the detector {source}: {error}") from error
    device = device or _default_device()
    model = model.float().to(device).eval().requires_grad_(False)
    kind = GroundingDinoDetector if config.model_type == "grounding-dino" else OwlDetector
    return kind(model, processor, device=device, min_score=min_score, name=source)


__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "Detection",
    "Detector",
    "GroundingDinoDetector",
    "OwlDetector",
    "PrecisionResult",
    "box_iou",
    "box_xyxy",
    "is_hit",
    "load_detector",
    "prompt_phrase",
    "prompt_precision",
    "wilson_interval",
]


def tiny_owl(seed: int = 0) -> tuple[Any, Any]:
    """A random OWLv2 with tiny towers and a processor built offline (64 px input): for tests
    and the offline `tiny` evaluation models. Its detections mean nothing."""
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2Processor

    try:
        from transformers import Owlv2ImageProcessorPil as image_processor_class
    except ImportError:  # transformers 4: the default processor needs no torchvision
        from transformers import Owlv2ImageProcessor as image_processor_class

    from engine.models import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = Owlv2Config(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4,
            num_hidden_layers=2, max_position_embeddings=16, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            image_size=64, patch_size=16,
        ),
        projection_dim=32,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Owlv2ForObjectDetection(config).eval()
    processor = Owlv2Processor(image_processor=image_processor_class(size={"height": 64, "width": 64}),
                               tokenizer=tokenizer)
    return model, processor


def tiny_detector(seed: int = 0) -> "OwlDetector":
    model, processor = tiny_owl(seed)
    return OwlDetector(model, processor, device="cpu", name=f"tiny-owlv2-{seed}")
