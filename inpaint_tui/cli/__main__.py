"""`python -m inpaint_tui.cli`: how worker processes are started (a fresh interpreter each)."""

from inpaint_tui.cli import run_cli

run_cli()
