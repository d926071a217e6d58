"""Two runs side by side: the paired statistics on their common samples (means, B − A with
its 95% bootstrap interval, Wilcoxon p, a verdict), the per-sample values of one metric, and
for the highlighted sample its input (mask tinted), both outputs and the reference."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Label

from engine.metrics.catalogue import higher_is_better, key_metrics
from engine.spec import changed_params
from inpaint_tui.read.compare import compare_runs, verdict
from inpaint_tui.read.present import format_interval, format_metric, format_number, format_p_value, format_params
from inpaint_tui.store import NotFound, RunDetail, SampleInfo
from inpaint_tui.tui.base import ImageStrip, LiveScreen, Table, selected_key, sync_table

BETTER, WORSE = "bold green", "bold red"


@dataclass(frozen=True)
class CompareData:
    detail_a: RunDetail
    detail_b: RunDetail
    statistics: list[dict[str, Any]]
    error: str | None
    samples: dict[int, SampleInfo] = field(default_factory=dict)  # by sample id, both runs' sets


def _describe(detail: RunDetail) -> str:
    run = detail.run
    return (f"run {run.id}: {run.technique} {format_params(changed_params(run.technique, run.params))} · "
            f"{run.model} · seed {run.seed} · {run.steps} steps · set {run.sample_set} · {run.status} "
            f"({run.done_count}/{run.sample_count})")


def _direction_style(difference: float | None, metric: str) -> str:
    """Green where B is better than A on this metric, red where worse."""
    direction = higher_is_better(metric)
    if difference is None or direction is None or difference == 0 or math.isnan(difference):
        return ""
    return BETTER if (difference > 0) == direction else WORSE


STATISTICS_COLUMNS = (("metric", "metric"), ("n", "n"), ("a", "run {a} (A)"), ("b", "run {b} (B)"), ("diff", "B − A"),
                      ("verdict", "verdict"), ("ci", "95% interval"), ("p", "Wilcoxon p"))
# Where the table is wider than the screen (80 columns): the evidence first, whole, and the two
# means (also in the per-sample table) and n after it, where they may scroll off.
NARROW_ORDER = ("metric", "diff", "ci", "p", "verdict", "n", "a", "b")
CELL_PADDING = 2  # DataTable's cell padding, one column each side


def statistics_rows(entries: list[dict[str, Any]], run_b: int) -> list[tuple[str, tuple]]:
    """The paired statistics table's rows (STATISTICS_COLUMNS), formatted like `inpaint-tui compare`."""
    rows = []
    for entry in entries:
        name = entry["metric"]
        if "difference" not in entry:
            cells = (name, str(entry["n"]), "-", "-", "-", entry.get("note", ""), "-", "-")
            rows.append((name, tuple(Text(c) for c in cells)))
            continue
        text = verdict(entry, run_b)
        style = BETTER if text.endswith("better") else WORSE if text.endswith("worse") else ""
        cells = (
            Text(name), Text(str(entry["n"])),
            Text(format_metric(name, entry["mean_a"])), Text(format_metric(name, entry["mean_b"])),
            Text(format_number(entry["difference"])), Text(text, style=style),
            Text(format_interval(entry["ci_low"], entry["ci_high"], number=format_number, separator=", ")),
            Text(format_p_value(entry["p_value"])),
        )
        rows.append((name, cells))
    return rows


