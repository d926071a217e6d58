"""A report of some runs for a write-up: one folder holding `index.html` (self-contained: its
images sit beside it, no network needed to view it), `report.md` with the same content, and
`images/`. Sections:

* leaderboard: per run, its parameters that differ from the technique's defaults and each
  key metric as mean [95% CI] (or ± std for set-level metrics), the best value per column in
  bold, knowing whether lower or higher is better (none where every run has the same value);
* paired comparisons of every other run against a baseline run (mean difference with its
  bootstrap interval, Wilcoxon p-value, verdict), from `inpaint_tui.read.present.compare_runs`;
* per-sample image grids: the input with the mask outlined, each run's output, the reference;
  the samples chosen by the caller, else those where the baseline ranks worst and best on the
  leaderboard's first metric;
* for a sweep, a metric against each swept parameter (PNG, one line per technique, the mean
  over seeds) for the leading metrics;
* the denoising animations where runs saved them;
* reproducibility: per run its configuration hash, parameters, versions, device, git commit
  and the command that reruns it.
"""

from __future__ import annotations

import html
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from engine.metrics.catalogue import higher_is_better, key_metrics
from inpaint_tui.read.compare import compare_runs, verdict
from inpaint_tui.read.present import best_values, changed_params, format_number, format_params, format_summary
from inpaint_tui.read.sweep_series import Series, bar_caption, build_series, load_sweep_data, sweep_axes, tick_label
from inpaint_tui.store import RunDetail, SampleStatus, Store, safe_file_stem

GRID_SAMPLES = 6
PLOTTED_METRICS = 4  # sweep plots for the leading key metrics
PLOT_SIZE = (720, 420)
PLOT_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                (227, 119, 194), (127, 127, 127))
THUMBNAIL = 256  # longest side of grid images, in pixels
MASK_OUTLINE = (255, 48, 48)


class ReportError(ValueError):
    """The report cannot be made as asked (no runs, a baseline not among them)."""


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    images: list[Path]


@dataclass
class _Row:
    """One leaderboard row: what best_values needs (`metrics`) and what the table shows."""

    detail: RunDetail
    metrics: dict[str, float]


def write_report(store: Store, run_ids: Sequence[int], out_dir: Path, *, title: str | None = None,
                 baseline: int | None = None, sample_names: Sequence[str] = (),
                 grid_samples: int = GRID_SAMPLES, sweep_id: int | None = None, inline: bool = False) -> ReportFiles:
    """Write the report of `run_ids` into `out_dir` (created; files of an older report there
    are replaced). With `sweep_id`, plots of that sweep's metrics against its parameters.
    `inline` embeds the images in index.html (one file to mail or attach; report.md keeps
    pointing at images/)."""
    run_ids = list(dict.fromkeys(run_ids))
    if not run_ids:
        raise ReportError("no runs to report")
    baseline = run_ids[0] if baseline is None else baseline
    if baseline not in run_ids:
        raise ReportError(f"the baseline run {baseline} is not among the reported runs {run_ids}")
    details = [store.run_detail(run_id) for run_id in run_ids]
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)

    rows = [_Row(detail=d, metrics={k: v for k, v in d.metrics.items() if v is not None}) for d in details]
    metrics = key_metrics({name for d in details for name in (*d.metrics, *d.summaries)})
    finished = [r for r in rows if r.detail.run.done_count]
    best = best_values(finished, metrics)
    for name in list(best):  # a value every run shares says nothing: no bold (as in the TUI)
        values = [r.metrics[name] for r in finished if name in r.metrics]
        if len(values) > 1 and len(set(values)) == 1:
            del best[name]
    board = _leaderboard(rows, metrics, best)
    comparisons = _comparisons(store, baseline, [d for d in details if d.run.id != baseline])
    chosen = _grid_samples(details, baseline, metrics, sample_names, grid_samples)
    grid, images = _grid(store, details, chosen, out_dir, images_dir)
    plots = _sweep_plots(store, sweep_id, metrics[:PLOTTED_METRICS], out_dir, images_dir) if sweep_id else []
    images += [path for _, _, path in plots]
    animations = _animations(details, out_dir, images_dir)
    images += [path for _, _, path in animations]
    reproduce = _reproducibility(details)

    title = title or f"inpaint-tui report: runs {', '.join(map(str, run_ids))}"
    markdown = _markdown(title, board, baseline, comparisons, grid, plots, animations, reproduce)
    page = _html(title, board, baseline, comparisons, grid, plots, animations, reproduce)
    if inline:
        page = _inline_images(page, out_dir)
    (out_dir / "report.md").write_text(markdown)
    (out_dir / "index.html").write_text(page)
    return ReportFiles(html=out_dir / "index.html", markdown=out_dir / "report.md", images=images)


