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
    from rich.table import Table

    from engine.options import POSTPROCESS_SCHEMA

    console = rich_console()

    def schema_table(title: str, params, caption: str = "") -> Table:
        table = Table("parameter", "type", "default", "range", "help", title=title, title_justify="left",
                      caption=caption, caption_justify="left")
        for param in params:
            table.add_row(param.name, param.kind, str(param.default), param.describe_range(), param.help)
        if not params:
            table.add_row("-", "", "", "", "no parameters")
        return table

    for spec in specs:
        console.print(schema_table(f"[bold]{spec.name}[/] — {spec.summary}", spec.schema.params, spec.reference))
    console.print(schema_table("[bold]options for every technique[/] (-p key=value)", POSTPROCESS_SCHEMA.params))


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List model presets and whether each can be loaded without network."""
    from engine.models import PRESETS, preset_status

    statuses = [preset_status(preset) for preset in PRESETS.values()]
    if as_json:
        print_json(statuses)
        return
    from rich.table import Table

    table = Table("preset", "resolution", "inpaint UNet", "text-to-image UNet", "offline", "description")
    for status in statuses:
        table.add_row(
            status["name"], str(status["resolution"]),
            f"{status['inpaint'] or '-'} ({status['parts']['inpaint']})",
            f"{status['txt2img'] or '-'} ({status['parts']['txt2img']})",
            "yes" if status["available_offline"] else "no", status["description"],
        )
    rich_console().print(table)
