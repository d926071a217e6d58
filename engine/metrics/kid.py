"""Kept in one file: the KID definition, its crops, the feature extractors and the reference cache are read together.

KID on the masked crop: how far the generated regions are, as a set, from the ground truth.

Definition (Bińkowski et al., arXiv 1801.01401; the estimator torchmetrics'
`KernelInceptionDistance` computes):

1. Crops. For every item, the box `crop_box(mask, rule)` (engine/metrics/crop.py) is cut from
   the saved output and from the reference (ground truth) at the working size, and each crop is
   resized to `feature.input_size` × `feature.input_size` with PIL bicubic (antialiased when
   shrinking), staying uint8. Both sides go through the same steps.
2. Features. `feature(crops)` gives one d-dimensional vector per crop: X = output features
   (N × d), Y = reference features (N × d). Production uses Inception-v3 pool features
   (d = 2048, torch-fidelity's weights, through torchmetrics), see `inception_extractor`.
3. Kernel: k(a, b) = (aᵀb / d + 1)³.
4. Subsets. m = min(subset_size, N_X, N_Y). For s = 1 … `subsets`, a torch generator seeded
   with `seed` draws `randperm(N_Y)[:m]` (reference side) then `randperm(N_X)[:m]` (output
   side) — the order torchmetrics uses, but with our own generator, so the value does not
   depend on (or disturb) the global RNG. `draw_subsets` returns these indices.
5. Unbiased MMD² on each subset pair x_1…x_m, y_1…y_m:

       MMD²_s = Σ_{i≠j} k(x_i, x_j) / (m(m−1)) + Σ_{i≠j} k(y_i, y_j) / (m(m−1))
                − 2 Σ_{i,j} k(x_i, y_j) / m²

6. KID = mean over s of MMD²_s; std = population standard deviation over s (torchmetrics'
   `std(unbiased=False)`). Values are raw, not ×10³. The estimator is unbiased for
   independent draws, so it can be negative; the very same images on both sides give a small
   negative value of order 1/m (their k(x_i, x_i) enter the cross term but not the others).

Why not `KernelInceptionDistance.compute()` itself: it draws its subsets from torch's global
RNG and extracts both sides on every call, so it could neither be seeded in isolation nor
reuse cached reference features. torchmetrics provides the Inception module; steps 3–6 are
computed here, and the tests check them against torchmetrics on the same features.

Arithmetic is float64: the three kernel sums nearly cancel, and torchmetrics' float32 (the
features' dtype for Inception) differs from it by ~1e-4 relative on 500 × 2048 features.
When the sets are small enough (`GRAM_LIMIT`) the three Gram matrices are built once and every
subset's sums come from them; otherwise each subset builds its own kernels. Both give the same
numbers up to float64 rounding.

Choices:
* `subset_size` larger than the number of samples is reduced to it (torchmetrics refuses);
  the result's `warnings` says so. With m = N every subset is the whole set, so std = 0.
* Items without a reference: if no item has one, KID cannot run here and `MetricUnavailable`
  is raised; if only some lack one, that is an error naming them by default
  (`missing_reference="error"`, a mixed set is usually a mistake), or those items are left out
  of both sides with a warning (`missing_reference="skip"`). At least 2 usable items are needed.
* Reference features are cached per reference crop (`ReferenceCache`), keyed by the crop's
  pixels, `rule.key()`, `feature.name` and `feature.input_size`: a second run on the same
  dataset only extracts the outputs' features. Outputs are never cached.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from engine.metrics.base import EvalItem, MetricUnavailable
from engine.metrics.crop import CropRule, crop_box

if TYPE_CHECKING:
    import torch

# Above this many samples per side the three N×N float64 Gram matrices (8·N² bytes each)
# would cost more memory than recomputing each subset's kernels.
GRAM_LIMIT = 4096

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


@dataclass(frozen=True)
class KidResult:
    mean: float
    std: float
    subset_size: int  # m actually used (after any reduction)
    n: int  # items on each side
    warnings: tuple[str, ...] = ()
    subsets: int = 0
    feature: str = ""
    rule: str = ""


# --------------------------------------------------------------------------- features


class FeatureExtractor(ABC):
    """Images → one feature vector each.

    `name` is a stable id (it keys the reference cache: change it when the weights or the
    layer change); `input_size` is the square side crops are resized to before the call.
    `__call__` accepts uint8 (N, H, W, 3) (numpy or torch) or float (N, 3, H, W) in [0, 1]
    (torch or numpy), runs `forward` on float NCHW in [0, 1] in chunks of `batch_size` without
    gradients, and returns a numpy (N, d) array."""

    name: str
    input_size: int
    batch_size: int = 32

    @abstractmethod
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """float32 (n, 3, S, S) in [0, 1] → (n, d)."""

    @property
    def device(self) -> Any:
        return "cpu"

    def __call__(self, images: Any) -> np.ndarray:
        import torch

        batch = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
        if len(batch) == 0:
            raise ValueError("no images to extract features from")
        step = max(1, int(self.batch_size))
        chunks = []
        with torch.no_grad():
            for start in range(0, len(batch), step):
                # Converted chunk by chunk: 1000 crops at 299 px would be 1 GB as float32 at once.
                part = _as_unit_nchw(batch[start : start + step]).to(self.device)
                out = self.forward(part)
                if out.ndim != 2 or out.shape[0] != len(part):
                    raise ValueError(
                        f"feature extractor {self.name!r} returned shape {tuple(out.shape)}, "
                        f"expected ({len(part)}, d)"
                    )
                chunks.append(out.detach().to("cpu"))
        return torch.cat(chunks).numpy()


class ModuleExtractor(FeatureExtractor):
    """Any `torch.nn.Module` mapping float NCHW in [0, 1] to (N, d) features."""

    def __init__(self, module: Any, *, name: str, input_size: int, batch_size: int = 32) -> None:
        self.module = module.eval()
        self.name = name
        self.input_size = int(input_size)
        self.batch_size = batch_size

    @property
    def device(self) -> Any:
        parameter = next(iter(self.module.parameters()), None)
        return "cpu" if parameter is None else parameter.device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.module(images)


class _InceptionExtractor(FeatureExtractor):
    """torchmetrics' `NoTrainInceptionV3` (torch-fidelity's port of the TF FID Inception),
    which wants uint8 NCHW and resizes to 299 itself (a no-op here: crops arrive at 299)."""

    input_size = 299

    def __init__(self, module: Any, features: int, device: Any, batch_size: int) -> None:
        self.module = module.to(device)
        self._device = device
        self.name = f"inception-v3-compat-pool{features}" if features == 2048 else f"inception-v3-compat-{features}"
        self.batch_size = batch_size

    @property
    def device(self) -> Any:
        return self._device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        import torch

        # Back to exact uint8: k/255·255 rounds to k, so nothing is lost for 8-bit inputs.
        return self.module((images * 255).round().clamp(0, 255).to(torch.uint8))


def tiny_extractor(*, seed: int = 0, input_size: int = 64, channels: int = 16) -> FeatureExtractor:
    """A fixed random conv net (7×7, stride 4, ReLU, global mean and max pool: 2·channels-d),
    for offline runs with the tiny model and for benchmarks. Deterministic for a seed, no
    weights to load; its KID values only show whether the pipeline runs and responds to change,
    they are not comparable with Inception KID."""
    import torch

    class RandomConvFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, channels, 7, stride=4)
            generator = torch.Generator().manual_seed(int(seed))  # not the global RNG
            with torch.no_grad():
                self.conv.weight.copy_(0.1 * torch.randn(self.conv.weight.shape, generator=generator))
                self.conv.bias.zero_()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.conv(2 * x - 1))
            return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)

    name = f"tiny-random-conv-seed{seed}-c{channels}"
    return ModuleExtractor(RandomConvFeatures(), name=name, input_size=input_size)


def inception_extractor(
    *, features: int = 2048, device: Any = None, weights_path: str | os.PathLike | None = None, batch_size: int = 32
) -> FeatureExtractor:
    """The production features: Inception-v3 pool (2048-d) as torchmetrics' KID uses them.

    Needs the `torch-fidelity` package and its weights (`INCEPTION_WEIGHTS_FILE`, downloaded
    from GitHub into torch hub's checkpoints folder on first use, or given as `weights_path`).
    Raises `MetricUnavailable` saying which is missing."""
    if importlib.util.find_spec("torch_fidelity") is None:
        raise MetricUnavailable(
            "KID needs the torch-fidelity package for its Inception features, and it is not installed "
            "(pip install torch-fidelity, or torchmetrics[image]); the weights are then downloaded from GitHub "
            f"on first use ({INCEPTION_WEIGHTS_FILE})"
        )
    import torch

    try:
        module = _load_inception(features, weights_path)
    except Exception as error:  # no network, a blocked or truncated download: the metric is missing
        where = weights_path or Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
        raise MetricUnavailable(
            f"KID's Inception weights could not be loaded ({type(error).__name__}: {error}); torch-fidelity "
            f"downloads them from GitHub on first use. Put {INCEPTION_WEIGHTS_FILE} at {where} "
            "(or pass weights_path) to compute KID offline"
        ) from error
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return _InceptionExtractor(module, features, device, batch_size)


def _load_inception(features: int, weights_path: str | os.PathLike | None) -> Any:
    from torchmetrics.image.fid import NoTrainInceptionV3

    return NoTrainInceptionV3(
        name="inception-v3-compat",
        features_list=[str(features)],
        feature_extractor_weights_path=None if weights_path is None else str(weights_path),
    )


def _as_unit_nchw(images: Any) -> torch.Tensor:
    """uint8 NHWC or float NCHW in [0, 1] (numpy or torch) → float32 NCHW in [0, 1]."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if tensor.ndim != 4:
        raise ValueError(f"expected a batch (N, H, W, 3) uint8 or (N, 3, H, W) float, got shape {tuple(tensor.shape)}")
    if tensor.dtype == torch.uint8:
        if tensor.shape[-1] != 3:
            raise ValueError(f"uint8 batches are NHWC with 3 channels, got shape {tuple(tensor.shape)}")
        return tensor.permute(0, 3, 1, 2).float() / 255.0
    if tensor.shape[1] != 3:
        raise ValueError(f"float batches are NCHW with 3 channels in [0, 1], got shape {tuple(tensor.shape)}")
    return tensor.float()


# --------------------------------------------------------------------------- cache


@dataclass(frozen=True)
class CacheKey:
    """What a cached reference feature vector depends on."""

    content: str  # digest of the reference crop's pixels (before resizing)
    rule: str  # CropRule.key()
    feature: str  # FeatureExtractor.name
    input_size: int

    def digest(self) -> str:
        text = f"{self.content}|{self.rule}|{self.feature}|{self.input_size}"
        return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def reference_key(crop: np.ndarray, rule: CropRule, feature: FeatureExtractor) -> CacheKey:
    pixels = np.ascontiguousarray(crop)
    content = hashlib.blake2b(f"{pixels.shape}|{pixels.dtype}".encode(), digest_size=20)
    content.update(pixels.tobytes())
    return CacheKey(content.hexdigest(), rule.key(), feature.name, int(feature.input_size))


class ReferenceCache(ABC):
    """Reference features by `CacheKey`; `hits` and `misses` count lookups."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> np.ndarray | None:
        found = self._load(key.digest())
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, key: CacheKey, features: np.ndarray) -> None:
        self._save(key.digest(), np.asarray(features))

    @abstractmethod
    def _load(self, digest: str) -> np.ndarray | None: ...

    @abstractmethod
    def _save(self, digest: str, features: np.ndarray) -> None: ...


class MemoryReferenceCache(ReferenceCache):
    def __init__(self) -> None:
        super().__init__()
        self._entries: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _load(self, digest: str) -> np.ndarray | None:
        return self._entries.get(digest)

    def _save(self, digest: str, features: np.ndarray) -> None:
        stored = features.copy()
        stored.flags.writeable = False  # callers must not edit what later hits will return
        self._entries[digest] = stored


class DirectoryReferenceCache(ReferenceCache):
    """One `<digest>.npy` per reference crop in `folder` (created on first write). Writes go
    to a temporary file in the same folder and are renamed into place, so a reader never sees
    half a file; an unreadable file counts as a miss and is rewritten."""

    def __init__(self, folder: str | os.PathLike) -> None:
        super().__init__()
        self.folder = Path(folder)

    def __len__(self) -> int:
        return len(list(self.folder.glob("*.npy"))) if self.folder.is_dir() else 0

    def _path(self, digest: str) -> Path:
        return self.folder / f"{digest}.npy"

    def _load(self, digest: str) -> np.ndarray | None:
        path = self._path(digest)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None

    def _save(self, digest: str, features: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{digest}.", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(handle, "wb") as file:
                np.save(file, features, allow_pickle=False)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self._path(digest))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


# --------------------------------------------------------------------------- KID


def crop_pair(item: EvalItem, rule: CropRule = CropRule()) -> tuple[np.ndarray, np.ndarray]:
    """The rule's box cut from the item's output and reference, at the working size (uint8)."""
    if item.reference is None:
        raise ValueError(f"sample {item.sample_id!r} has no reference image")
    output, reference = np.asarray(item.output), np.asarray(item.reference)
    if output.shape != reference.shape or output.shape[:2] != np.shape(item.mask):
        raise ValueError(
            f"sample {item.sample_id!r}: output {output.shape}, reference {reference.shape} and mask "
            f"{np.shape(item.mask)} must share the working size"
        )
    try:
        box = crop_box(np.asarray(item.mask), rule)
    except ValueError as error:
        raise ValueError(f"sample {item.sample_id!r}: {error}") from error
    return box.cut(output), box.cut(reference)


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """uint8 (h, w, 3) → uint8 (size, size, 3), PIL bicubic (antialiased when shrinking)."""
    image = Image.fromarray(np.ascontiguousarray(crop, dtype=np.uint8), mode="RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image)


def draw_subsets(
    n_reference: int, n_output: int, *, subsets: int, subset_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The subset indices KID uses: (reference, output), each int64 (subsets, subset_size);
    per subset the reference draw comes first (step 4 of the module docstring)."""
    import torch

    if subset_size > min(n_reference, n_output):
        raise ValueError(f"subset_size {subset_size} exceeds the samples ({n_reference} reference, {n_output} output)")
    generator = torch.Generator().manual_seed(int(seed))
    reference_rows, output_rows = [], []
    for _ in range(subsets):
        reference_rows.append(torch.randperm(n_reference, generator=generator)[:subset_size])
        output_rows.append(torch.randperm(n_output, generator=generator)[:subset_size])
    return torch.stack(reference_rows).numpy(), torch.stack(output_rows).numpy()


def kid_from_features(
    reference_features: np.ndarray,
    output_features: np.ndarray,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    feature: str = "",
    rule: str = "",
    warnings: Sequence[str] = (),
) -> KidResult:
    """Steps 3–6 of the module docstring on precomputed (N, d) features."""
    import torch

    y = torch.as_tensor(np.asarray(reference_features), dtype=torch.float64)
    x = torch.as_tensor(np.asarray(output_features), dtype=torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"features must be (N, d) with the same d, got {tuple(y.shape)} and {tuple(x.shape)}")
    if not (isinstance(subsets, int) and subsets > 0):
        raise ValueError(f"subsets must be a positive integer, got {subsets!r}")
    if not (isinstance(subset_size, int) and subset_size > 1):
        raise ValueError(f"subset_size must be an integer of at least 2, got {subset_size!r}")
    notes = list(warnings)
    available = min(len(x), len(y))
    if available < 2:
        raise ValueError(f"KID needs at least 2 samples on each side, got {len(y)} reference and {len(x)} output")
    m = subset_size
    every_subset_whole = False
    if m > available:
        m = available
        every_subset_whole = len(x) == len(y) == m
        notes.append(
            f"subset_size {subset_size} reduced to {m}, the number of samples"
            + ("; every subset is the whole set, so std is 0" if every_subset_whole else "")
        )
    reference_index, output_index = draw_subsets(len(y), len(x), subsets=subsets, subset_size=m, seed=seed)
    d = x.shape[1]

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ b.T / d + 1.0) ** 3

    if max(len(x), len(y)) <= GRAM_LIMIT:
        # Subsets overlap heavily: kernels on the whole sets once. With w_s the 0/1 indicator
        # of subset s (drawn without replacement), Σ_{i,j∈s} K_ij = w_sᵀ K w_s and the diagonal
        # part is w_sᵀ diag(K): all subsets in a few matrix products instead of a gather loop.
        def indicators(index: np.ndarray, count: int) -> torch.Tensor:
            w = torch.zeros(len(index), count, dtype=torch.float64)
            return w.scatter_(1, torch.from_numpy(index), 1.0)

        w_x, w_y = indicators(output_index, len(x)), indicators(reference_index, len(y))
        gram_xx, gram_yy, gram_xy = kernel(x, x), kernel(y, y), kernel(x, y)
        sum_xx = ((w_x @ gram_xx) * w_x).sum(dim=1) - w_x @ gram_xx.diagonal()
        sum_yy = ((w_y @ gram_yy) * w_y).sum(dim=1) - w_y @ gram_yy.diagonal()
        sum_xy = ((w_x @ gram_xy) * w_y).sum(dim=1)
        scores = ((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * sum_xy / (m * m)).numpy()
    else:
        values = []
        for r_idx, o_idx in zip(torch.from_numpy(reference_index), torch.from_numpy(output_index)):
            xs, ys = x[o_idx], y[r_idx]
            k_xx, k_yy, k_xy = kernel(xs, xs), kernel(ys, ys), kernel(xs, ys)
            within = k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()
            values.append(float(within / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m)))
        scores = np.asarray(values, dtype=np.float64)
    return KidResult(
        mean=float(scores.mean()),
        # Population std, as torchmetrics. Identical subsets differ only in summation order
        # (scores 1e-16 apart): their std is exactly 0, not rounding noise shown as ±4.44e-16.
        std=0.0 if every_subset_whole else float(scores.std()),
        subset_size=m,
        n=available,
        warnings=tuple(notes),
        subsets=subsets,
        feature=feature,
        rule=rule,
    )