# --- content ---------------------------------------------------------------------------------


def _leaderboard(rows: list[_Row], metrics: list[str], best: dict[str, float]) -> dict[str, Any]:
    """Header and cells; each metric cell is (text, is_best). Rows in ranking order on the first
    metric (direction-aware), runs without it last."""
    first = metrics[0] if metrics else None
    direction = higher_is_better(first) if first else None

    def rank_key(row: _Row):
        value = row.metrics.get(first) if first else None
        if value is None or math.isnan(value):
            return (1, 0.0, row.detail.run.id)
        return (0, -value if direction else value, row.detail.run.id)

    header = ["run", "technique", "parameters", "set", "done"] + [
        f"{name} {'↑' if higher_is_better(name) else '↓' if higher_is_better(name) is False else ''}".strip()
        for name in metrics]
    body = []
    for row in sorted(rows, key=rank_key):
        run = row.detail.run
        info = [(str(run.id), False), (run.technique, False),
                (format_params(changed_params(run.technique, run.params)) or "defaults", False),
                (run.sample_set, False), (f"{run.done_count}/{run.sample_count}", False)]
        cells = []
        for name in metrics:
            value = row.metrics.get(name)
            is_best = name in best and value is not None and value == best[name]
            cells.append((format_summary(row.detail.summaries.get(name), value), is_best))
        body.append(info + cells)
    return {"header": header, "rows": body, "metrics": metrics}


def _comparisons(store: Store, baseline: int, others: list[RunDetail]) -> list[dict[str, Any]]:
    out = []
    for other in others:
        try:
            entries = compare_runs(store, baseline, other.run.id)
        except KeyError as error:
            out.append({"run": other.run.id, "technique": other.run.technique, "error": str(error), "entries": []})
            continue
        out.append({"run": other.run.id, "technique": other.run.technique,
                    "entries": [dict(entry, verdict=verdict(entry, other.run.id)) for entry in entries]})
    return out


def _grid_samples(details: list[RunDetail], baseline: int, metrics: list[str], names: Sequence[str],
                  count: int) -> list[tuple[int, str]]:
    """(sample id, why chosen): the named samples, else the baseline's worst and best on the
    first metric (half each), else the first samples."""
    samples = {s.sample_name: s.sample_id for d in details for s in d.samples}
    if names:
        missing = [name for name in names if name not in samples]
        if missing:
            raise ReportError(f"no sample named {', '.join(map(repr, missing))} in these runs; "
                              f"they have {', '.join(sorted(samples))}")
        return [(samples[name], "chosen") for name in names]
    base = next(d for d in details if d.run.id == baseline)
    first = metrics[0] if metrics else None
    scored = [(s.metrics[first], s.sample_id) for s in base.samples
              if first and first in s.metrics and not math.isnan(s.metrics[first])]
    if not scored:
        return [(s.sample_id, "first") for s in base.samples[:count]]
    scored.sort(reverse=bool(higher_is_better(first)))  # best first
    worst_count = (min(count, len(scored)) + 1) // 2
    worst = [(sample_id, f"worst {first} of run {baseline}") for _, sample_id in reversed(scored[-worst_count:])]
    best = [(sample_id, f"best {first} of run {baseline}") for _, sample_id in scored[:min(count, len(scored)) - worst_count]]
    return worst + [item for item in best if item[0] not in {w for w, _ in worst}]


