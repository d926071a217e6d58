"""The detectors behind prompt precision (engine/metrics/detection.py holds the definition):
OWLv2 / OWL-ViT and Grounding DINO through transformers, loading by short name, hub id or local
folder, and a tiny random OWLv2 built offline for tests. These import torch; the definition
does not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engine.metrics.base import MetricUnavailable
from engine.metrics.detection import DEFAULT_DETECTOR, DEFAULT_MIN_SCORE, DETECTORS, XYXY, Detection


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




def tiny_owl(seed: int = 0) -> tuple[Any, Any]:
    """A random OWLv2 with tiny towers and a processor built offline (64 px input): for tests
    and the offline `tiny` evaluation models. Its detections mean nothing."""
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2Processor

    try:
        from transformers import Owlv2ImageProcessorPil as image_processor_class
    except ImportError:  # transformers 4: the default processor needs no torchvision
        from transformers import Owlv2ImageProcessor as image_processor_class

    from engine.tiny import tiny_tokenizer

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


__all__ = ["GroundingDinoDetector", "OwlDetector", "load_detector", "tiny_detector", "tiny_owl"]
