"""The report's images: per-sample grids (the input with its mask outlined, each run's
output, the reference, as thumbnails), copied denoising animations and the sweep plots, drawn
with Pillow. Kept apart from report.py, which chooses what to show and writes the pages."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from engine.metrics.catalogue import higher_is_better
from inpaint_tui.read.sweep_series import Series, bar_caption, build_series, load_sweep_data, sweep_axes, tick_label
from inpaint_tui.store import RunDetail, SampleStatus, Store, safe_file_stem

PLOT_SIZE = (720, 420)
PLOT_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                (227, 119, 194), (127, 127, 127))
THUMBNAIL = 256  # longest side of grid images, in pixels
MASK_OUTLINE = (255, 48, 48)


def write_grid(store: Store, details: list[RunDetail], chosen: list[tuple[int, str]], out_dir: Path,
               images_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    """Per chosen sample: (caption, [(column title, image path relative to out_dir or None)])."""
    columns = ["input + mask"] + [f"run {d.run.id} {d.run.technique}" for d in details] + ["reference"]
    rows, written = [], []
    for sample_id, why in chosen:
        sample = store.sample(sample_id)
        outlined = images_dir / f"sample-{sample_id}-input.png"
        _mask_outlined(sample.image_path, sample.mask_path, outlined)
        cells: list[str | None] = [outlined.relative_to(out_dir).as_posix()]
        written.append(outlined)
        for detail in details:
            result = next((s for s in detail.samples if s.sample_id == sample_id), None)
            if result is None or result.status != SampleStatus.DONE or result.image_path is None:
                cells.append(None)
                continue
            target = images_dir / f"run-{detail.run.id}-sample-{sample_id}.png"
            _thumbnail(result.image_path, target)
            cells.append(target.relative_to(out_dir).as_posix())
            written.append(target)
        if sample.reference_path is not None:
            target = images_dir / f"sample-{sample_id}-reference.png"
            _thumbnail(sample.reference_path, target)
            cells.append(target.relative_to(out_dir).as_posix())
            written.append(target)
        else:
            cells.append(None)
        rows.append({"caption": f"{sample.name} ({why}): {sample.prompt}", "cells": cells})
    return {"columns": columns, "rows": rows}, written


def copy_animations(details: list[RunDetail], out_dir: Path, images_dir: Path) -> list[tuple[str, str, Path]]:
    """(caption, path relative to out_dir, copied file) for each saved denoising animation."""
    out = []
    for detail in details:
        for sample in detail.samples:
            if sample.animation_path is not None and Path(sample.animation_path).exists():
                source = Path(sample.animation_path)
                target = images_dir / f"run-{detail.run.id}-sample-{sample.sample_id}-denoising{source.suffix}"
                shutil.copyfile(source, target)
                out.append((f"run {detail.run.id}, {sample.sample_name}", target.relative_to(out_dir).as_posix(),
                            target))
    return out


def write_sweep_plots(store: Store, sweep_id: int, metrics: list[str], out_dir: Path,
                      images_dir: Path) -> list[tuple[str, str, Path]]:
    """(caption, path relative to out_dir, file) per (swept parameter, metric)."""
    sweep = store.sweep(sweep_id)
    data = load_sweep_data(store, sweep)
    out = []
    for axis in sweep_axes(sweep):
        for metric in metrics:
            series, xs, numeric = build_series(data, metric, axis)
            if not any(s.ys for s in series):
                continue
            target = images_dir / f"sweep-{sweep_id}-{safe_file_stem(metric)}-vs-{safe_file_stem(axis)}.png"
            direction = higher_is_better(metric)
            caption = f"{metric} ({'higher' if direction else 'lower' if direction is False else '?'} is better) " \
                      f"against {axis}, sweep {sweep_id}"
            caption += "; mean over seeds" if any(s.pooled for s in series) else ""
            bars = bar_caption(series)
            caption += f"; {bars}" if bars else ""
            _plot(series, xs, numeric, axis, metric, caption, target)
            out.append((caption, target.relative_to(out_dir).as_posix(), target))
    return out


def _axis_number(value: float, step: float) -> str:
    """Enough decimals that neighbouring ticks `step` apart read differently."""
    decimals = max(0, 1 - math.floor(math.log10(step))) if step > 0 else 4
    return f"{value:.3e}" if decimals > 7 or abs(value) >= 1e6 else f"{value:.{decimals}f}"


def _plot(series: list[Series], xs: list[Any], numeric: bool, x_label: str, y_label: str, title: str,
          target: Path) -> None:
    """A line chart drawn with Pillow (no plotting library needed): axes with ticks, one
    coloured line with markers and error bars per series, a legend."""
    width, height = PLOT_SIZE
    left, right, top, bottom = 80, 20, 40, 60
    font = ImageFont.load_default(size=13)
    image = Image.new("RGB", PLOT_SIZE, "white")
    draw = ImageDraw.Draw(image)
    # The bars count in the range: a slope smaller than its intervals must look it.
    ys = [y for s in series for y in s.ys if math.isfinite(y)]
    ys += [end for s in series for bar in s.bars if bar is not None for end in bar if math.isfinite(end)]
    low, high = min(ys), max(ys)
    pad = (high - low) * 0.08 or abs(high) * 0.08 or 1.0
    low, high = low - pad, high + pad
    if numeric and len(xs) > 1:
        x_low, x_high = float(min(xs)), float(max(xs))
        position = {x: (float(x) - x_low) / (x_high - x_low) for x in xs}
    else:  # categories (or one value): evenly spaced
        position = {x: (i + 0.5) / len(xs) for i, x in enumerate(xs)}

    def to_pixel(x: Any, y: float) -> tuple[float, float]:
        plot_width, plot_height = width - left - right, height - top - bottom
        return (left + 20 + position[x] * (plot_width - 40), top + (high - y) / (high - low) * plot_height)

    for row, text in enumerate(_wrap(draw, title, font, width - left - right)[:2]):
        draw.text((left, 6 + 16 * row), text, fill="black", font=font)
    draw.line([(left, top), (left, height - bottom), (width - right, height - bottom)], fill="black")
    for i in range(5):
        value = low + (high - low) * i / 4
        _, y = to_pixel(xs[0], value)
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.line([(left + 1, y), (width - right, y)], fill=(235, 235, 235))
        draw.text((left - 8, y), _axis_number(value, (high - low) / 4), fill="black", font=font, anchor="rm")
    for x in xs:
        px, _ = to_pixel(x, low)
        draw.line([(px, height - bottom), (px, height - bottom + 4)], fill="black")
        draw.text((px, height - bottom + 8), tick_label(x), fill="black", font=font, anchor="mt")
    draw.text(((left + width - right) / 2, height - 18), x_label, fill="black", font=font, anchor="mm")
    for index, line in enumerate(series):
        colour = PLOT_COLOURS[index % len(PLOT_COLOURS)]
        for x, bar in zip(line.xs, line.bars):
            if bar is not None and all(math.isfinite(end) for end in bar):
                (px, bar_low), (_, bar_high) = to_pixel(x, bar[0]), to_pixel(x, bar[1])
                draw.line([(px, bar_low), (px, bar_high)], fill=colour, width=1)
                draw.line([(px - 5, bar_low), (px + 5, bar_low)], fill=colour, width=1)
                draw.line([(px - 5, bar_high), (px + 5, bar_high)], fill=colour, width=1)
        points = [to_pixel(x, y) for x, y in zip(line.xs, line.ys) if math.isfinite(y)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse([(px - 4, py - 4), (px + 4, py + 4)], fill=colour)
        draw.rectangle([(width - right - 170, top + 8 + 18 * index), (width - right - 158, top + 20 + 18 * index)],
                       fill=colour)
        draw.text((width - right - 152, top + 14 + 18 * index), line.label, fill="black", font=font, anchor="lm")
    image.save(target)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> list[str]:
    """`text` in lines no wider than `width`, broken after its '; ' separators."""
    lines: list[str] = []
    for part in text.split("; "):
        joined = f"{lines[-1]}; {part}" if lines else part
        if lines and draw.textlength(joined, font=font) <= width:
            lines[-1] = joined
        else:
            lines.append(part)
    return lines


# --- images ------------------------------------------------------------------------------------


def _thumbnail(source: Path, target: Path) -> None:
    with Image.open(source) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
        image.save(target)


def _mask_outlined(image_path: Path, mask_path: Path, target: Path) -> None:
    """The input with the mask's edge drawn in red (the inside stays visible: what was there)."""
    with Image.open(image_path) as image, Image.open(mask_path) as mask:
        image = image.convert("RGB")
        mask = mask.convert("L").resize(image.size, Image.Resampling.NEAREST).point(lambda v: 255 if v >= 128 else 0)
        size = 2 * max(1, round(max(image.size) / 128)) + 1
        ring = ImageChops.subtract(mask.filter(ImageFilter.MaxFilter(size)), mask.filter(ImageFilter.MinFilter(size)))
        image.paste(Image.new("RGB", image.size, MASK_OUTLINE), mask=ring)
        image.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
        image.save(target)
