"""CLIP score: how well an image matches its prompt, on the whole output and on the masked crop.

Definition (torchmetrics `CLIPScore`, Hessel et al. 2021 with w = 100), per image I, prompt C:

    clip(I, C) = max(100 · cos(E_I, E_C), 0)

E_I is CLIP's projected image embedding of I after CLIP's own preprocessing (resize the
shorter side to the input size with PIL bicubic, centre crop to a square, scale to [0, 1],
normalise with the CLIP mean/std); E_C is the projected text embedding of C (tokenised,
truncated to the text tower's length keeping the end token). Values lie in [0, 100]; higher
is better. The clamp is per sample: torchmetrics' class clamps the *mean* over its updates,
which is the same thing for one sample and for any set whose samples all have cos ≥ 0.

`ClipScorer.score` computes this directly with the CLIP model rather than through
torchmetrics, because torchmetrics' class only returns a clamped mean and its per-sample path
is private; the test checks equality with `torchmetrics.multimodal.CLIPScore` sample by
sample on the same model.

Two per-sample values, both on the saved 8-bit output:

- `clip_global`: the whole output image against the prompt (BrushBench's CLIP score). A
  non-square image loses its sides to CLIP's centre crop, as in torchmetrics.
- `clip_local` (HD-Painter's local CLIP score): the crop `crop_box(mask, CLIP_CROP_RULE)`
  (the mask's bounding box, padded by 10 % of its longer side and at least 8 px, made square
  with side at least 64 px, kept inside the image), resized to the CLIP input size (224 for
  ViT-B/16) with PIL bicubic (antialiased, the filter CLIP's preprocessing uses), so CLIP's
  own resize and centre crop leave it untouched. HD-Painter squares the box by padding; this
  rule squares it with surrounding image pixels instead (always possible inside the image).
  An empty mask has no local region: its `clip_local` is left out (missing, never 0).

The production model is `openai/clip-vit-base-patch16` (a hub id or a local folder);
`tiny_clip_scorer` builds a random tiny CLIP offline for tests and the demo: its numbers
exercise the pipeline and mean nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.metrics.base import EvalItem, MetricUnavailable
from engine.metrics.crop import CropRule, crop_box

if TYPE_CHECKING:
    import torch

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch16"
# Tight around the generated region (HD-Painter scores the object, not the scene); the
# minimum side keeps tiny masks from being upsampled more than ~3.5× to 224.
CLIP_CROP_RULE = CropRule(margin=0.1, min_padding=8, min_side=64)


class ClipScorer:
    """A CLIP model, its tokenizer and image preprocessing, reused for many images.

    `processor` is a CLIP image processor (`CLIPImageProcessorPil` in transformers 5,
    `CLIPImageProcessor` before); `model` a `CLIPModel` (or anything with the same
    `get_image_features`/`get_text_features`). Inference runs in batches of `batch_size`."""

    def __init__(self, model: Any, tokenizer: Any, processor: Any, *, name: str, batch_size: int = 32) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.processor = processor
        self.name = name
        self.batch_size = batch_size

    @property
    def device(self) -> "torch.device":
        return next(self.model.parameters()).device

    @property
    def input_size(self) -> int:
        """The side of the square CLIP looks at (its centre crop)."""
        crop = self.processor.crop_size
        return int(crop["height"]) if isinstance(crop, dict) else int(crop.height)

    @property
    def max_text_tokens(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)

    def embed_images(self, images: Sequence[np.ndarray]) -> "torch.Tensor":
        """L2-normalised image embeddings (N, d), float32 on the model's device."""
        import torch

        arrays = [_checked_image(image) for image in images]
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(arrays), self.batch_size):
                pixels = self.processor(
                    images=arrays[start : start + self.batch_size],
                    return_tensors="pt",
                    # Explicit, so a 3-pixel-high image is not read as channels-first.
                    input_data_format="channels_last",
                )["pixel_values"]
                features = _features(self.model.get_image_features(pixel_values=pixels.to(self.device)))
                chunks.append(features.float())
        embeddings = torch.cat(chunks) if chunks else torch.zeros(0, self.model.config.projection_dim)
        return embeddings / embeddings.norm(p=2, dim=-1, keepdim=True)

    def embed_texts(self, prompts: Sequence[str]) -> "torch.Tensor":
        """L2-normalised text embeddings (N, d), float32 on the model's device."""
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(prompts), self.batch_size):
                tokens = self.tokenizer(
                    list(prompts[start : start + self.batch_size]),
                    padding=True,
                    # Tokenizer truncation keeps the end token CLIP pools on; torchmetrics
                    # slices the ids instead, which differs only past 77 tokens.
                    truncation=True,
                    max_length=self.max_text_tokens,
                    return_tensors="pt",
                )
                features = self.model.get_text_features(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                )
                chunks.append(_features(features).float())
        embeddings = torch.cat(chunks) if chunks else torch.zeros(0, self.model.config.projection_dim)
        return embeddings / embeddings.norm(p=2, dim=-1, keepdim=True)

    def score(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> np.ndarray:
        """max(100 · cos(E_image, E_prompt), 0) for each pair (module docstring); `images`
        are uint8 (H, W, 3). Returns float64 (N,)."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if len(images) == 0:
            return np.zeros(0, dtype=np.float64)
        # Prompts repeat (local and global of one sample, many seeds): encode each once.
        unique = list(dict.fromkeys(prompts))
        index = {prompt: i for i, prompt in enumerate(unique)}
        texts = self.embed_texts(unique)[[index[p] for p in prompts]]
        cosine = (self.embed_images(images) * texts).sum(dim=-1)
        return (100.0 * cosine).clamp(min=0).cpu().double().numpy()


def _features(output: Any) -> "torch.Tensor":
    # transformers 5 returns an output object whose pooler_output is the projected
    # embedding; transformers 4 returns the tensor itself.
    return getattr(output, "pooler_output", output)


def _checked_image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"CLIP score expects uint8 (H, W, 3) images, got {array.dtype} {array.shape}")
    return array


def _image_processor_class():
    try:  # transformers 5: the default CLIP processor needs torchvision; the PIL one does not
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil
    except ImportError:  # transformers 4: CLIPImageProcessor is the PIL/numpy one
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor


def load_clip_scorer(model: str = DEFAULT_CLIP_MODEL, device: str | None = None, *, batch_size: int = 32) -> ClipScorer:
    """The CLIP model `model` (hub id or local folder) in float32 on `device` (default: CUDA
    if available). Raises MetricUnavailable, naming the model, when it cannot be loaded."""
    try:
        from transformers import AutoTokenizer, CLIPModel

        from engine.models import default_device

        clip = CLIPModel.from_pretrained(model)
        tokenizer = AutoTokenizer.from_pretrained(model)
        processor = _image_processor_class().from_pretrained(model)
    except (ImportError, OSError, ValueError) as error:
        # OSError covers offline/missing-cache/missing-folder; ValueError bad ids or configs.
        raise MetricUnavailable(
            f"CLIP score needs the CLIP model {model!r} (hub id or local folder), which cannot be "
            f"loaded here: {type(error).__name__}: {str(error).rstrip('.')}. Download it once with network access "
            f"(it is then cached) or pass a local folder."
        ) from error
    return ClipScorer(clip.to(device or default_device()), tokenizer, processor, name=model, batch_size=batch_size)


def tiny_clip_scorer(seed: int = 0, device: str = "cpu") -> ClipScorer:
    """A random-weight tiny CLIP (2-layer towers of width 32, ViT patch 32 at 224 px, the
    offline byte-level tokenizer), built deterministically from `seed` with no download.
    It runs the whole metric pipeline offline; its scores are meaningless."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from engine.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tower = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
    config = CLIPConfig(
        text_config=dict(
            tower,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(tower, image_size=224, patch_size=32),
        projection_dim=16,
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream alone
        torch.manual_seed(seed)
        model = CLIPModel(config)
    processor = _image_processor_class()(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    return ClipScorer(model.to(device), tokenizer, processor, name=f"tiny-clip(seed={seed})")


def local_clip_crop(item: EvalItem, size: int, rule: CropRule = CLIP_CROP_RULE) -> np.ndarray:
    """The output's crop that `clip_local` scores: `crop_box(mask, rule)` resized to
    size × size with PIL bicubic. Raises ValueError for an empty mask."""
    from PIL import Image

    output = _checked_image(item.output)
    if item.mask.shape != output.shape[:2]:
        raise ValueError(f"mask shape {item.mask.shape} differs from image shape {output.shape[:2]}")
    crop = crop_box(np.asarray(item.mask, dtype=bool), rule).cut(output)
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BICUBIC))


def local_clip_score(item: EvalItem, scorer: ClipScorer, rule: CropRule = CLIP_CROP_RULE) -> float:
    return float(scorer.score([local_clip_crop(item, scorer.input_size, rule)], [item.prompt])[0])


def global_clip_score(item: EvalItem, scorer: ClipScorer) -> float:
    return float(scorer.score([item.output], [item.prompt])[0])


def clip_sample_metrics(item: EvalItem, scorer: ClipScorer, rule: CropRule = CLIP_CROP_RULE) -> dict[str, float]:
    """{"clip_local", "clip_global"} for one sample (no "clip_local" for an empty mask)."""
    return clip_batch_metrics([item], scorer, rule)[0]


def clip_batch_metrics(
    items: Sequence[EvalItem], scorer: ClipScorer, rule: CropRule = CLIP_CROP_RULE
) -> list[dict[str, float]]:
    """`clip_sample_metrics` for many samples, scored in batched passes of the model."""
    images: list[np.ndarray] = []
    prompts: list[str] = []
    slots: list[tuple[int, str]] = []
    for position, item in enumerate(items):
        images.append(item.output)
        prompts.append(item.prompt)
        slots.append((position, "clip_global"))
        if np.asarray(item.mask).any():
            images.append(local_clip_crop(item, scorer.input_size, rule))
            prompts.append(item.prompt)
            slots.append((position, "clip_local"))
    results: list[dict[str, float]] = [{} for _ in items]
    for (position, key), value in zip(slots, scorer.score(images, prompts)):
        results[position][key] = float(value)
    # The same key order for every sample.
    return [{key: result[key] for key in ("clip_local", "clip_global") if key in result} for result in results]
