"""One run: its configuration (parameters, hash, versions, the command to reproduce it), a
row per sample with metrics or the error, and the selected sample as input | mask | output |
reference; while it runs, the live preview of the sample in progress."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ScrollableContainer
from textual.widgets import DataTable, Footer, Header, Static

from engine.metrics.catalogue import key_metrics
from engine.spec import changed_params
from inpaint_tui.read.present import format_metric, format_params, format_progress, format_seed, format_summary
from inpaint_tui.store import RunDetail, RunStatus, SampleInfo
from inpaint_tui.tui.base import ImageStrip, LiveScreen, Table, selected_key, sync_table
from inpaint_tui.tui.images import load, with_mask


@dataclass(frozen=True)
class DetailData:
    detail: RunDetail
    samples: dict[int, SampleInfo]


def reproduce_command(detail: RunDetail) -> str:
    """A command that computes this run again, rebuilt from what was stored (the recorded
    command may have been a sweep that queued many runs)."""
    run = detail.run
    parts = ["inpaint-tui", "run", "-t", run.technique, "--samples", run.sample_set, "--model", run.model,
             "--steps", str(run.steps), "--seed", str(run.seed), "--guidance", str(run.guidance)]
    if run.negative_prompt:
        parts += ["--negative-prompt", run.negative_prompt]
    for name, value in changed_params(run.technique, run.params).items():  # the rest are defaults
        parts += ["-p", f"{name}={value}"]
    if run.eval_config.get("groups"):
        parts += ["--metrics", ",".join(run.eval_config["groups"])]
    if run.eval_config.get("models"):
        parts += ["--eval-models", run.eval_config["models"]]
    return shlex.join(parts)


class RunDetailScreen(LiveScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="detail.back"),
        Binding("c", "cancel", "Cancel run", id="detail.cancel"),
    ]
    # On a short terminal the configuration scrolls in a few lines (mouse wheel, or tab to it
    # and the arrows), so the per-sample table keeps room for its rows; on a narrow one the
    # summary goes under the configuration.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    DEFAULT_CSS = """
    RunDetailScreen #top { layout: horizontal; height: auto; max-height: 14; overflow-x: hidden; }
    RunDetailScreen.-short #top { max-height: 5; }
    RunDetailScreen #config { width: 2fr; height: auto; padding: 0 1; }
    RunDetailScreen #summary { width: 1fr; height: auto; padding: 0 1; }
    RunDetailScreen.-narrow #top { layout: vertical; }
    RunDetailScreen.-narrow #config, RunDetailScreen.-narrow #summary { width: 1fr; }
    RunDetailScreen #samples { height: 1fr; min-height: 4; }
    RunDetailScreen #error { height: auto; max-height: 6; color: $error; padding: 0 1; }
    RunDetailScreen.-short #error { max-height: 2; }
    RunDetailScreen ImageStrip { height: 2fr; }
    RunDetailScreen.-short ImageStrip { height: 1fr; }
    """

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.data: DetailData | None = None
        self._shown_images: tuple | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with ScrollableContainer(id="top"):
            yield Static(id="config")
            yield Static(id="summary")
        yield Table(id="samples", cursor_type="row", zebra_stripes=True)
        yield Static(id="error")
        yield ImageStrip(id="images")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#samples", DataTable).focus()

    def fetch(self) -> DetailData:
        store = self.app.store
        detail = store.run_detail(self.run_id)
        return DetailData(detail=detail, samples={s.id: s for s in store.samples(detail.run.sample_set)})

    def show(self, data: DetailData) -> None:
        self.data = data
        run = data.detail.run
        self.query_one("#config", Static).update("\n".join(line for line in [
            f"[b]run {run.id}[/b] · {run.technique} · [b]{run.status}[/b]"
            + (" (cancel requested)" if run.cancel_requested else ""),
            f"parameters  {format_params(changed_params(run.technique, run.params))} (others default)",
            f"model {run.model} · steps {run.steps} · guidance {run.guidance} · seed {run.seed} · set {run.sample_set}",
            f"device {run.device or '-'} · worker {run.worker_id or '-'} · options {format_params(run.options)}",
            f"config hash {run.config_hash[:16]} · git {run.git_commit or '-'}",
            "versions " + " ".join(f"{k}={v}" for k, v in run.versions.items() if k in ("torch", "diffusers", "inpaint-tui")),
            f"reproduce  {reproduce_command(data.detail)}",
            f"queued by  {run.command}" if run.command else "",
            f"tags {' '.join(run.tags) or '-'} · note {run.note or '-'}",
            f"error {run.error}" if run.error else "",
        ] if line))
        summary = [f"{run.done_count}/{run.sample_count} done · {run.failed_count} failed"]
        if run.status == RunStatus.RUNNING:
            summary.append(format_progress(run.progress))
        for name in key_metrics(data.detail.summaries):
            summary.append(f"{name:>11} {format_summary(data.detail.summaries[name], name=name)}")
        self.query_one("#summary", Static).update("\n".join(summary))

        table = self.query_one("#samples", DataTable)
        names = key_metrics({name for s in data.detail.samples for name in s.metrics})
        # The metrics first: the 19-digit per-sample seeds come last, out of the way at 80 columns.
        columns = ["#", "sample", "status", *names, "error", "tries", "seed (hex)"]
        if [str(c.label) for c in table.columns.values()] != columns:
            table.clear(columns=True)
            table.add_columns(*columns)
        sync_table(table, [
            (s.sample_id, [str(s.position), s.sample_name, s.status, *[format_metric(n, s.metrics.get(n)) for n in names],
                           (s.error or "")[:60], str(s.attempts), format_seed(s.seed)])
            for s in data.detail.samples
        ])
        self._show_selected()

    @on(DataTable.RowHighlighted, "#samples")
    def _highlighted(self) -> None:
        self._show_selected()

    def _show_selected(self) -> None:
        if self.data is None:
            return
        key = selected_key(self.query_one("#samples", DataTable))
        outcome = next((s for s in self.data.detail.samples if str(s.sample_id) == key), None)
        if outcome is None:
            return
        sample = self.data.samples.get(outcome.sample_id)
        progress = self.data.detail.run.progress
        live = (progress is not None and progress.sample_position == outcome.position
                and progress.preview_path is not None)
        signature = (outcome.sample_id, outcome.status, str(outcome.image_path),
                     (str(progress.preview_path), progress.preview_step) if live else None)
        error = self.query_one("#error", Static)
        error.update(f"{outcome.error}\n{outcome.traceback or ''}".strip() if outcome.error else "")
        if signature == self._shown_images:
            return  # unchanged: do not rebuild the images on every refresh
        self._shown_images = signature
        source = load(sample.image_path) if sample else None
        items = [
            ("input + mask", with_mask(source, sample.mask_path) if source is not None else None),
            ("mask", load(sample.mask_path) if sample else None),
        ]
        if live:
            items.append((f"live preview (step {progress.preview_step})", load(progress.preview_path)))
        else:
            items.append(("output", load(outcome.image_path)))
        items.append(("reference", load(sample.reference_path) if sample else None))
        self.query_one("#images", ImageStrip).set_images(items)

    def action_cancel(self) -> None:
        from inpaint_tui.store import StoreError

        try:
            status = self.app.store.request_cancel(self.run_id)
        except StoreError as error:
            self.notify(str(error), severity="warning")
            return
        self.notify(f"run {self.run_id} " + ("cancelled" if status == RunStatus.CANCELLED else "cancel requested"))
        self.reload()
