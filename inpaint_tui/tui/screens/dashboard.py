"""The dashboard: what is running now (live progress), the workers, the latest results."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Label

from inpaint_tui.read.present import format_duration, format_metric, format_params
from inpaint_tui.store import RunInfo, RunStatus, WorkerInfo
from inpaint_tui.tui.base import LiveScreen, Table, selected_key, sync_table
from inpaint_tui.tui.gpu import GpuInfo, gpu_status

RECENT = 8  # latest results at least; a taller terminal shows as many as fit
CHROME_LINES = 16  # header, footer, titles, the active runs and workers tables at their usual heights
HEADLINE = ("bg_mse", "clip_local", "kid")


@dataclass(frozen=True)
class DashboardData:
    active: list[RunInfo]
    workers: list[WorkerInfo]
    recent: list[RunInfo]
    recent_metrics: dict[int, dict[str, float]]
    gpus: dict[int, GpuInfo]


def progress_bar(fraction: float, width: int = 12) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def heartbeat_text(worker: WorkerInfo, now: float) -> str:
    """"alive" while heartbeats are fresh (stable for snapshots), else how long it is silent."""
    age = now - worker.heartbeat_at
    return "alive" if age < 10 else f"silent {format_duration(age)}"


class DashboardScreen(LiveScreen):
    BINDINGS = [Binding("enter", "open", "Open run", id="dashboard.open", show=False)]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("Active runs", classes="section-title")
        yield Table(id="active", cursor_type="row", zebra_stripes=True)
        yield Label("Workers", classes="section-title")
        yield Table(id="workers", cursor_type="row")
        yield Label("Latest results", classes="section-title")
        yield Table(id="recent", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#active", DataTable).add_columns(
            "run", "technique", "status", "progress", "step", "it/s", "ETA", "sample", "params")
        # Numbers first, long text last: at 80 columns what scrolls off is names, not numbers.
        self.query_one("#workers", DataTable).add_columns(
            "worker", "host", "kind", "status", "device", "run", "heartbeat", "GPU use", "GPU memory", "model",
            "data root")
        self.query_one("#recent", DataTable).add_columns("run", "technique", "status", "done", *HEADLINE, "params",
                                                         "set")

    def fetch(self) -> DashboardData:
        store = self.app.store
        active = store.runs(statuses=[RunStatus.RUNNING, RunStatus.QUEUED])
        limit = max(RECENT, self.app.size.height - CHROME_LINES)
        recent = store.runs(statuses=list(RunStatus.ENDED), limit=limit, newest_first=True)
        return DashboardData(active=active, workers=store.workers(), recent=recent,
                             recent_metrics=store.run_metric_values([r.id for r in recent]), gpus=gpu_status())

    def show(self, data: DashboardData) -> None:
        active_rows = []
        for run in data.active:
            p = run.progress
            status = run.status + (" (cancelling)" if run.cancel_requested else "")
            if p is None:
                cells = [progress_bar(run.done_count / run.sample_count if run.sample_count else 0), "-", "-", "-",
                         f"{run.done_count}/{run.sample_count}"]
            else:
                sample = p.sample_name or "-" if p.phase == "generating" else p.phase
                eta = format_duration(p.eta_seconds) if p.eta_seconds is not None else "-"
                cells = [progress_bar(p.fraction), f"{p.step}/{p.steps}",
                         f"{p.steps_per_second:.1f}" if p.steps_per_second else "-", eta,
                         f"{min(p.samples_done + 1, p.sample_count)}/{p.sample_count} {sample}"]
            active_rows.append((run.id, [str(run.id), run.technique, status, *cells,
                                         format_params(_short_params(run))]))
        sync_table(self.query_one("#active", DataTable), active_rows)

        now = time.time()
        here = socket.gethostname()
        worker_rows = []
        for worker in data.workers:
            # nvidia-smi sees this box's GPUs only: another box's cuda:0 is not ours
            gpu = data.gpus.get(_gpu_index(worker.device)) if worker.host == here else None
            worker_rows.append((worker.id, [
                str(worker.id), worker.host, worker.kind, worker.status, worker.device or "-",
                str(worker.run_id or "-"), heartbeat_text(worker, now),
                f"{gpu.utilisation}%" if gpu else "-", f"{gpu.memory_used_mb}/{gpu.memory_total_mb} MB" if gpu else "-",
                worker.model or "-", str(worker.data_root or "-"),
            ]))
        sync_table(self.query_one("#workers", DataTable), worker_rows)

        recent_rows = []
        for run in data.recent:
            values = data.recent_metrics.get(run.id, {})
            recent_rows.append((run.id, [str(run.id), run.technique, run.status, f"{run.done_count}/{run.sample_count}",
                                         *[format_metric(name, values.get(name)) for name in HEADLINE],
                                         format_params(_short_params(run)), run.sample_set]))
        sync_table(self.query_one("#recent", DataTable), recent_rows)

    @on(DataTable.RowSelected)
    def _open_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id in ("active", "recent") and event.row_key.value is not None:
            self.app.open_run(int(event.row_key.value))

    def action_open(self) -> None:
        table = self.focused if isinstance(self.focused, DataTable) else None
        key = selected_key(table) if table is not None and table.id in ("active", "recent") else None
        if key is not None:
            self.app.open_run(int(key))


def _short_params(run: RunInfo) -> dict:
    from engine.spec import changed_params

    return changed_params(run.technique, run.params)


def _gpu_index(device: str | None) -> int | None:
    if device and device.startswith("cuda"):
        suffix = device.split(":", 1)[1].split()[0] if ":" in device else "0"
        return int(suffix) if suffix.isdigit() else None
    return None
