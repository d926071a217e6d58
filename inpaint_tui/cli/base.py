"""The command line's shared parts: the Typer apps, the root options, output helpers and the
one-line error rule. Every command module imports from here; nothing here imports them."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import typer

from engine.metrics.catalogue import DEFAULT_GROUPS, GROUPS
from engine.options import CPU_AUTO_BATCH
from engine.spec import DEFAULTS

def _value_names_in_help() -> None:
    """Typer 0.2x's --help shows each parameter's Python annotation (`<list[int]>`, `<str>`, and
    `<bool>` on flags that take no value). Show what is typed instead: the metavar where one is
    given, Click's names otherwise (TEXT, INTEGER, NUMBER, PATH), nothing for flags; arguments
    are named by their metavar alone. Another Typer keeps its own help."""
    from typer import core

    annotation_label = getattr(core.TyperOption, "display_type", None)
    if annotation_label is None or not hasattr(core, "TyperArgument"):
        return
    names = {"str": "TEXT", "int": "INTEGER", "int range": "INTEGER", "float": "NUMBER", "float range": "NUMBER",
             "path": "PATH", "file": "PATH", "directory": "FOLDER"}

    def value_name(self, ctx):
        if isinstance(self, core.TyperArgument) or getattr(self, "is_flag", False) or getattr(self, "count", False):
            return None
        if self.metavar is not None:
            return self.metavar
        label = str(annotation_label(self, ctx)).strip("<>")
        label = label[len("list["):-1] if label.startswith("list[") else label
        return names.get(label, label.upper())

    core.TyperArgument.display_type_rich = value_name
    core.TyperOption.display_type_rich = value_name


_value_names_in_help()

app = typer.Typer(
    name="inpaint-tui",
    help="Terminal experiment manager for diffusion inpainting: import samples, run techniques, rank them.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)

samples_app = typer.Typer(help="Import and list samples and sample sets.", no_args_is_help=True)

runs_app = typer.Typer(help="List, inspect, watch, cancel, resume and delete runs.", no_args_is_help=True)

metrics_app = typer.Typer(help="Compute or recompute a run's metrics.", no_args_is_help=True)

sweeps_app = typer.Typer(help="List and inspect sweeps.", no_args_is_help=True)

workers_app = typer.Typer(help="List live workers; stop them.")
app.add_typer(samples_app, name="samples")
app.add_typer(runs_app, name="runs")
app.add_typer(metrics_app, name="metrics")
app.add_typer(sweeps_app, name="sweeps")
app.add_typer(workers_app, name="workers")

JSON_HELP = "Print machine-readable JSON on stdout (and nothing else there)."


@dataclass
class Context:
    db: str | None
    data_dir: str | None
    image_protocol: str = "auto"

    def store(self):
        from inpaint_tui.store import Store

        return Store(self.db, data_dir=self.data_dir)


def context_of(ctx: typer.Context) -> Context:
    return ctx.find_root().obj


@app.callback()
def main(
    ctx: typer.Context,
    db: Optional[str] = typer.Option(
        None, "--db", envvar="INPAINT_TUI_DB", help="Database path or SQLAlchemy URL (default: ./experiments.db)."
    ),
    data_dir: Optional[str] = typer.Option(
        None, "--data-dir", envvar="INPAINT_TUI_DATA", help="Folder for images (default: beside the database)."
    ),
    image_protocol: str = typer.Option(
        "auto", "--image-protocol", help="How the TUI draws images: auto, kitty, sixel, halfcell, unicode."
    ),
) -> None:
    """Without a command, opens the TUI on the database."""
    ctx.obj = Context(db=db, data_dir=data_dir, image_protocol=image_protocol)
    if ctx.invoked_subcommand is None:
        open_tui(ctx.obj)


def open_tui(context: "Context", start_screen: str | None = None, judging: tuple[int, str] | None = None) -> None:
    from inpaint_tui.tui import IMAGE_PROTOCOLS

    if context.image_protocol not in IMAGE_PROTOCOLS:
        fail(f"--image-protocol must be one of {', '.join(IMAGE_PROTOCOLS)}, not {context.image_protocol!r}", 2)
    require_terminal()
    from inpaint_tui.tui import run_tui

    with user_errors():
        code = run_tui(context.db, context.data_dir, image_protocol=context.image_protocol, start_screen=start_screen,
                       judging=judging)
    raise typer.Exit(code)


def require_terminal() -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        fail("the TUI needs a terminal (run `inpaint-tui` in one, e.g. over SSH or in tmux); "
             "for scripts use the commands: inpaint-tui --help", 2)


def print_json(data: Any) -> None:
    """`--json` output. A list or a generator (runs, a leaderboard) is written as a JSON
    array, one element per line, each by the C encoder as it goes (a generator's elements are
    never all in memory): the indenting encoder is pure Python, and 50 000 runs through it took
    seconds and the whole text in memory. Anything else is indented."""
    import types

    from inpaint_tui.store import jsonable

    write = sys.stdout.write
    if isinstance(data, (list, types.GeneratorType)):
        separator = "[\n"
        for item in data:
            write(separator + json.dumps(jsonable(item)))
            separator = ",\n"
        write("[]\n" if separator == "[\n" else "\n]\n")
        return
    write(json.dumps(jsonable(data), indent=2) + "\n")


def rich_console():
    from rich.console import Console

    # Piped output (scripts, `| less -S`) should not wrap tables into 80 columns, unless
    # COLUMNS asks for a width (`COLUMNS=80 inpaint-tui ... > file`).
    console = Console()
    if console.is_terminal:
        return console
    columns = os.environ.get("COLUMNS", "")
    return Console(width=int(columns) if columns.isdigit() and int(columns) > 0 else 200)


def recorded_command() -> str:
    """This command line as a run or sweep records it, passwords in URLs hidden (a run's
    command is stored, exported and shown in reports)."""
    import shlex

    from inpaint_tui.store.db import hide_passwords

    return hide_passwords(shlex.join(["inpaint-tui", *sys.argv[1:]]))


def fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _loaded(module: str, name: str) -> type:
    """An exception class of `module` if that module is loaded, else a class nothing raises:
    an error of a module never imported cannot occur, and importing it only to name its
    errors would cost every command its start-up (engine.samples pulls in numpy and PIL)."""
    loaded = sys.modules.get(module)
    return getattr(loaded, name) if loaded is not None else _NeverRaised


class _NeverRaised(Exception):
    pass


@contextmanager
def user_errors() -> Iterator[None]:
    """Known failures become one readable line on stderr and a non-zero exit: 2 for a bad
    argument (technique, parameter, model, value, a --db that names no kind of database), 1 for
    a store or data problem (a database or data folder that cannot be used, a hub model that is
    not downloaded)."""
    try:
        yield
    except Exception as error:
        if isinstance(error, _loaded("engine.models", "ModelNotDownloaded")):  # the argument was fine
            fail(str(error), 1)
        bad_argument = (_loaded("engine.params", "ParamError"), _loaded("engine.models", "ModelUnavailable"),
                        _loaded("inpaint_tui.store.db", "DatabaseArgumentError"))
        bad_data = (_loaded("inpaint_tui.store.db", "StoreError"), _loaded("engine.samples", "SampleError"))
        if isinstance(error, bad_argument):
            fail(str(error), 2)
        if isinstance(error, bad_data):
            fail(str(error), 1)
        if isinstance(error, _loaded("sqlalchemy.exc", "SQLAlchemyError")):
            # The store names what it recognises; anything else still gets one line.
            fail(f"database: {str(getattr(error, 'orig', None) or error).splitlines()[0]}", 1)
        if not isinstance(error, OSError):
            raise
        # A data-folder write that failed after the folder was checked (e.g. disk full).
        fail(f"cannot write {error.filename or 'a file'}: {error.strerror or error}", 1)


DEFAULT_METRICS = ",".join(DEFAULT_GROUPS)
METRICS_HELP = f"Metric groups computed for the run: {', '.join(GROUPS)} (comma-separated)."

EVAL_MODELS_HELP = (
    "Models the metrics use: real (CLIP ViT-B/16, Inception, OWLv2 from the hub or cache), tiny (random, "
    "offline: exercises the path, numbers meaningless), auto (tiny with --model tiny, else real)."
)

GUIDANCE_HELP = (f"Guidance scale (default {DEFAULTS.guidance:g}, classifier-free, <=1 disables it; FLUX: distilled, "
                 f"default {DEFAULTS.flux_fill_guidance:g} for vanilla's Fill model, {DEFAULTS.flux_guidance:g} "
                 "otherwise).")

PREVIEW_HELP = "Every K denoising steps, decode the predicted clean image to runs/ID/preview.png (0: off)."

BATCH_HELP = ("Samples sharing each model call: a number, or auto (GPU: from the memory the first sample "
              f"used; CPU: {CPU_AUTO_BATCH}). Pixels equal batch 1's up to the kernels' rounding (at most 1 of 255 levels "
              "measured on tiny); runs saving animations go one by one. Default 1.")

COMPILE_HELP = ("torch.compile each UNet (inductor; one graph per input shape, compiled on first use: "
                "minutes per shape on a CPU, worth it for long GPU runs). Pixels equal up to rounding.")
CHANNELS_LAST_HELP = "UNets and VAE in channels-last memory layout (default: on CUDA only)."
VAE_TILING_HELP = ("VAE in overlapping tiles of half the model's resolution: bounded memory for large images, "
                   "faint seams.")

ANIMATION_HELP = "Save each sample's denoising as an animation beside its output: gif or webp."
