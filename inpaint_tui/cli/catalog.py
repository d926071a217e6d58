"""`inpaint-tui techniques` and `inpaint-tui models`: what can be run."""

from __future__ import annotations

import typer

from inpaint_tui.cli.base import JSON_HELP, app, print_json, rich_console


@app.command()
def techniques(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List techniques with their parameters, defaults, ranges and help."""
    from engine.techniques import get_technique, technique_names

    specs = [get_technique(name) for name in technique_names()]
    if as_json:
        print_json([spec.to_dict() for spec in specs])
        return
    from rich.text import Text

    from engine.options import POSTPROCESS_SCHEMA
    from inpaint_tui.cli.tables import Column, from_rows, print_table

    console = rich_console()

    def schema_table(title: Text, params, caption: str = "") -> None:
        columns = [Column("parameter", "parameter", []), Column("type", "type", []), Column("default", "default", []),
                   Column("range", "range", [], wrap=True), Column("help", "help", [], wrap=True, ratio=3)]
        # Choices as `a | b | c`, so that a long list wraps between names, not inside one.
        rows = [[param.name, param.kind, param.default, param.describe_range().replace("|", " | "), param.help]
                for param in params] or [["-", "", "", "", "no parameters"]]
        print_table(console, from_rows(columns, rows), boxed=True, title=title, caption=caption or None)

    for spec in specs:
        families = f"model families: {', '.join(spec.families)}"
        schema_table(Text.from_markup(f"[bold]{spec.name}[/] — ") + Text(spec.summary), spec.schema.params,
                     f"{families} · {spec.reference}" if spec.reference else families)
    schema_table(Text.from_markup("[bold]options for every technique[/] (-p key=value)"), POSTPROCESS_SCHEMA.params)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List model presets and whether each can be loaded without network."""
    from engine.models import PRESETS, preset_status
    from engine.techniques import technique_names

    every = technique_names()
    statuses = [dict(preset_status(preset), techniques=technique_names(preset.family)) for preset in PRESETS.values()]
    if as_json:
        print_json(statuses)
        return
    from rich.text import Text

    from inpaint_tui.cli.tables import Column, from_rows, print_table

    console = rich_console()
    # Hub ids are one long word each: they fold rather than widen the table (the description
    # folds too, rather than being dropped for them).
    columns = [Column("preset", "preset", []), Column("family", "family", []),
               Column("size", "size", [], justify="right"), Column("offline", "offline", []),
               Column("weights", "fp16", [], justify="right"),
               Column("techniques", "techniques", [], wrap=True, priority=2),
               Column("inpaint", "inpaint model", [], wrap=True, fold=True),
               Column("txt2img", "text-to-image model", [], wrap=True, fold=True),
               Column("description", "description", [], wrap=True, fold=True, priority=1, ratio=2)]
    rows = [[status["name"], status["family"], status["resolution"], "yes" if status["available_offline"] else "no",
             _gigabytes(status["weights_fp16_bytes"]),
             "all" if status["techniques"] == every else ", ".join(status["techniques"]),
             f"{status['inpaint'] or '-'} ({status['parts']['inpaint']})",
             f"{status['txt2img'] or '-'} ({status['parts']['txt2img']})", status["description"]]
            for status in statuses]
    caption = ("size: the working resolution in pixels; fp16: the weights of both denoisers (UNets or "
               "transformers), the VAE and the "
               "text encoders in fp16 (activations come on top)")
    random = [status["name"] for status in statuses if status["random_weights"]]
    if random:  # in the caption, which no width drops (the description column may go)
        caption += f"; random weights, for speed and memory only (images are noise): {', '.join(random)}"
    fitted = print_table(console, from_rows(columns, rows), boxed=True, say_dropped=False, caption=caption)
    if fitted.dropped:
        console.print(Text(f"not shown at this width: {', '.join(fitted.dropped_headers)} (--json has it)"))


def _gigabytes(size: int | None) -> str:
    if size is None:
        return "-"
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"
