"""`inpaint-tui samples ...`: import and list samples and sample sets."""

from __future__ import annotations

from typing import Optional

import typer

from inpaint_tui.cli.base import JSON_HELP, context_of, fail, print_json, rich_console, samples_app, user_errors
from inpaint_tui.read.present import plural, printable


@samples_app.command("import")
def samples_import(
    ctx: typer.Context,
    source: str = typer.Argument(
        ..., metavar="SOURCE", help="demo (bundled photos), hf:paint-by-inpaint/PIPE, hf:OWNER/NAME (with --*-column), or a folder."
    ),
    set_name: Optional[str] = typer.Option(None, "--set", help="Sample set to add to (default: named after the source)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be imported and what cannot; change nothing."),
    invert_masks: bool = typer.Option(False, "--invert-masks", help="Flip every mask (for sources where white = keep)."),
    split: str = typer.Option("test", "--split", help="Dataset split (hf: sources)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most this many rows (hf: sources)."),
    prompt_column: Optional[str] = typer.Option(None, "--prompt-column", help="Prompt column (PIPE: Instruction_Class)."),
    prompt_template: Optional[str] = typer.Option(
        None, "--prompt-template", help="Format string for the prompt, e.g. 'a photo of {prompt}' (any column by name)."
    ),
    image_column: Optional[str] = typer.Option(None, "--image-column", help="Image column (hf:OWNER/NAME)."),
    mask_column: Optional[str] = typer.Option(None, "--mask-column", help="Mask column (hf:OWNER/NAME)."),
    reference_column: Optional[str] = typer.Option(None, "--reference-column", help="Reference column (optional)."),
    resize_mismatched: bool = typer.Option(
        False, "--resize-mismatched", help="Resize masks/references whose size differs from the image (default: skip)."
    ),
    follow_links: bool = typer.Option(
        False, "--follow-links", help="Read files behind symbolic links that point outside the imported folder."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Import samples into the store: idempotent (content-addressed) and all-or-nothing."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from inpaint_tui.jobs.samples import ImportOptions, import_source

    options = ImportOptions(
        set_name=set_name, split=split, limit=limit, prompt_column=prompt_column, prompt_template=prompt_template,
        image_column=image_column, mask_column=mask_column, reference_column=reference_column,
        invert_masks=invert_masks, resize_mismatched=resize_mismatched, follow_links=follow_links,
    )
    from rich.console import Console

    err = Console(stderr=True)
    with user_errors(), Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task(f"reading {source}", total=None)

        def step(done: int, total: int | None) -> None:
            progress.update(task, description="storing images", completed=done, total=total)

        store = context_of(ctx).store()
        outcome = import_source(store, source, options, dry_run=dry_run, on_progress=step)
    report = outcome.report
    if as_json:
        print_json({
            "source": outcome.source, "set": outcome.set_name, "dry_run": dry_run,
            "importable": [planned.name for planned in outcome.importable],
            "problems": [{"name": name, "reason": reason} for name, reason in outcome.problems],
            "notes": outcome.notes,
            "merged": [{"name": name, "same_as": kept} for name, kept in outcome.merged],
            "already_present": sorted(outcome.present),
            "report": None if report is None else report.to_dict(),
        })
    else:
        for note in outcome.notes:
            err.print(f"[yellow]note:[/] {note}", highlight=False)
        for name, reason in outcome.problems:
            err.print(f"[red]cannot import[/] {name}: {reason}", highlight=False)
        if dry_run:
            typer.echo(f"dry run: {plural(len(outcome.importable), 'sample')} importable into set "
                       f"{outcome.set_name!r}: {outcome.new_count} new, {len(outcome.present)} already present"
                       + (f", {len(outcome.merged)} merged" if outcome.merged else "")
                       + f"; {plural(len(outcome.problems), 'problem')}")
            for planned in outcome.importable:
                typer.echo(f"  {planned.name}  {planned.size[0]}x{planned.size[1]}  {printable(planned.prompt)}")
        elif report is not None:
            typer.echo(
                f"set {report.set_name!r}: {report.added} new, {report.already_present} already present, "
                f"{report.total_in_set} in the set" + (f", {len(outcome.merged)} merged" if outcome.merged else "")
                + (f"; {len(outcome.problems)} skipped" if outcome.problems else "")
            )
    if not outcome.importable:
        fail(f"{outcome.source}: nothing importable ({len(outcome.problems)} problem(s))", 1)


@samples_app.command("list")
def samples_list(
    ctx: typer.Context,
    set_name: Optional[str] = typer.Option(None, "--set", help="Only this sample set, in set order."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List samples."""
    with user_errors():
        infos = context_of(ctx).store().samples(set_name)
    if as_json:
        print_json([info.to_dict() for info in infos])
        return
    from rich.text import Text

    from inpaint_tui.cli.tables import Column, from_rows, print_table

    console = rich_console()
    columns = [Column("id", "id", [], justify="right"), Column("name", "name", []),
               Column("size", "size", [], justify="right"), Column("prompt", "prompt", [], wrap=True),
               Column("ref", "ref", [], priority=1), Column("source", "source", [], wrap=True, fold=True, priority=2)]
    rows = [[info.id, printable(info.name), f"{info.width}x{info.height}", printable(info.prompt),
             "yes" if info.reference_path else "no", info.source] for info in infos]
    fitted = print_table(console, from_rows(columns, rows), boxed=True, say_dropped=False,
                         title=f"samples{f' in {set_name}' if set_name else ''}")
    if fitted.dropped:
        console.print(Text(f"not shown at this width: {', '.join(fitted.dropped_headers)} "
                           "(--json, or `samples show ID`)"))


@samples_app.command("show")
def samples_show(
    ctx: typer.Context,
    sample_id: int = typer.Argument(..., metavar="SAMPLE_ID", help="Sample id (see `samples list`)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show one sample: files, size, prompt, sets and metadata."""
    with user_errors():
        store = context_of(ctx).store()
        info = store.sample(sample_id)
        sets = store.sample_set_names(sample_id)
    if as_json:
        print_json({**info.to_dict(), "sets": sets})
        return
    from rich.text import Text

    console = rich_console()
    # Prompts and names are shown through printable() and as plain Text: stored as imported,
    # but an ANSI escape or rich markup in them must not reach or restyle the terminal.
    console.print(Text.assemble((f"sample {info.id}", "bold"), " ", printable(info.name)))
    for label, value in (("prompt", info.prompt), ("size", f"{info.width}x{info.height}"), ("source", info.source),
                         ("sets", ", ".join(sets) or "-"), ("image", info.image_path), ("mask", info.mask_path),
                         ("reference", info.reference_path or "-"), ("key", info.key)):
        console.print(Text(f"  {label:>10}: {printable(str(value))}"))
    for key, value in sorted(info.meta.items()):
        console.print(Text(f"  {key:>10}: {printable(str(value))}"))


@samples_app.command("sets")
def samples_sets(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List sample sets."""
    with user_errors():
        sets = context_of(ctx).store().sample_sets()
    if as_json:
        print_json([s.to_dict() for s in sets])
        return
    from rich.table import Table

    table = Table("set", "samples", "created")
    for s in sets:
        table.add_row(s.name, str(s.sample_count), s.created_at.strftime("%Y-%m-%d %H:%M"))
    rich_console().print(table)
