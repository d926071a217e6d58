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
    from rich.text import Text

    from engine.options import POSTPROCESS_SCHEMA
    from inpaint_tui.cli.fit import Col, fit_table

    console = rich_console()

    def schema_table(title: str, params, caption: str = "") -> Table:
        columns = [Col("parameter"), Col("type"), Col("default"), Col("range", keep=False), Col("help", keep=False, ratio=3)]
        # Choices as `a | b | c`, so that a long list wraps between names, not inside one.
        rows = [[param.name, param.kind, str(param.default), Text(param.describe_range().replace("|", " | ")),
                 Text(param.help)] for param in params] or [["-", "", "", "", "no parameters"]]
        return fit_table(columns, rows, width=console.width, title=title, title_justify="left", caption=caption,
                         caption_justify="left")[0]

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
    from rich.text import Text

    from inpaint_tui.cli.fit import Col, fit_table

    console = rich_console()
    columns = [Col("preset"), Col("size", justify="right"), Col("offline"), Col("inpaint UNet", keep=False),
               Col("text-to-image UNet", keep=False), Col("description", keep=False, drop=1, ratio=2)]
    rows = [[status["name"], str(status["resolution"]), "yes" if status["available_offline"] else "no",
             Text(f"{status['inpaint'] or '-'} ({status['parts']['inpaint']})"),
             Text(f"{status['txt2img'] or '-'} ({status['parts']['txt2img']})"), Text(status["description"])]
            for status in statuses]
    table, dropped = fit_table(columns, rows, width=console.width, caption="size: the working resolution in pixels",
                               caption_justify="left")
    console.print(table)