def kid_on_masked_crop(
    items: Sequence[EvalItem],
    *,
    rule: CropRule = CropRule(),
    feature: FeatureExtractor | None = None,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    cache: ReferenceCache | None = None,
    missing_reference: Literal["error", "skip"] = "error",
) -> KidResult:
    """KID between the outputs' and the references' masked crops (module docstring).
    `feature` defaults to `inception_extractor()` (which may raise `MetricUnavailable`)."""
    if missing_reference not in ("error", "skip"):
        raise ValueError(f"missing_reference must be 'error' or 'skip', got {missing_reference!r}")
    notes: list[str] = []
    missing = [item.sample_id for item in items if item.reference is None]
    usable = [item for item in items if item.reference is not None]
    if not usable:
        raise MetricUnavailable("KID needs reference (ground-truth) images and none of the samples has one")
    if missing:
        listed = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        if missing_reference == "error":
            raise ValueError(f"KID needs a reference for every sample; missing for {len(missing)}: {listed}")
        notes.append(f"{len(missing)} sample(s) without a reference left out: {listed}")
    if len(usable) < 2:
        raise ValueError(f"KID needs at least 2 samples with a reference, got {len(usable)}")
    if feature is None:
        feature = inception_extractor()
    gathered = KidFeatures(feature, rule=rule, cache=cache)
    gathered.add(usable)
    return gathered.result(subsets=subsets, subset_size=subset_size, seed=seed, warnings=notes)


