"""Executing and following runs from the command line, with progress on stderr."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any

import typer


@contextmanager
def progress_bars():
    """Progress bars on stderr: samples, the current sample's step, it/s, elapsed, ETA. When
    stderr is not a terminal (`2>log`, nohup, CI) Rich would draw nothing until the end, so
    plain lines are written instead (LineProgress)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    if not console.is_terminal:
        yield LineProgress()
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
    ) as progress:
        yield progress


class LineProgress:
    """Progress as plain lines on stderr, for logs: one when a run changes phase, one when
    each sample starts, and within a sample one per quarter of its steps but at most one per
    LINE_INTERVAL seconds; then the run's end. No colours, no cursor moves. The same calls as
    Rich's Progress (add_task, update, console.print, stop), reading the `state` field (a
    RunProgress or a stored progress row) that the callers pass along."""

    LINE_INTERVAL = 10.0  # seconds between step lines within a sample
    STEP_LINES = 4  # step lines per sample at most (every 25% of its steps)

    def __init__(self, stream=None, clock=time.monotonic) -> None:
        import sys

        self.stream = stream or sys.stderr
        self.clock = clock
        self.tasks: dict[int, dict[str, Any]] = {}
        self.console = self  # `progress.console.print(...)` writes a line too

    def add_task(self, description: str, total: float | None = None, **fields) -> int:
        task = len(self.tasks)
        self.tasks[task] = {"description": description, "total": total, "last": None, "phase": None,
                            "sample": None, "quarter": 0}
        return task

    def print(self, text: str, **_) -> None:
        from rich.text import Text

        self._write(Text.from_markup(str(text)).plain)

    def stop(self) -> None:
        pass

    def update(self, task: int, *, detail: str | None = None, rate: str = "", state=None, completed=None,
               **_) -> None:
        info = self.tasks[task]
        prefix = info["description"]
        if state is None:  # a status without progress (queued), or the end with the samples done
            if detail and detail != info["phase"]:
                info["phase"] = detail
                if completed is not None and info["total"]:
                    detail += f" ({int(completed)}/{int(info['total'])} samples done)"
                self._write(f"{prefix}: {detail}")
            return
        if state.phase != "generating":
            if state.phase != info["phase"]:
                info["phase"] = state.phase
                self._write(f"{prefix}: {'loading model' if state.phase == 'loading' else state.phase}")
            return
        info["phase"] = state.phase
        now = self.clock()
        counter = f"sample {min(state.samples_done + 1, state.sample_count)}/{state.sample_count}"
        # A new name is a sample starting (names are unique in a set; a sample's end only
        # counts it done, under the same name).
        if state.sample_name and state.sample_name != info["sample"]:
            info.update(sample=state.sample_name, quarter=0, last=now)
            self._write(f"{prefix}: {counter} {state.sample_name}" + (f" ({rate})" if rate else ""))
            return
        quarter = self.STEP_LINES * state.step // state.steps if state.steps else 0
        if quarter > info["quarter"] and now - (info["last"] or 0) >= self.LINE_INTERVAL:
            info.update(quarter=quarter, last=now)
            self._write(f"{prefix}: {counter} {state.sample_name} step {state.step}/{state.steps}"
                        + (f" {rate}" if rate else ""))

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


def progress_detail(phase: str, sample_name: str | None, step: int, steps: int) -> str:
    if phase == "generating" and sample_name:
        return f"{sample_name} step {step}/{steps}"
    return phase


def execute_with_progress(store, worker, runs: list[tuple[int, int | None]], *, label=None) -> dict[int, str]:
    """Execute runs in this process as a foreground worker ((run id, claim or None to claim
    it now)), with progress bars on stderr; returns final statuses. A run a background worker
    took first is followed instead. Ctrl-C cancels the run in progress (finished samples
    stay) and exits 130."""
    from inpaint_tui.jobs.execute import quiet_libraries
    from inpaint_tui.store import RunBusy

    quiet_libraries()
    statuses: dict[int, str] = {}
    with progress_bars() as progress:
        for run_id, claim in runs:
            run = store.run(run_id)
            title = label(run) if label else f"run {run_id} {run.technique}"
            task = progress.add_task(title, total=run.sample_count, detail="loading model", rate="")

            def update(p, task=task) -> None:
                rate = f"{p.steps_per_second:.1f} it/s" if p.steps_per_second else ""
                progress.update(task, completed=p.samples_done + (p.step / p.steps if p.steps else 0),
                                detail=progress_detail(p.phase, p.sample_name, p.step, p.steps), rate=rate, state=p)

            def message(text: str) -> None:
                progress.console.print(f"[yellow]{text}[/]", highlight=False)

            try:
                statuses[run_id] = worker.execute(run_id, claim, on_progress=update, on_message=message)
            except RunBusy:
                statuses.update(follow(store, [run_id], progress, {run_id: task}))
            except KeyboardInterrupt:
                store.finish_run(run_id, cancelled=True)
                progress.stop()
                typer.secho(f"run {run_id} interrupted: finished samples are kept; status cancelled", err=True)
                raise typer.Exit(130)
            progress.update(task, completed=store.run(run_id).done_count, detail=statuses[run_id], rate="")
    return statuses


def follow(store, run_ids: list[int], progress, tasks: dict[int, Any], poll: float = 0.5) -> dict[int, str]:
    """Follow runs other processes execute, from the store, until each has ended."""

    from inpaint_tui.store import RunStatus

    statuses: dict[int, str] = {}
    while len(statuses) < len(run_ids):
        for info in store.runs([r for r in run_ids if r not in statuses]):
            p = info.progress
            if info.status in RunStatus.ENDED:
                statuses[info.id] = info.status
                progress.update(tasks[info.id], completed=info.done_count, detail=info.status, rate="")
            elif p is not None:
                rate = f"{p.steps_per_second:.1f} it/s" if p.steps_per_second else ""
                progress.update(tasks[info.id], completed=p.fraction * info.sample_count, rate=rate,
                                detail=progress_detail(p.phase, p.sample_name, p.step, p.steps), state=p)
            else:
                progress.update(tasks[info.id], detail=info.status + (" (cancelling)" if info.cancel_requested else ""))
        if len(statuses) < len(run_ids):
            time.sleep(poll)
    return statuses


@contextmanager
def foreground_worker(store, device: str | None, dtype: str | None):
    from inpaint_tui.jobs.worker import Worker

    with Worker(store, kind="foreground", device=device, dtype=dtype) as worker:
        yield worker


def announce_detached(store, run_ids: list[int], device: str | None) -> None:
    from inpaint_tui.jobs.launch import ensure_worker, serving_message

    worker_id, started = ensure_worker(store, device=device)
    typer.echo(f"{serving_message(store, worker_id, started)}; follow with `{watch_command(run_ids)}`", err=True)


def watch_command(run_ids: list[int]) -> str:
    """The command that follows these runs, as a shell takes it (ids space-separated)."""
    return "inpaint-tui runs watch " + " ".join(map(str, run_ids))
