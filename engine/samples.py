"""Inpainting samples: an image, a mask (white = inpaint), a prompt, an optional reference.

Everything here is torch-free so the CLI and the TUI can validate and list samples without
loading the deep-learning stack.
"""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


class SampleError(ValueError):
    """A sample that cannot be used; the message names the sample."""


@dataclass(frozen=True)
class Sample:
    """One inpainting task.

    `mask` is a single-channel float32 array in [0, 1] at the image's size, 1 = generate,
    0 = keep. Soft values are kept (Differential Diffusion uses them); `binary_mask` is the
    0.5-thresholded version the other techniques and the metrics use.
    """

    id: str
    image: Image.Image
    mask: np.ndarray
    prompt: str
    reference: Image.Image | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How messages name the sample: its name where the store gave one (a stored sample's
        id is its content hash, which tells a user nothing), else its id."""
        return str(self.metadata.get("name") or self.id)

    def __post_init__(self) -> None:
        if self.image.mode != "RGB":
            object.__setattr__(self, "image", self.image.convert("RGB"))
        if self.reference is not None and self.reference.mode != "RGB":
            object.__setattr__(self, "reference", self.reference.convert("RGB"))
        validate(self)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image."""
        return self.image.size

    @property
    def binary_mask(self) -> np.ndarray:
        """Boolean (H, W) mask, True = generate."""
        return self.mask >= 0.5

    def mask_image(self) -> Image.Image:
        """The mask as an 8-bit L image, white = generate."""
        return Image.fromarray(np.round(self.mask * 255).astype(np.uint8), mode="L")

    @functools.cached_property
    def content_hash(self) -> str:
        """A hash of everything that defines the task (pixels, mask, prompt, reference);
        computed once per sample (an import asks for it several times)."""
        digest = hashlib.sha256()
        for part in (self.image, self.mask_image(), self.reference):
            digest.update(b"\0" if part is None else image_digest(part).encode())
        digest.update(self.prompt.encode())
        return digest.hexdigest()