class CompareScreen(LiveScreen):
    """Pushed on top of the leaderboard (or any screen): `escape` goes back."""

    live = False  # two runs' statistics: loaded when shown, not every second (the bootstrap costs)
    BINDINGS = [
        Binding("escape", "back", "Back", id="compare.back"),
        Binding("o", "cycle_metric", "Metric", id="compare.metric"),
        Binding("x", "swap", "Swap A/B", id="compare.swap"),
    ]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # short: the images give the tables room
    DEFAULT_CSS = """
    CompareScreen #runs { width: 1fr; height: auto; padding: 0 1; }
    CompareScreen #statistics { height: auto; max-height: 10; }
    CompareScreen.-short #statistics { max-height: 6; }
    CompareScreen #per-sample { height: 1fr; min-height: 4; }
    CompareScreen ImageStrip { height: 2fr; }
    CompareScreen.-short ImageStrip { height: 1fr; }
    """

    def __init__(self, run_a: int, run_b: int) -> None:
        super().__init__()
        self.run_a, self.run_b = run_a, run_b
        self.data: CompareData | None = None
        self.metric: str | None = None
        self.narrow = False  # the statistics in NARROW_ORDER (set from the rows and the width)
        self._image_key: tuple | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label(f"A = run {self.run_a}   B = run {self.run_b}", id="runs")
        yield Label("Paired statistics on the common samples (B − A)", classes="section-title")
        yield Table(id="statistics", cursor_type="row", zebra_stripes=True)
        yield Label("Per sample", id="per-sample-title", classes="section-title")
        yield Table(id="per-sample", cursor_type="row", zebra_stripes=True)
        yield ImageStrip(id="images")
        yield Footer()

    def on_mount(self) -> None:
        self._set_columns()
        self.query_one("#per-sample", DataTable).focus()

    def _labels(self) -> dict[str, str]:
        return {key: label.format(a=self.run_a, b=self.run_b) for key, label in STATISTICS_COLUMNS}

    def _order(self) -> tuple[str, ...]:
        return NARROW_ORDER if self.narrow else tuple(key for key, _ in STATISTICS_COLUMNS)

    def _fits(self, rows: list[tuple[str, tuple]]) -> bool:
        """Whether the statistics table in its full order fits the screen's width."""
        labels = self._labels()
        widths = [max([len(labels[key]), *(len(cells[index].plain) for _, cells in rows)])
                  for index, (key, _) in enumerate(STATISTICS_COLUMNS)]
        return sum(widths) + CELL_PADDING * len(widths) + 1 <= self.app.size.width  # + the scroll bar's edge

    def _set_columns(self) -> None:
        statistics = self.query_one("#statistics", DataTable)
        statistics.clear(columns=True)
        labels = self._labels()
        for key in self._order():
            statistics.add_column(labels[key], key=key)
        per_sample = self.query_one("#per-sample", DataTable)
        per_sample.clear(columns=True)
        for key, label in (("sample", "sample"), ("a", f"A: run {self.run_a}"), ("b", f"B: run {self.run_b}"),
                           ("diff", "B − A")):
            per_sample.add_column(label, key=key)

    # --- data -------------------------------------------------------------------------------

    def fetch(self) -> CompareData:
        store = self.app.store
        detail_a, detail_b = store.run_detail(self.run_a), store.run_detail(self.run_b)
        try:
            statistics, error = compare_runs(store, self.run_a, self.run_b), None
        except (KeyError, ValueError) as exc:
            statistics, error = [], str(exc)
        samples = {}
        for set_name in dict.fromkeys((detail_a.run.sample_set, detail_b.run.sample_set)):
            try:
                samples.update({sample.id: sample for sample in store.samples(set_name)})
            except NotFound:  # a deleted set: the outputs still show, without input and reference
                pass
        return CompareData(detail_a, detail_b, statistics, error, samples)

    @property
    def statistics(self) -> list[dict[str, Any]]:
        """The paired comparison shown (as `present.compare_runs` returns it)."""
        return [] if self.data is None else self.data.statistics

    @property
    def metrics(self) -> list[str]:
        """The metrics the per-sample table can show: those both runs have per sample."""
        if self.data is None:
            return []
        names_a = {n for s in self.data.detail_a.samples for n in s.metrics}
        names_b = {n for s in self.data.detail_b.samples for n in s.metrics}
        common = names_a & names_b
        return key_metrics(common) + sorted(common - set(key_metrics(common)))

    def show(self, data: CompareData) -> None:
        self.data = data
        self.query_one("#runs", Label).update(
            Text(f"A  {_describe(data.detail_a)}\nB  {_describe(data.detail_b)}"))
        self._show_statistics()
        metrics = self.metrics
        if self.metric not in metrics:
            self.metric = metrics[0] if metrics else None
        self._show_samples()

    def _show_statistics(self) -> None:
        data = self.data
        rows = statistics_rows(data.statistics, self.run_b)
        if data.error:
            rows = [("error", (Text("error", style=WORSE), Text(""), Text(""), Text(""), Text(""), Text(data.error),
                               Text(""), Text("")))]
        narrow = not self._fits(rows)
        if narrow != self.narrow:
            self.narrow = narrow
            self._set_columns()
        position = {key: index for index, (key, _) in enumerate(STATISTICS_COLUMNS)}
        order = [position[key] for key in self._order()]
        sync_table(self.query_one("#statistics", DataTable),
                   [(key, tuple(cells[index] for index in order)) for key, cells in rows])

    def on_resize(self) -> None:
        if self.data is not None:
            self._show_statistics()

    def _show_samples(self) -> None:
        data = self.data
        if data is None:
            return
        metric = self.metric
        direction = higher_is_better(metric) if metric else None
        title = f"Per sample: {metric}" if metric else "Per sample (no metric both runs have)"
        if direction is not None:
            key = self.app.get_key_display(next(b for _, b in self._bindings if b.id == "compare.metric"))
            title += f" ({'higher' if direction else 'lower'} is better; {key}: next metric)"
        self.query_one("#per-sample-title", Label).update(title)
        by_a = {s.sample_id: s for s in data.detail_a.samples}
        by_b = {s.sample_id: s for s in data.detail_b.samples}
        order = list(by_a) + [sample_id for sample_id in by_b if sample_id not in by_a]  # A's order, then B's extra
        rows = []
        for sample_id in order:
            a, b = by_a.get(sample_id), by_b.get(sample_id)
            name = (a or b).sample_name
            value_a = a.metrics.get(metric) if a is not None and metric else None
            value_b = b.metrics.get(metric) if b is not None and metric else None
            difference = value_b - value_a if value_a is not None and value_b is not None else None
            style = _direction_style(difference, metric) if metric else ""
            rows.append((sample_id, (Text(name), Text(self._value(a, value_a)), Text(self._value(b, value_b)),
                                     Text(format_number(difference), style=style))))
        table = self.query_one("#per-sample", DataTable)
        sync_table(table, rows)
        self._show_images()

    @staticmethod
    def _value(sample, value: float | None) -> str:
        if sample is None:
            return "not in run"
        if value is None and sample.status != "done":
            return sample.status
        return format_number(value)

    # --- images -----------------------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#per-sample")
    def _highlighted(self) -> None:
        self._show_images()

    def _show_images(self) -> None:
        if self.data is None:
            return
        key = selected_key(self.query_one("#per-sample", DataTable))
        if key is None:
            return
        sample_id = int(key)
        sample = self.data.samples.get(sample_id)
        out_a = next((s.image_path for s in self.data.detail_a.samples if s.sample_id == sample_id), None)
        out_b = next((s.image_path for s in self.data.detail_b.samples if s.sample_id == sample_id), None)
        paths = (sample.image_path if sample else None, sample.mask_path if sample else None, out_a, out_b,
                 sample.reference_path if sample else None)
        if paths == self._image_key:
            return
        self._image_key = paths
        self._load_images(paths)

    @work(thread=True, exclusive=True, group="images", exit_on_error=False)
    def _load_images(self, paths: tuple) -> None:
        from inpaint_tui.tui.images import load, with_mask

        image, mask, out_a, out_b, reference = paths
        source = load(image)
        items = [("input + mask", with_mask(source, mask) if source is not None else None),
                 (f"A: run {self.run_a}", load(out_a)), (f"B: run {self.run_b}", load(out_b))]
        if reference is not None:
            items.append(("reference", load(reference)))
        self.app.call_from_thread(self._set_images, paths, items)

    def _set_images(self, paths: tuple, items: list) -> None:
        if self.is_attached and paths == self._image_key:
            self.query_one("#images", ImageStrip).set_images(items)

    # --- actions ----------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cycle_metric(self) -> None:
        metrics = self.metrics
        if not metrics:
            return
        self.metric = metrics[(metrics.index(self.metric) + 1) % len(metrics)] if self.metric in metrics else metrics[0]
        self._show_samples()

    def action_swap(self) -> None:
        """B becomes A: the differences and verdicts read the other way round."""
        self.run_a, self.run_b = self.run_b, self.run_a
        self.data = None
        self._image_key = None
        self.query_one("#runs", Label).update(f"A = run {self.run_a}   B = run {self.run_b}")
        self._set_columns()
        self.reload()
