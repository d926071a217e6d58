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
* human judgements: for each judging study among the reported runs, the Bradley–Terry
  ranking with intervals, the win matrix, position bias and rater agreement, and how often
  each metric agrees with people (read/judging.py);
* reproducibility: per run its configuration hash, parameters, versions, device, git commit
  and the command that reruns it.

This module chooses the content and writes the pages; the images (grids, mask outlines,
sweep plots) are drawn in read/report_images.py.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from engine.metrics.catalogue import HUMAN_METRIC, higher_is_better, key_metrics
from engine.spec import changed_params
from inpaint_tui.read.compare import compare_runs, verdict
from inpaint_tui.read.judging import (
    AGREEMENT_TITLE,
    WINS_TITLE,
    check_lines,
    mixed_studies_line,
    score_studies,
    summary_line,
)
from inpaint_tui.read.present import best_values, format_metric, format_number, format_p_value, format_params, format_summary
from inpaint_tui.read.report_images import copy_animations, write_grid, write_sweep_plots
from inpaint_tui.store import RunDetail, Store

GRID_SAMPLES = 6
PLOTTED_METRICS = 4  # sweep plots for the leading key metrics


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
    details = store.run_details(run_ids)
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
    summaries = {d.run.id: d.summaries for d in details}
    board = _leaderboard(rows, metrics, best, score_studies(summaries) if mixed_studies_line(summaries) else {})
    board["note"] = mixed_studies_line(summaries)
    comparisons = _comparisons(store, baseline, [d for d in details if d.run.id != baseline])
    chosen = _grid_samples(details, baseline, metrics, sample_names, grid_samples)
    grid, images = write_grid(store, details, chosen, out_dir, images_dir)
    plots = write_sweep_plots(store, sweep_id, metrics[:PLOTTED_METRICS], out_dir, images_dir) if sweep_id else []
    images += [path for _, _, path in plots]
    animations = copy_animations(details, out_dir, images_dir)
    images += [path for _, _, path in animations]
    reproduce = _reproducibility(details)
    studies = _studies(store, run_ids)

    title = title or f"inpaint-tui report: runs {', '.join(map(str, run_ids))}"
    markdown = _markdown(title, board, baseline, comparisons, grid, plots, animations, reproduce, studies)
    page = _html(title, board, baseline, comparisons, grid, plots, animations, reproduce, studies)
    if inline:
        page = _inline_images(page, out_dir)
    (out_dir / "report.md").write_text(markdown)
    (out_dir / "index.html").write_text(page)
    return ReportFiles(html=out_dir / "index.html", markdown=out_dir / "report.md", images=images)


# --- content ---------------------------------------------------------------------------------


def _leaderboard(rows: list[_Row], metrics: list[str], best: dict[str, float],
                 studies: dict[int, int]) -> dict[str, Any]:
    """Header and cells; each metric cell is (text, is_best). Rows in ranking order on the first
    metric (direction-aware), runs without it last. `studies`: where human scores of several
    studies meet, the study of each run's score (named in its cell, and no best across them)."""
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
            text = format_summary(row.detail.summaries.get(name), value, name)
            if name == HUMAN_METRIC and studies:
                if run.id in studies:
                    text += f" (study {studies[run.id]})"
                cells.append((text, False))
                continue
            is_best = name in best and value is not None and value == best[name]
            cells.append((text, is_best))
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


def _studies(store: Store, run_ids: Sequence[int]) -> list:
    """The analyses of the judging studies with judgements whose runs are all reported."""
    from inpaint_tui.read.judging import analyse_study

    reported = set(run_ids)
    return [analyse_study(store, study.id) for study in store.studies()
            if set(study.run_ids) <= reported and study.judgements > 0]


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


# --- writers -----------------------------------------------------------------------------------


def _markdown(title, board, baseline, comparisons, grid, plots, animations, reproduce, studies) -> str:
    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        escape = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        return (["| " + " | ".join(map(escape, header)) + " |", "|" + " --- |" * len(header)]
                + ["| " + " | ".join(map(escape, row)) + " |" for row in rows])

    lines = [f"# {title}", "", "## Leaderboard", "",
             "Mean over each run's finished samples [95% bootstrap interval], or ± std for set-level "
             "metrics; the best value per column in bold (↓ lower is better, ↑ higher).", ""]
    lines += table(board["header"], [[f"**{text}**" if is_best else text for text, is_best in row]
                                     for row in board["rows"]])
    if board["note"]:
        lines += ["", board["note"] + "."]
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
    for study in studies:
        lines += ["", f"## Human judgements (study {study.study.id})", "", summary_line(study), "", study.method + ".", ""]
        lines += table(*study.ranking_cells())
        lines += ["", WINS_TITLE + ".", ""] + table(*study.win_cells())
        lines += [""] + [f"- {line}" for line in check_lines(study)]
        if study.metric_agreements:
            lines += ["", AGREEMENT_TITLE.format(who=study.raters_word) + ".", ""] + table(*study.agreement_cells())
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
    name = entry["metric"]
    return [name, str(entry["n"]), format_metric(name, entry["mean_a"]), format_metric(name, entry["mean_b"]),
            f"{format_number(entry['difference'])} [{format_number(entry['ci_low'])}, {format_number(entry['ci_high'])}]",
            format_p_value(entry["p_value"]), entry["verdict"]]


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


def _html(title, board, baseline, comparisons, grid, plots, animations, reproduce, studies) -> str:
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
    if board["note"]:
        parts.append(f"<p>{e(board['note'])}.</p>")
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
    def simple_table(header, rows, css_class):
        return (f"<table class=\"{css_class}\"><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows) + "</table>")

    for study in studies:
        parts.append(f"<h2>Human judgements (study {study.study.id})</h2><p>{e(summary_line(study))}</p>"
                     f"<p>{e(study.method)}.</p>")
        parts.append(simple_table(*study.ranking_cells(), "human-ranking"))
        parts.append(f"<p>{e(WINS_TITLE)}.</p>" + simple_table(*study.win_cells(), "human-wins"))
        parts.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in check_lines(study)) + "</ul>")
        if study.metric_agreements:
            parts.append(f"<p>{e(AGREEMENT_TITLE.format(who=study.raters_word))}.</p>"
                         + simple_table(*study.agreement_cells(), "metric-agreement"))
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
