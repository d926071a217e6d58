"""`inpaint-tui judge`: blind pairwise judging of runs' outputs by people (a TUI session) or by
simulated raters, and what the judgements say (`judge results`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from inpaint_tui.cli.base import (
    JSON_HELP,
    app,
    context_of,
    fail,
    open_tui,
    print_json,
    recorded_command,
    require_terminal,
    rich_console,
    user_errors,
)

judge_app = typer.Typer(help="Blind pairwise judging of runs by people. `judge --runs 3,5,7` opens a session: two outputs "
                             "of one sample side by side, keys left/1, right/2, t tie, s skip, u undo, escape to leave "
                             "(resume any time). The scores (Bradley–Terry, with intervals) become the runs' human "
                             "metric.", invoke_without_command=True)
app.add_typer(judge_app, name="judge")

RUNS_HELP = "The runs to compare, comma-separated ids (e.g. 3,5,7): every pair on every sample they all finished."


def parse_run_ids(text: str, option: str = "--runs") -> list[int]:
    from inpaint_tui.jobs.judging import JudgingError

    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return [int(part) for part in parts]
    except ValueError:
        raise JudgingError(f"{option}: run ids are whole numbers separated by commas, not {text!r}") from None


@judge_app.callback()
def judge(
    ctx: typer.Context,
    runs: Optional[str] = typer.Option(None, "--runs", metavar="IDS", help=RUNS_HELP),
    rater: str = typer.Option(None, "--rater", metavar="NAME", help="Who is judging (default: your user name); "
                              "stored with every judgement."),
    raters: int = typer.Option(1, "--raters", metavar="N", help="A new study: judgements each trial is to get "
                               "from different raters (2 or more measure agreement). With --simulate: the "
                               "number of simulated raters."),
    question: Optional[str] = typer.Option(None, "--question", help="The question raters answer (default: which "
                                           "output fills the masked region more naturally)."),
    seed: int = typer.Option(0, "--seed", help="A new study: the seed drawing sides and order."),
    new: bool = typer.Option(False, "--new", help="Start another study even if one over these runs and question exists."),
    simulate: Optional[str] = typer.Option(None, "--simulate", metavar="METRIC", help="Simulated raters instead of "
                                           "people: each prefers the better value of this per-sample metric, with "
                                           "noise (for demos and checks against a known truth)."),
    noise: float = typer.Option(0.5, "--noise", help="--simulate: the raters' noise, in standard deviations of "
                                "the metric over the study's outputs."),
    tie_margin: float = typer.Option(0.0, "--tie-margin", help="--simulate: a tie when the two sides seem this "
                                     "close (standard deviations of the metric)."),
) -> None:
    """Without a command: a judging session over --runs (the group's help says how), or simulated raters."""
    if ctx.invoked_subcommand is not None:
        return
    if runs is None:
        fail("--runs: name the runs to compare, e.g. inpaint-tui judge --runs 3,5,7 (inpaint-tui judge list "
             "shows the studies)", 2)
    context = context_of(ctx)
    with user_errors():
        from inpaint_tui.jobs.judging import (
            check_rater,
            check_simulation,
            default_rater,
            open_study,
            refresh_human_scores,
            simulate_raters,
        )

        run_ids = parse_run_ids(runs)
        # Everything that can be refused is, before a study is made.
        if simulate is not None:
            check_simulation(simulate, raters=raters, noise=noise, tie_margin=tie_margin)
        else:
            rater = check_rater(rater if rater is not None else default_rater())
            require_terminal()
        store = context.store()
        study, created = open_study(store, run_ids, question=question, raters_per_trial=1 if simulate else raters,
                                    seed=seed, command=recorded_command(), new=new)
        console = rich_console()
        verb = "new" if created else "resuming"
        if simulate is not None:
            answers = simulate_raters(store, study.id, metric=simulate, raters=raters, noise=noise,
                                      tie_margin=tie_margin, seed=seed)
            ranked = refresh_human_scores(store, study.id)
            console.print(f"study {study.id} ({verb}): {answers} answers from {raters} simulated rater(s) "
                          f"preferring the better {simulate}")
            _print_results(console, store, study.id, ranked)
            return
    console.print(f"study {study.id} ({verb}): {study.trials} trials over runs {', '.join(map(str, study.run_ids))}; "
                  f"judging as {rater}")
    try:
        open_tui(context, judging=(study.id, rater))
    finally:  # however the session ended, the runs' human scores follow its answers
        with user_errors():
            refresh_human_scores(store, study.id)
            study = store.study(study.id)
        console.print(f"study {study.id}: {study.judgements} of {study.needed} judgements, {study.skips} skipped; "
                      f"results: inpaint-tui judge results {study.id}")


@judge_app.command("list")
def list_studies(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Studies, with their runs and how far the judging is."""
    with user_errors():
        studies = context_of(ctx).store().studies()
    if as_json:
        print_json([s.to_dict() for s in studies])
        return
    from inpaint_tui.cli.tables import Column, print_table

    if not studies:
        rich_console().print("no judging study yet: inpaint-tui judge --runs 3,5,7")
        return
    columns = [
        Column("id", "study", [str(s.id) for s in studies], justify="right"),
        Column("runs", "runs", [",".join(map(str, s.run_ids)) for s in studies]),
        Column("trials", "trials", [f"{s.trials}×{s.raters_per_trial}" if s.raters_per_trial > 1 else str(s.trials)
                                    for s in studies], justify="right"),
        Column("judgements", "judgements", [str(s.judgements) for s in studies], justify="right"),
        Column("skips", "skips", [str(s.skips) for s in studies], justify="right"),
        Column("raters", "raters", [", ".join(s.raters + s.simulated_raters) or "-" for s in studies], wrap=True),
        Column("question", "question", [s.question for s in studies], wrap=True),
    ]
    print_table(rich_console(), columns, title="judging studies")


@judge_app.command("results")
def results(
    ctx: typer.Context,
    study_id: int = typer.Argument(..., metavar="STUDY", help="Study id (inpaint-tui judge list)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Ranking with intervals, win rates, position bias, rater and metric agreement; refreshes `human`."""
    with user_errors():
        from inpaint_tui.jobs.judging import refresh_human_scores
        from inpaint_tui.read.judging import analyse_study

        store = context_of(ctx).store()
        ranked = refresh_human_scores(store, study_id)
        if as_json:
            print_json(analyse_study(store, study_id, ranked=ranked).to_dict())
            return
        _print_results(rich_console(), store, study_id, ranked)


@judge_app.command("export")
def export(
    ctx: typer.Context,
    study_id: int = typer.Argument(..., metavar="STUDY", help="Study id (inpaint-tui judge list)."),
    out: Path = typer.Option(..., "--out", "-o", help="File: csv, jsonl or parquet by its extension."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="csv, jsonl or parquet."),
) -> None:
    """Every answer, one row each: rater, sample, runs left and right, answer, times (the study's raw data)."""
    from inpaint_tui.read.export import ExportError, format_for, write_rows
    from inpaint_tui.read.judging import judgement_rows

    try:
        format_for(out, fmt)
    except ExportError as error:
        fail(str(error), 2)
    with user_errors():
        rows = judgement_rows(context_of(ctx).store(), study_id)
        if not rows:
            fail(f"study {study_id} has no answer yet: nothing to export", 1)
        written = write_rows(rows, out, fmt)
    typer.echo(f"wrote {written} ({len(rows)} answers)")


@judge_app.command("delete")
def delete(
    ctx: typer.Context,
    study_id: int = typer.Argument(..., metavar="STUDY", help="Study id (inpaint-tui judge list)."),
    yes: bool = typer.Option(False, "--yes", help="Delete without asking."),
) -> None:
    """Delete a study with its judgements (people's work: asks first)."""
    with user_errors():
        store = context_of(ctx).store()
        study = store.study(study_id)
        if not yes:
            if not typer.confirm(f"delete study {study_id} and its {study.judgements + study.skips} answers?"):
                raise typer.Exit(1)
        from inpaint_tui.jobs.judging import delete_study

        deleted = delete_study(store, study_id)
    rich_console().print(f"deleted study {study_id} with its {deleted} answers and the human scores it gave")


def _print_results(console, store, study_id: int, ranked) -> None:
    """`ranked`: the fit refresh_human_scores just made (the analysis would repeat its bootstrap)."""
    from inpaint_tui.read.judging import analyse_study, format_analysis

    for line in format_analysis(analyse_study(store, study_id, ranked=ranked)):
        console.print(line)
