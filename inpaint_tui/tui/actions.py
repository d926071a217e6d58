"""Actions several screens offer on the runs they show."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from textual.screen import Screen


def default_export_path(store) -> Path:
    """exports/runs-<time>.csv beside the database's data folder (the project folder)."""
    return Path(store.data_dir).resolve().parent / "exports" / time.strftime("runs-%Y%m%d-%H%M%S.csv")


def export_runs(screen: Screen, run_ids: Sequence[int], what: str) -> None:
    """Ask for a file (its extension picks csv, jsonl or parquet), then write the export on a
    thread and say where it went; a bad name or a failure is one notification."""
    from inpaint_tui.tui.screens.dialogs import TextScreen

    run_ids = list(run_ids)
    if not run_ids:
        screen.notify("no runs to export", severity="warning")
        return
    store = screen.app.store

    def write(out: Path) -> None:
        from inpaint_tui.jobs.export import write_export

        try:
            samples_path, runs_path = write_export(store, run_ids, out)
        except Exception as error:  # shown, never a traceback: the app goes on
            screen.app.call_from_thread(screen.notify, f"{type(error).__name__}: {error}", title="export failed",
                                        severity="error", timeout=10)
            return
        screen.app.call_from_thread(screen.notify, f"{len(run_ids)} run(s): {samples_path} and {runs_path.name}",
                                    title="exported", timeout=10)

    def entered(text: str | None) -> None:
        if text and text.strip():
            screen.run_worker(lambda: write(Path(text.strip()).expanduser()), thread=True, group="export",
                              exit_on_error=False)

    screen.app.push_screen(TextScreen(f"Export {what} to (.csv, .jsonl or .parquet)",
                                      str(default_export_path(store))), entered)
