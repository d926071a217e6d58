"""Images in the terminal (textual-image): Kitty graphics or Sixel where the terminal has
them, half-blocks otherwise; tests force half-blocks so snapshots are deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

MASK_TINT = (255, 64, 64)


def image_widget_class(protocol: str = "auto"):
    """The textual-image widget class for a protocol name (see IMAGE_PROTOCOLS)."""
    from textual_image import widget

    classes = {"auto": widget.Image, "kitty": widget.TGPImage, "sixel": widget.SixelImage,
               "halfcell": widget.HalfcellImage, "unicode": widget.UnicodeImage}
    if protocol not in classes:
        raise ValueError(f"image protocol must be one of {', '.join(classes)}, not {protocol!r}")
    return classes[protocol]


def load(path: Path | str | None) -> Image.Image | None:
    """An RGB copy of an image file, or None when there is none (or it cannot be read)."""
    if path is None:
        return None
    try:
        with Image.open(path) as opened:
            return opened.convert("RGB")
    except OSError:
        return None


def with_mask(image: Image.Image, mask_path: Path | str | None, alpha: float = 0.45) -> Image.Image:
    """The image with its mask tinted red, so the region to inpaint is visible."""
    mask = load(mask_path)
    if mask is None:
        return image
    weight = np.asarray(mask.convert("L").resize(image.size, Image.NEAREST), dtype=np.float32)[..., None] / 255 * alpha
    pixels = np.asarray(image, dtype=np.float32)
    tinted = pixels * (1 - weight) + np.array(MASK_TINT, dtype=np.float32) * weight
    return Image.fromarray(tinted.round().astype(np.uint8), mode="RGB")


def with_mask_outline(image: Image.Image, mask_path: Path | str | None, *, cells: int = 40) -> Image.Image:
    """The image with the mask's edge drawn in MASK_TINT and the inside left as it is, so a
    rater sees where the hole was without it hiding anything. The line is 1/`cells` of the
    width thick: still visible when half-blocks draw the image 30-40 cells wide."""
    from scipy.ndimage import maximum_filter, minimum_filter

    mask = load(mask_path)
    if mask is None:
        return image
    inside = np.asarray(mask.convert("L").resize(image.size, Image.NEAREST)) > 127
    size = max(3, 2 * (image.width // (2 * cells)) + 1)  # an odd filter size
    # Separable square filters (PIL's MaxFilter costs size² per pixel: 20 s on a 2048-px image).
    grown = maximum_filter(inside, size=size, mode="nearest")
    shrunk = minimum_filter(inside, size=size, mode="nearest")
    pixels = np.array(image)
    pixels[grown & ~shrunk] = MASK_TINT
    return Image.fromarray(pixels, mode="RGB")
