"""Executing and following runs from the command line, with progress on stderr."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any

import typer


@contextmanager
def progress_bars():
    """Progress bars on stderr: samples, the current sample's step, it/s, elapsed, ETA."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
    ) as progress:
        yield progress


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
                                detail=progress_detail(p.phase, p.sample_name, p.step, p.steps), rate=rate)

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
                                detail=progress_detail(p.phase, p.sample_name, p.step, p.steps))
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
