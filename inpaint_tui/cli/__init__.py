"""The `inpaint-tui` command line: a thin face over the read side, the store and the jobs layer.

One module per area (samples, catalog, running, runs, results, workers, sweeps, judging), all built on
`base` (the Typer apps, root options, output helpers). Imports stay light at module level
(`--help` must not load torch or Textual); each command imports what it needs. Listing
commands take `--json`: then stdout holds only JSON.
"""

from __future__ import annotations

# Importing a command module registers its commands (in this order in --help).
from inpaint_tui.cli import catalog, judging, results, running, runs, samples, sweeps, workers  # noqa: E402,F401
from inpaint_tui.cli.base import app


def run_cli() -> None:
    app()


__all__ = ["app", "run_cli"]