def _grid(store: Store, details: list[RunDetail], chosen: list[tuple[int, str]], out_dir: Path,
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


def _animations(details: list[RunDetail], out_dir: Path, images_dir: Path) -> list[tuple[str, str, Path]]:
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


def _reproducibility(details: list[RunDetail]) -> list[dict[str, Any]]:
    return [{
        "run": d.run.id, "technique": d.run.technique, "config_hash": d.run.config_hash,
        "params": d.run.params, "model": d.run.model, "steps": d.run.steps, "guidance": d.run.guidance,
        "seed": d.run.seed, "set": d.run.sample_set, "device": d.run.device or "-",
        "git_commit": d.run.git_commit or "-",
        "versions": ", ".join(f"{k} {v}" for k, v in sorted(d.run.versions.items())) or "-",
        "command": d.run.command or _rerun_command(d),
    } for d in details]


def _rerun_command(detail: RunDetail) -> str:
    """A command that queues the same configuration, for runs created without one (from the
    TUI's form or the Python API); parameters at their defaults are left out."""
    import shlex

    run = detail.run
    parts = ["inpaint-tui", "run", "-t", run.technique]
    for name, value in changed_params(run.technique, run.params).items():
        parts += ["-p", f"{name}={value}"]
    parts += ["--samples", run.sample_set, "--model", run.model, "--steps", str(run.steps), "--guidance",
              str(run.guidance), "--seed", str(run.seed)]
    if run.negative_prompt:
        parts += ["--negative-prompt", run.negative_prompt]
    groups = run.eval_config.get("groups")
    if groups:
        parts += ["--metrics", ",".join(groups)]
    return shlex.join(parts)


def _sweep_plots(store: Store, sweep_id: int, metrics: list[str], out_dir: Path,
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


# --- writers -----------------------------------------------------------------------------------


def _markdown(title, board, baseline, comparisons, grid, plots, animations, reproduce) -> str:
    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        escape = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        return (["| " + " | ".join(map(escape, header)) + " |", "|" + " --- |" * len(header)]
                + ["| " + " | ".join(map(escape, row)) + " |" for row in rows])

    lines = [f"# {title}", "", "## Leaderboard", "",
             "Mean over each run's finished samples [95% bootstrap interval], or ± std for set-level "
             "metrics; the best value per column in bold (↓ lower is better, ↑ higher).", ""]
    lines += table(board["header"], [[f"**{text}**" if is_best else text for text, is_best in row]
                                     for row in board["rows"]])
    lines += ["", f"## Paired comparisons against run {baseline}", ""]
    if not comparisons:
        lines.append("Only one run: nothing to compare.")
    for comparison in comparisons:
        lines += [f"### run {comparison['run']} ({comparison['technique']}) − run {baseline}", ""]
        if comparison.get("error"):
            lines += [comparison["error"], ""]
            continue
        lines += table(["metric", "n", f"mean {baseline}", f"mean {comparison['run']}", "difference [95% CI]",
                        "Wilcoxon p", "verdict"], [_comparison_cells(e) for e in comparison["entries"]]) + [""]
    lines += ["## Samples", ""]
    lines += table(["sample"] + grid["columns"], [
        [row["caption"]] + [f"![]({cell})" if cell else "-" for cell in row["cells"]] for row in grid["rows"]])
    if plots:
        lines += ["", "## Sweep", ""] + [f"![{caption}]({path})" for caption, path, _ in plots]
    if animations:
        lines += ["", "## Denoising", ""] + [f"- {caption}: ![]({path})" for caption, path, _ in animations]
    lines += ["", "## Reproducibility", ""]
    for entry in reproduce:
        lines += [f"- run {entry['run']} ({entry['technique']}), configuration `{entry['config_hash']}`: "
                  f"model {entry['model']}, {entry['steps']} steps, guidance {entry['guidance']}, seed {entry['seed']}, "
                  f"set {entry['set']}, parameters `{entry['params']}`; device {entry['device']}; "
                  f"git {entry['git_commit']}; {entry['versions']}", "", f"  ```\n  {entry['command']}\n  ```"]
    return "\n".join(lines) + "\n"


def _comparison_cells(entry: dict[str, Any]) -> list[str]:
    if "difference" not in entry:
        return [entry["metric"], str(entry["n"]), "-", "-", "-", "-", entry.get("verdict", "")]
    return [entry["metric"], str(entry["n"]), format_number(entry["mean_a"]), format_number(entry["mean_b"]),
            f"{format_number(entry['difference'])} [{format_number(entry['ci_low'])}, {format_number(entry['ci_high'])}]",
            f"{entry['p_value']:.3g}", entry["verdict"]]


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.best { font-weight: bold; background: #eaf6ea; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.grid img { width: 200px; image-rendering: pixelated; display: block; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
.wide { overflow-x: auto; }
.animations { display: flex; flex-wrap: wrap; gap: 0.5em; }
.animations img { width: 160px; image-rendering: pixelated; }
.animations figure { margin: 0; font-size: 0.85em; }
.caption { max-width: 220px; }
"""


IMAGE_TYPES = {".png": "image/png", ".gif": "image/gif", ".webp": "image/webp", ".jpg": "image/jpeg",
               ".jpeg": "image/jpeg"}


def _inline_images(page: str, out_dir: Path) -> str:
    """Every `src` of the page's images (paths under out_dir) replaced by a data: URI."""
    import base64
    import re

    def embed(match: re.Match) -> str:
        path = out_dir / html.unescape(match.group(1))
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'src="data:{IMAGE_TYPES[path.suffix.lower()]};base64,{data}"'

    return re.sub(r'src="([^"]+)"', embed, page)


def _html(title, board, baseline, comparisons, grid, plots, animations, reproduce) -> str:
    e = html.escape
    parts = [f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
             f"<style>{STYLE}</style></head><body>", f"<h1>{e(title)}</h1>", "<h2>Leaderboard</h2>",
             "<p>Mean over each run's finished samples [95% bootstrap interval], or ± std for set-level metrics; "
             "the best value per column in bold (↓ lower is better, ↑ higher).</p>",
             "<div class=\"wide\"><table id=\"leaderboard\"><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in board["header"])
             + "</tr></thead><tbody>"]
    info_columns = len(board["header"]) - len(board["metrics"])
    for row in board["rows"]:
        cells = []
        for index, (text, is_best) in enumerate(row):
            classes = " ".join(filter(None, ["num" if index >= info_columns else "", "best" if is_best else ""]))
            cells.append(f"<td class=\"{classes}\">{e(text)}</td>" if classes else f"<td>{e(text)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    parts.append(f"<h2>Paired comparisons against run {baseline}</h2>")
    if not comparisons:
        parts.append("<p>Only one run: nothing to compare.</p>")
    for comparison in comparisons:
        parts.append(f"<h3>run {comparison['run']} ({e(comparison['technique'])}) − run {baseline}</h3>")
        if comparison.get("error"):
            parts.append(f"<p>{e(comparison['error'])}</p>")
            continue
        header = ["metric", "n", f"mean {baseline}", f"mean {comparison['run']}", "difference [95% CI]",
                  "Wilcoxon p", "verdict"]
        parts.append("<table class=\"comparison\"><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in _comparison_cells(entry)) + "</tr>"
                               for entry in comparison["entries"]) + "</table>")
    parts.append("<h2>Samples</h2><table class=\"grid\"><tr><th>sample</th>"
                 + "".join(f"<th>{e(c)}</th>" for c in grid["columns"]) + "</tr>")
    for row in grid["rows"]:
        cells = "".join(f"<td><img src=\"{e(cell)}\" alt=\"{e(column)}\"></td>" if cell else "<td>-</td>"
                        for cell, column in zip(row["cells"], grid["columns"]))
        parts.append(f"<tr><td class=\"caption\">{e(row['caption'])}</td>{cells}</tr>")
    parts.append("</table>")
    if plots:
        parts.append("<h2>Sweep</h2>" + "".join(
            f"<figure><img src=\"{e(path)}\" alt=\"{e(caption)}\"><figcaption>{e(caption)}</figcaption></figure>"
            for caption, path, _ in plots))
    if animations:
        parts.append("<h2>Denoising</h2><div class=\"animations\">" + "".join(
            f"<figure><img src=\"{e(path)}\" alt=\"{e(caption)}\"><figcaption>{e(caption)}</figcaption></figure>"
            for caption, path, _ in animations) + "</div>")
    parts.append("<h2>Reproducibility</h2>")
    for entry in reproduce:
        parts.append(
            f"<h3>run {entry['run']} ({e(entry['technique'])})</h3><ul>"
            f"<li>configuration hash <code>{e(entry['config_hash'])}</code></li>"
            f"<li>model {e(str(entry['model']))}, {entry['steps']} steps, guidance {entry['guidance']}, "
            f"seed {entry['seed']}, set {e(entry['set'])}</li>"
            f"<li>parameters <code>{e(str(entry['params']))}</code></li>"
            f"<li>device {e(entry['device'])}; git {e(entry['git_commit'])}; {e(entry['versions'])}</li></ul>"
            f"<pre>{e(entry['command'])}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