def image_digest(image: Image.Image) -> str:
    """sha256 of an image's mode, size and pixels (independent of the file format)."""
    digest = hashlib.sha256(f"{image.mode}:{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def normalise_mask(mask: Image.Image | np.ndarray, *, sample_id: str = "?") -> np.ndarray:
    """Any common mask encoding to a float32 (H, W) array in [0, 1], white = inpaint.

    Accepted: PIL modes 1, L, LA, RGB, RGBA, P, I;16 / I (16- and 32-bit), F, and numpy
    arrays (bool, uint8, uint16, float). Colour masks use their luminance; a mask with an
    alpha channel whose colour is constant (a cut-out painted in a drawing program) uses the
    alpha instead. Integer masks are scaled by their type's range, so a 16-bit mask of
    0/65535 becomes 0/1.
    """
    if isinstance(mask, Image.Image):
        array = _pil_mask_to_array(mask)
    else:
        array = _numpy_mask_to_array(np.asarray(mask), sample_id)
    if array.ndim != 2:
        raise SampleError(f"sample {sample_id!r}: mask has shape {array.shape}, expected (H, W)")
    if not np.isfinite(array).all():
        raise SampleError(f"sample {sample_id!r}: mask contains NaN or infinite values")
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def _pil_mask_to_array(mask: Image.Image) -> np.ndarray:
    mode = mask.mode
    if mode == "1":
        return np.asarray(mask, dtype=np.float32)
    if mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(mask, dtype=np.float32) / 65535.0
    if mode == "I":
        array = np.asarray(mask, dtype=np.float64)
        # Pillow opens 16-bit PNGs as mode I: scale by the range the values actually use.
        scale = 65535.0 if array.max(initial=0) > 255 else 255.0
        return (array / scale).astype(np.float32)
    if mode == "F":
        return np.asarray(mask, dtype=np.float32)
    if mode in ("LA", "RGBA", "PA"):
        colour = np.asarray(mask.convert("L"), dtype=np.float32)
        alpha = np.asarray(mask.getchannel("A"), dtype=np.float32)
        if colour.min() == colour.max() and alpha.min() != alpha.max():
            return alpha / 255.0
        # Transparent pixels count as black (keep): composite over black.
        return colour * alpha / (255.0 * 255.0)
    return np.asarray(mask.convert("L"), dtype=np.float32) / 255.0


def _numpy_mask_to_array(array: np.ndarray, sample_id: str) -> np.ndarray:
    if array.ndim == 3:
        if array.shape[2] in (3, 4):
            return _pil_mask_to_array(Image.fromarray(_to_uint8(array, sample_id)))
        if array.shape[2] == 1:
            array = array[:, :, 0]
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    raise SampleError(f"sample {sample_id!r}: unsupported mask dtype {array.dtype}")


def _to_uint8(array: np.ndarray, sample_id: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array // 257).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        return np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)
    raise SampleError(f"sample {sample_id!r}: unsupported mask dtype {array.dtype}")


def validate(sample: Sample) -> None:
    """Raise SampleError (naming the sample) for a sample no technique can use."""
    width, height = sample.image.size
    if sample.mask.shape != (height, width):
        raise SampleError(
            f"sample {sample.label!r}: mask is {sample.mask.shape[1]}x{sample.mask.shape[0]} "
            f"but the image is {width}x{height}"
        )
    if sample.mask.dtype != np.float32 or sample.mask.min() < 0 or sample.mask.max() > 1:
        raise SampleError(f"sample {sample.label!r}: mask must be float32 in [0, 1]; use normalise_mask")
    covered = int(sample.binary_mask.sum())
    if covered == 0:
        raise SampleError(f"sample {sample.label!r}: mask is empty (nothing to inpaint)")
    if covered == sample.binary_mask.size:
        raise SampleError(
            f"sample {sample.label!r}: mask covers the whole image (nothing to keep); "
            "is it inverted? Masks are white = inpaint"
        )
    if sample.reference is not None and sample.reference.size != sample.image.size:
        raise SampleError(
            f"sample {sample.label!r}: reference is {sample.reference.size[0]}x{sample.reference.size[1]} "
            f"but the image is {width}x{height}"
        )
    if not sample.prompt.strip():
        raise SampleError(f"sample {sample.label!r}: prompt is empty")


def make_sample(
    id: str,
    image: Image.Image | str | Path,
    mask: Image.Image | np.ndarray | str | Path,
    prompt: str,
    reference: Image.Image | str | Path | None = None,
    metadata: dict[str, Any] | None = None,
) -> Sample:
    """Build a validated Sample from images or file paths, normalising the mask."""
    return Sample(
        id=id,
        image=_open(image, id, "image"),
        mask=normalise_mask(_open(mask, id, "mask") if isinstance(mask, (str, Path)) else mask, sample_id=id),
        prompt=prompt,
        reference=None if reference is None else _open(reference, id, "reference"),
        metadata=dict(metadata or {}),
    )


def _open(source: Image.Image | str | Path, sample_id: str, role: str) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    path = Path(source)
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.copy()
    except FileNotFoundError:
        raise SampleError(f"sample {sample_id!r}: {role} file {path} does not exist") from None
    except OSError as error:
        raise SampleError(f"sample {sample_id!r}: cannot read {role} file {path}: {error}") from None


_SOURCE_PNG = "inpaint_tui.source_png"  # Image.info key: (pixel digest, the PNG file's bytes)


def keep_source_png(image: Image.Image, data: bytes) -> Image.Image:
    """Remember that `image` was decoded from the PNG file `data`, so that `png_bytes` stores
    the file's own bytes instead of encoding it again (an encode costs ~110 ms at 512 px, a
    digest ~2 ms), for as long as the pixels stay the file's."""
    image.info[_SOURCE_PNG] = (image_digest(image), data)
    return image


def png_bytes(image: Image.Image) -> bytes:
    """The image as lossless PNG bytes: its source file's bytes when it was read from a PNG
    (`keep_source_png`) and its mode, size and pixels are still that file's (checked by
    digest: a converted, rotated or edited copy carries the info along and is re-encoded)."""
    kept = image.info.get(_SOURCE_PNG)
    if kept is not None and kept[0] == image_digest(image):
        return kept[1]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def working_size(size: tuple[int, int], resolution: int, multiple: int = 8) -> tuple[int, int]:
    """The (width, height) a sample is processed at: the longer side scaled to `resolution`,
    each side rounded down to a multiple of `multiple` (the VAE and UNet need it)."""
    width, height = size
    scale = resolution / max(width, height)
    new_w = max(multiple, int(round(width * scale)) // multiple * multiple)
    new_h = max(multiple, int(round(height * scale)) // multiple * multiple)
    return new_w, new_h


def resize_to(sample: Sample, size: tuple[int, int]) -> Sample:
    """The sample resized to `size` (bicubic for images, bilinear for the soft mask).

    The resized mask is re-validated: a tiny mask may vanish when downscaled, which is an
    error here rather than a silently empty inpainting.
    """
    if sample.image.size == size:
        return sample
    mask = Image.fromarray(sample.mask, mode="F").resize(size, Image.Resampling.BILINEAR)
    reference = None if sample.reference is None else sample.reference.resize(size, Image.Resampling.BICUBIC)
    return Sample(
        id=sample.id,
        image=sample.image.resize(size, Image.Resampling.BICUBIC),
        mask=np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0),
        prompt=sample.prompt,
        reference=reference,
        metadata=sample.metadata,
    )


def check_mask_survives(sample: Sample, resolution: int, *, name: str | None = None) -> None:
    """Raise SampleError (naming the sample by `name`, else its label) when its mask vanishes at
    the `fit` working size for a model of `resolution`: resized as `resize_to` resizes it, no
    pixel stays >= 0.5, so every run of it would fail. Checked at import against the smallest
    preset resolution, so that the sample is refused by name rather than failing later."""
    size = working_size(sample.size, resolution)
    if size == sample.image.size:
        return
    mask = Image.fromarray(sample.mask, mode="F").resize(size, Image.Resampling.BILINEAR)
    if not (np.asarray(mask) >= 0.5).any():
        covered = int(sample.binary_mask.sum())
        raise SampleError(
            f"sample {name or sample.label!r}: mask too small: its {covered} px vanish at the working size "
            f"{size[0]}x{size[1]} of a {resolution} px model (resize=fit); draw a larger mask"
        )


RESIZE_POLICIES = ("fit", "crop")
CROP_MARGIN = 0.25


def crop_to(sample: Sample, box) -> Sample:
    """The sample cut to `box` (an engine.metrics.crop.Box); re-validated, so a crop that is
    all mask is an error naming the sample."""
    region = (box.left, box.top, box.right, box.bottom)
    return Sample(
        id=sample.id,
        image=sample.image.crop(region),
        mask=np.ascontiguousarray(box.cut(sample.mask)),
        prompt=sample.prompt,
        reference=None if sample.reference is None else sample.reference.crop(region),
        metadata=sample.metadata,
    )


def prepare(sample: Sample, resolution: int, policy: str = "fit", multiple: int = 8) -> Sample:
    """The sample as a technique sees it, at the working size for a model of `resolution`.

    - `fit`: the whole image, longer side scaled to `resolution` (sides multiples of
      `multiple`: 8, the VAE's factor; 16 for FLUX, whose 2x2 patches need even latents).
    - `crop`: a square around the mask (its box padded by 25%, at least 16 px, at least
      `resolution` source pixels where the image allows, shifted to lie inside the image),
      then scaled like `fit`. Small objects in large photos are then generated at the
      model's resolution instead of a few latent pixels; the metrics see the crop only.

    The same function serves the runner and the evaluation of stored outputs, so both see
    exactly the same pixels.
    """
    if policy not in RESIZE_POLICIES:
        raise SampleError(f"unknown resize policy {policy!r} (known: {', '.join(RESIZE_POLICIES)})")
    if policy == "crop":
        from engine.metrics.crop import CropRule, crop_box

        box = crop_box(sample.binary_mask, CropRule(margin=CROP_MARGIN, min_padding=16, min_side=resolution))
        sample = crop_to(sample, box)
    return resize_to(sample, working_size(sample.size, resolution, multiple))
