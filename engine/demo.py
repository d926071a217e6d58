"""The bundled `demo` sample set: real photos shipped inside scikit-image.

Six photographs from `skimage.data` (no download needed), each with a hand-placed mask over
a real object and a short prompt naming that object. The reference is the original photo, so
the ground truth of each inpainting is the object that was there.

Masks are declared below as shapes in coordinates relative to the prepared image (0..1 on
each axis), rendered with PIL at the prepared size: readable, and independent of the
resolution. Check them by eye with `python -m engine.demo /tmp/sheet.png`, which writes a
contact sheet with each mask overlaid in translucent red.

Torch-free: only numpy, PIL and (lazily) scikit-image.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterator, Union

import numpy as np
from PIL import Image, ImageDraw

from engine.samples import Sample, make_sample

DEMO_SET_NAME = "demo"

MAX_SIDE = 512
MULTIPLE = 8



@dataclass(frozen=True)
class Ellipse:
    """Bounding box (left, top, right, bottom) relative to the image, 0..1."""

    left: float
    top: float
    right: float
    bottom: float


@dataclass(frozen=True)
class Polygon:
    """Vertices (x, y) relative to the image, 0..1."""

    points: tuple[tuple[float, float], ...]


Shape = Union[Ellipse, Polygon]


@dataclass(frozen=True)
class DemoSpec:
    id: str
    loader: str  # the skimage.data function
    object: str  # what the mask covers
    prompt: str
    license: str
    shapes: tuple[Shape, ...]


# Coordinates are relative to the *prepared* image (see `prepare_photo`). Licences are as
# stated in the `skimage.data` docstrings.
DEMO_SPECS: tuple[DemoSpec, ...] = (
    DemoSpec(
        id="astronaut-helmet",
        loader="astronaut",
        object="the space helmet she holds (bottom right)",
        prompt="a white space helmet",
        license="public domain (NASA)",
        shapes=(Ellipse(0.50, 0.63, 1.05, 1.15),),
    ),
    DemoSpec(
        id="coffee-cup",
        loader="coffee",
        object="the espresso cup with its handle",
        prompt="a cup of coffee on a saucer",
        license="CC0 (Rachel Michetti)",
        shapes=(
            Ellipse(0.27, 0.0, 0.71, 0.40),  # the rim
            Polygon(  # the body down to its foot, and the handle pointing down-left
                (
                    (0.28, 0.20), (0.71, 0.20), (0.70, 0.45), (0.64, 0.55), (0.56, 0.62), (0.55, 0.74),
                    (0.47, 0.75), (0.47, 0.80), (0.30, 0.80), (0.29, 0.55), (0.28, 0.40),
                )
            ),
        ),
    ),
    DemoSpec(
        id="chelsea-eyes",
        loader="chelsea",
        object="both eyes of the cat",
        prompt="the green eyes of a tabby cat",
        license="CC0 (Stefan van der Walt)",
        shapes=(Ellipse(0.27, 0.23, 0.50, 0.54), Ellipse(0.615, 0.29, 0.79, 0.59)),
    ),
    DemoSpec(
        id="rocket-launchpad",
        loader="rocket",
        object="the rocket on the launch pad",
        prompt="a rocket on the launch pad",
        license="public domain (SpaceX)",
        shapes=(
            Polygon(  # the rocket, widening at the bottom for the launch mount
                (
                    (0.475, 0.255), (0.530, 0.255), (0.555, 0.34), (0.555, 0.78), (0.575, 0.84),
                    (0.575, 1.0), (0.425, 1.0), (0.425, 0.84), (0.450, 0.78), (0.450, 0.34),
                )
            ),
        ),
    ),
    DemoSpec(
        id="camera-tripod",
        loader="camera",
        object="the camera and its tripod",
        prompt="a camera on a tripod",
        license="CC0 (Lav Varshney)",
        shapes=(
            Polygon(((0.475, 0.245), (0.66, 0.245), (0.66, 0.40), (0.475, 0.40))),  # the camera
            Polygon(((0.53, 0.38), (0.62, 0.38), (0.82, 1.0), (0.42, 1.0))),  # the tripod
        ),
    ),
    DemoSpec(
        id="coins-large",
        loader="coins",
        object="the large coin at the right of the third row",
        prompt="an old coin",
        license="no known copyright restrictions (Brooklyn Museum)",
        shapes=(Ellipse(0.80, 0.49, 1.01, 0.75),),
    ),
)


def prepare_photo(array: np.ndarray) -> Image.Image:
    """A scikit-image photo as RGB, the longer side at most MAX_SIDE (Lanczos), then centre
    cropped by a few pixels so both sides are multiples of MULTIPLE."""
    image = Image.fromarray(np.asarray(array)).convert("RGB")
    width, height = image.size
    scale = min(1.0, MAX_SIDE / max(width, height))
    if scale < 1.0:
        image = image.resize(
            (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS
        )
    width, height = image.size
    new_w, new_h = width // MULTIPLE * MULTIPLE, height // MULTIPLE * MULTIPLE
    left, top = (width - new_w) // 2, (height - new_h) // 2
    return image.crop((left, top, left + new_w, top + new_h))


def render_mask(shapes: tuple[Shape, ...], size: tuple[int, int]) -> np.ndarray:
    """The shapes rendered at `size` (width, height) as a binary float32 (H, W) array."""
    width, height = size
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    for shape in shapes:
        if isinstance(shape, Ellipse):
            box = (shape.left * width, shape.top * height, shape.right * width, shape.bottom * height)
            draw.ellipse(box, fill=255)
        elif isinstance(shape, Polygon):
            draw.polygon([(x * width, y * height) for x, y in shape.points], fill=255)
        else:  # pragma: no cover - the table above only holds the two kinds
            raise TypeError(f"unknown mask shape {shape!r}")
    return (np.asarray(canvas) >= 128).astype(np.float32)


def demo_samples() -> list[Sample]:
    """The bundled demo samples, identical pixels on every call."""
    return list(each_demo_sample())


def each_demo_sample() -> Iterator[Sample]:
    """The demo samples built one at a time (an import streams them)."""
    import skimage.data

    for spec in DEMO_SPECS:
        photo = prepare_photo(getattr(skimage.data, spec.loader)())
        yield (
            make_sample(
                id=spec.id,
                image=photo,
                mask=render_mask(spec.shapes, photo.size),
                prompt=spec.prompt,
                reference=photo.copy(),
                metadata={
                    "source": "scikit-image",
                    "loader": spec.loader,
                    "license": spec.license,
                    "object": spec.object,
                },
            )
        )


def contact_sheet(samples: list[Sample], columns: int = 3, pad: int = 8) -> Image.Image:
    """Each sample with its mask overlaid in translucent red, captioned, on one sheet."""
    cell_w = max(s.size[0] for s in samples)
    cell_h = max(s.size[1] for s in samples)
    caption = 14
    rows = (len(samples) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (cell_w + pad) + pad, rows * (cell_h + caption + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for index, sample in enumerate(samples):
        alpha = Image.fromarray((sample.binary_mask * 110).astype(np.uint8), mode="L")
        overlay = Image.composite(Image.new("RGB", sample.size, (255, 0, 0)), sample.image, alpha)
        x = pad + (index % columns) * (cell_w + pad)
        y = pad + (index // columns) * (cell_h + caption + pad)
        sheet.paste(overlay, (x, y + caption))
        coverage = 100.0 * float(sample.binary_mask.mean())
        draw.text((x, y), f"{sample.id} {sample.size[0]}x{sample.size[1]} {coverage:.1f}%: {sample.prompt}", fill="black")
    return sheet


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "demo_sheet.png"
    demo = demo_samples()
    contact_sheet(demo).save(out)
    for s in demo:
        print(f"{s.id:20s} {s.size[0]}x{s.size[1]}  {100 * s.binary_mask.mean():5.1f}%  {s.prompt}")
    print(f"wrote {out}")
