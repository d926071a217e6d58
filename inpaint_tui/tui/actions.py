"""Actions several screens offer on the runs they show."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from textual.screen import Screen


def default_export_path(store, folder: str = "exports", name: str = "runs-%Y%m%d-%H%M%S.csv") -> Path:
    """<folder>/<name with the time> beside the database's data folder (the project folder)."""
    return Path(store.data_dir).resolve().parent / folder / time.strftime(name)


def export_runs(screen: Screen, run_ids: Sequence[int], what: str) -> None:
    """Ask for a file (its extension picks csv, jsonl or parquet), then write the export on a
    thread and say where it went."""

    def write(out: Path) -> str:
        from inpaint_tui.read.export import write_export

        samples_path, runs_path = write_export(screen.app.store, run_ids, out)
        return f"{len(run_ids)} run(s): {samples_path} and {runs_path.name}"

    _ask_and_write(screen, list(run_ids), f"Export {what} to (.csv, .jsonl or .parquet)",
                   default_export_path(screen.app.store), write, "export")


def report_runs(screen: Screen, run_ids: Sequence[int], what: str) -> None:
    """Ask for a folder, then write the HTML + Markdown report there on a thread (the first
    run is the baseline of the paired comparisons)."""

    def write(out: Path) -> str:
        from inpaint_tui.read.report import write_report

        files = write_report(screen.app.store, run_ids, out)
        return f"{len(run_ids)} run(s): {files.html}"

    _ask_and_write(screen, list(run_ids), f"Report on {what} (baseline: run {run_ids[0] if run_ids else '-'}) "
                   "into the folder", default_export_path(screen.app.store, "reports", "report-%Y%m%d-%H%M%S"),
                   write, "report")


def _ask_and_write(screen: Screen, run_ids: list[int], question: str, default: Path, write, verb: str) -> None:
    """The dialog, the thread, and one notification either way (a failure never a traceback)."""
    from inpaint_tui.tui.screens.dialogs import TextScreen

    if not run_ids:
        screen.notify(f"no runs to {verb}", severity="warning")
        return

    def work(out: Path) -> None:
        try:
            message = write(out)
        except Exception as error:  # shown, never a traceback: the app goes on
            screen.app.call_from_thread(screen.notify, f"{type(error).__name__}: {error}", title=f"{verb} failed",
                                        severity="error", timeout=10)
            return
        screen.app.call_from_thread(screen.notify, message, title=f"{verb} written", timeout=10)

    def entered(text: str | None) -> None:
        if text and text.strip():
            screen.run_worker(lambda: work(Path(text.strip()).expanduser()), thread=True, group=verb,
                              exit_on_error=False)

    screen.app.push_screen(TextScreen(question, str(default)), entered)
