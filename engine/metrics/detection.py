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

Production loads a detector from transformers by hub id (`engine.metrics.detectors.load_detector`),
OWLv2 by default;
where it cannot be loaded the metric raises `MetricUnavailable`, so a run records it as
missing, never as 0. This module (the definitions) is torch-free; the detectors, which import
torch, live in engine/metrics/detectors.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Iterable, Mapping, Protocol

import numpy as np

from engine.metrics.base import EvalItem
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


__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "Detection",
    "Detector",
    "PrecisionResult",
    "box_iou",
    "box_xyxy",
    "is_hit",
    "prompt_phrase",
    "prompt_precision",
    "wilson_interval",
]