class KidFeatures:
    """Steps 1–2 of the module docstring item by item: the masked crops' features of outputs
    and references, gathered from chunks of items (all with a reference) so that a run's
    evaluation holds (N, d) features, not every sample's images; `result` is steps 3–6."""

    def __init__(self, feature: FeatureExtractor, *, rule: CropRule = CropRule(),
                 cache: ReferenceCache | None = None) -> None:
        self.feature, self.rule, self.cache = feature, rule, cache
        self._outputs: list[np.ndarray] = []
        self._references: list[np.ndarray] = []
        self.count = 0

    def add(self, items: Sequence[EvalItem]) -> None:
        if not items:
            return
        if any(item.reference is None for item in items):
            raise ValueError("KidFeatures takes items with a reference only")
        size = int(self.feature.input_size)
        output_crops, reference_crops = zip(*(crop_pair(item, self.rule) for item in items))
        self._outputs.append(self.feature(np.stack([resize_crop(crop, size) for crop in output_crops])))
        self._references.append(_reference_features(reference_crops, self.rule, self.feature, self.cache))
        self.count += len(items)

    def result(self, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0,
               warnings: Sequence[str] = ()) -> KidResult:
        if self.count < 2:
            raise ValueError(f"KID needs at least 2 samples with a reference, got {self.count}")
        return kid_from_features(
            np.concatenate(self._references),
            np.concatenate(self._outputs),
            subsets=subsets,
            subset_size=subset_size,
            seed=seed,
            feature=self.feature.name,
            rule=self.rule.key(),
            warnings=warnings,
        )


def _reference_features(
    crops: Sequence[np.ndarray], rule: CropRule, feature: FeatureExtractor, cache: ReferenceCache | None
) -> np.ndarray:
    size = int(feature.input_size)
    if cache is None:
        return feature(np.stack([resize_crop(crop, size) for crop in crops]))
    keys = [reference_key(crop, rule, feature) for crop in crops]
    rows: list[np.ndarray | None] = [cache.get(key) for key in keys]
    todo = [index for index, row in enumerate(rows) if row is None]
    if todo:
        fresh = feature(np.stack([resize_crop(crops[index], size) for index in todo]))
        for index, row in zip(todo, fresh):
            cache.put(keys[index], row)
            rows[index] = row
    return np.stack(rows)  # type: ignore[arg-type]
