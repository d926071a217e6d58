"""Sweeps: a metric against a swept parameter, one line per technique (run means; the mean
over seeds where the sweep has a seed axis), and the points in a table below."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Label, Select, Static
from textual_plotext import PlotextPlot

from engine.metrics.catalogue import higher_is_better, key_metrics
from inpaint_tui.read.present import format_metric, plural
from inpaint_tui.read.sweep_series import (
    Series,
    SweepData,
    bar_caption,
    build_series,
    load_sweep_data,
    point_of,
    sweep_axes,
    tick_label,
)
from inpaint_tui.store import SweepInfo
from inpaint_tui.tui.base import LiveScreen, Table, sync_table

PLOT_COLOURS = ("blue+", "orange+", "green+", "red+", "magenta+", "cyan+")  # a line and its bars share one
NO_SWEEPS = ("No sweeps yet. Queue one from the command line, e.g.\n"
             "  inpaint-tui sweep -t blended,tdpaint -p blend_start=0,0.25,0.5 --seeds 0,1\n"
             "or from New run (n) with comma lists in parameter fields.")


class SweepPlotScreen(LiveScreen):
    BINDINGS = [
        Binding("m", "cycle_metric", "Metric", id="sweeps.metric"),
        Binding("x", "cycle_axis", "X axis", id="sweeps.axis"),
        Binding("enter", "open", "Open run", id="sweeps.open", show=False),
    ]
    DEFAULT_CSS = """
    SweepPlotScreen #bar { height: 3; }
    SweepPlotScreen #bar Select { width: 1fr; }
    SweepPlotScreen #plot { height: 2fr; min-height: 10; }
    SweepPlotScreen #points { height: 1fr; }
    SweepPlotScreen #empty { padding: 1 2; }
    SweepPlotScreen #summary { width: 1fr; height: auto; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.sweep_id: int | None = None  # None: the newest
        self.metric: str | None = None
        self.x: str | None = None
        self.data: SweepData | None = None
        self._options: dict[str, list] = {}
        self._drawn: tuple | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(NO_SWEEPS, id="empty")
        with Vertical(id="body"):
            with Horizontal(id="bar"):
                yield Select([], id="sweep", prompt="sweep", allow_blank=True)
                yield Select([], id="metric", prompt="metric", allow_blank=True)
                yield Select([], id="x", prompt="x parameter", allow_blank=True)
            yield PlotextPlot(id="plot")
            yield Label("", id="summary", classes="hint")
            yield Table(id="points", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#empty").display = False

    # --- data -------------------------------------------------------------------------------

    def fetch(self) -> SweepData:
        store = self.app.store
        sweeps = store.sweeps()
        if not sweeps:
            return SweepData([], None)
        by_id = {sweep.id: sweep for sweep in sweeps}
        sweep = by_id.get(self.sweep_id) or sweeps[-1]
        return load_sweep_data(store, sweep, sweeps)

    def show(self, data: SweepData) -> None:
        if data.sweep is not None and self.sweep_id is not None and data.sweep.id != self.sweep_id \
                and self.sweep_id in {s.id for s in data.sweeps}:
            return  # loaded for the previous choice; the reload for the new one follows
        self.data = data
        empty = data.sweep is None
        self.query_one("#empty").display = empty
        self.query_one("#body").display = not empty
        if empty:
            return
        sweep = data.sweep
        metrics = self.metrics
        axes = sweep_axes(sweep)
        if self.metric not in metrics:
            self.metric = metrics[0] if metrics else None
        if self.x not in axes:
            self.x = axes[0] if axes else None
        self._set_options("sweep", [(f"sweep {s.id}" + (f" {s.name}" if s.name else "") + f" ({plural(len(s.run_ids), 'run')})",
                                     s.id) for s in reversed(data.sweeps)], sweep.id)
        self._set_options("metric", [(name, name) for name in metrics], self.metric)
        self._set_options("x", [(name, name) for name in axes], self.x)
        self._draw()

    @property
    def metrics(self) -> list[str]:
        if self.data is None:
            return []
        names = {name for values in self.data.values.values() for name in values}
        return key_metrics(names) + sorted(names - set(key_metrics(names)))

    def _set_options(self, name: str, options: list, value: Any) -> None:
        select = self.query_one(f"#{name}", Select)
        with select.prevent(Select.Changed):
            if options != self._options.get(name):
                self._options[name] = options
                select.set_options(options)
            if value is None:
                select.clear()
            elif select.value != value:
                select.value = value

    # --- drawing ----------------------------------------------------------------------------

    @property
    def series(self) -> list[Series]:
        if self.data is None or self.metric is None or self.x is None:
            return []
        return build_series(self.data, self.metric, self.x)[0]

    @property
    def point_rows(self) -> list[tuple[int, tuple]]:
        """The points table: (run id, cells)."""
        data = self.data
        if data is None or data.sweep is None:
            return []
        sweep, rows = data.sweep, []
        axes = sweep_axes(sweep)
        for index, run_id in enumerate(sweep.run_ids):
            run = data.runs.get(run_id)
            point = point_of(sweep, run, index)
            value = data.values.get(run_id, {}).get(self.metric) if self.metric else None
            cells = (str(run_id), point.get("technique", "?"), *[str(point.get(key, "-")) for key in axes],
                     str(point.get("seed", "-")), run.status if run else "deleted",
                     "reused" if sweep.reused[index] else "", format_metric(self.metric, value) if self.metric else "-")
            rows.append((run_id, tuple(Text(cell) for cell in cells)))
        return rows

    def _draw(self) -> None:
        data, metric, x = self.data, self.metric, self.x
        sweep = data.sweep
        series, axis, numeric = build_series(data, metric, x) if metric and x else ([], [], True)
        drawn = (sweep.id, metric, x, tuple((s.label, tuple(s.xs), tuple(s.ys), tuple(s.bars)) for s in series))
        self._draw_table(sweep)
        if drawn == self._drawn:
            return
        self._drawn = drawn
        plot = self.query_one("#plot", PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        if metric is None or x is None:
            plt.title("nothing to plot: " + ("no metric values yet" if metric is None else "no swept parameter"))
            plot.refresh()
            self._summary(series, metric)
            return
        position = {value: index + 1 for index, value in enumerate(axis)}
        for index, line in enumerate(series):
            if not line.xs:
                continue
            colour = PLOT_COLOURS[index % len(PLOT_COLOURS)]
            xs = list(line.xs) if numeric else [position[value] for value in line.xs]
            plt.plot(xs, line.ys, label=line.label, marker="braille", color=colour)
            plt.scatter(xs, line.ys, marker="dot", color=colour)
            for x_at, bar in zip(xs, line.bars):
                if bar is not None:
                    plt.plot([x_at, x_at], list(bar), marker="braille", color=colour)
        if axis:
            if numeric:
                plt.xticks(axis, [tick_label(value) for value in axis])
                span = float(max(axis)) - float(min(axis))
                if span > 0:  # a margin, so the end points' bars are not drawn on the frame
                    plt.xlim(float(min(axis)) - 0.04 * span, float(max(axis)) + 0.04 * span)
            else:
                plt.xticks(list(position.values()), [tick_label(value) for value in axis])
                plt.xlim(0.5, len(axis) + 0.5)
        direction = higher_is_better(metric)
        better = "" if direction is None else f" ({'higher' if direction else 'lower'} is better)"
        plt.title(f"{metric} against {x}{better}")
        plt.xlabel(x)
        plt.ylabel(metric)
        plot.refresh()
        self._summary(series, metric)

    def _summary(self, series: list[Series], metric: str | None) -> None:
        points = sum(len(s.xs) for s in series)
        text = f"{len(series)} line{'s' if len(series) != 1 else ''}, {points} point{'s' if points != 1 else ''}"
        if metric:
            text += f" with {metric}; the mean over seeds where the sweep has several"
        bars = bar_caption(series)
        text += f"; {bars}" if bars else ""
        self.query_one("#summary", Label).update(text)

    def _draw_table(self, sweep: SweepInfo) -> None:
        table = self.query_one("#points", DataTable)
        columns = ("run", "technique", *sweep_axes(sweep), "seed", "status", "", self.metric or "metric")
        if tuple(str(c.label) for c in table.columns.values()) != columns:
            table.clear(columns=True)
            table.add_columns(*columns)
        sync_table(table, self.point_rows)

    # --- choices ----------------------------------------------------------------------------

    @on(Select.Changed, "#sweep")
    def _sweep_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, int) and event.value != (self.data.sweep.id if self.data and self.data.sweep
                                                            else None):
            self.sweep_id = event.value
            self.reload()

    @on(Select.Changed, "#metric")
    def _metric_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self.metric:
            self.metric = event.value
            if self.data is not None and self.data.sweep is not None:
                self._draw()

    @on(Select.Changed, "#x")
    def _x_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self.x:
            self.x = event.value
            if self.data is not None and self.data.sweep is not None:
                self._draw()

    def action_cycle_metric(self) -> None:
        metrics = self.metrics
        if metrics:
            self.metric = metrics[(metrics.index(self.metric) + 1) % len(metrics)] if self.metric in metrics \
                else metrics[0]
            self.show(self.data)

    def action_cycle_axis(self) -> None:
        if self.data is None or self.data.sweep is None:
            return
        axes = sweep_axes(self.data.sweep)
        if axes:
            self.x = axes[(axes.index(self.x) + 1) % len(axes)] if self.x in axes else axes[0]
            self.show(self.data)

    def action_open(self) -> None:
        table = self.query_one("#points", DataTable)
        if table.row_count:
            row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            self.app.open_run(int(row_key))

    @on(DataTable.RowSelected, "#points")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(int(event.row_key.value))
