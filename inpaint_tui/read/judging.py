"""What a judging study says (read side, torch-free): the Bradley–Terry ranking of its runs
with bootstrap intervals over samples, the win matrix, the position-bias check, agreement
between raters and, for each automatic per-sample metric, how often it prefers what people
preferred. Built once from the store (`analyse_study`); the CLI, the report and the TUI
format the same object."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from engine.metrics.catalogue import HUMAN_METRIC, METRICS, SAMPLE, higher_is_better
from engine.metrics.preference import (
    MetricAgreement,
    PositionBias,
    RankedStrengths,
    RaterAgreement,
    bootstrap_strengths,
    metric_agreement,
    position_bias,
    rater_agreement,
    win_matrix,
)
from engine.spec import changed_params
from inpaint_tui.read.present import format_p_value, format_params, plural
from inpaint_tui.store import RunInfo, StudyInfo, human_score_study

# Per-sample metrics that describe the cost of making an image, not the image: never compared with people.
NOT_ABOUT_THE_IMAGE = frozenset({"cost"})


@dataclass(frozen=True)
class StudyAnalysis:
    study: StudyInfo
    runs: list[RunInfo]  # in the study's order, as the fit's players
    judgements: int
    samples: int  # samples with at least one judgement (the bootstrap's units)
    raters: list[str]
    simulated: bool  # the judgements counted are simulated raters' (a study with people's counts theirs only)
    ranked: RankedStrengths | None  # None before any judgement
    wins: np.ndarray  # wins[i, j]: share of i-vs-j judgements i won, ties half (NaN: never compared)
    position: PositionBias
    raters_agreement: RaterAgreement
    metric_agreements: list[MetricAgreement]
    median_seconds: float | None

    def describe(self, run_id: int) -> str:
        run = next(r for r in self.runs if r.id == run_id)
        changed = changed_params(run.technique, run.params)
        return f"{run.technique} {format_params(changed)}" if changed else run.technique

    def ranking(self) -> list[dict]:
        """The runs strongest first: θ with its interval, the rank's interval, and the
        probability of beating the study's average run (θ = 0)."""
        if self.ranked is None:
            return []
        fit = self.ranked.fit
        rows = []
        for index, run_id in enumerate(fit.players):
            theta = float(fit.theta[index])
            rows.append({
                "run_id": run_id, "technique": self.describe(run_id), "theta": theta,
                "ci_low": float(self.ranked.low[index]), "ci_high": float(self.ranked.high[index]),
                "rank_low": int(round(self.ranked.rank_low[index])), "rank_high": int(round(self.ranked.rank_high[index])),
                "win_vs_average": float(1 / (1 + np.exp(-theta))),
            })
        rows.sort(key=lambda row: (-row["theta"], row["run_id"]))
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
        return rows

    # The tables as text, one form for the terminal and the report: (header, rows).
    RANKING_HEADER = ("#", "run", "technique", "θ", "95% interval", "rank", "P(beats avg)")
    AGREEMENT_HEADER = ("metric", "agrees", "share", "95% interval")

    def ranking_cells(self) -> tuple[tuple[str, ...], list[list[str]]]:
        rows = []
        for row in self.ranking():
            ranks = (str(row["rank_low"]) if row["rank_low"] == row["rank_high"]
                     else f"{row['rank_low']}–{row['rank_high']}")
            rows.append([str(row["rank"]), str(row["run_id"]), row["technique"], f"{row['theta']:+.2f}",
                         f"[{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]", ranks, f"{row['win_vs_average']:.0%}"])
        return self.RANKING_HEADER, rows

    def win_cells(self) -> tuple[tuple[str, ...], list[list[str]]]:
        ids = [run.id for run in self.runs]
        rows = [[str(a)] + ["·" if i == j else "-" if np.isnan(self.wins[i, j]) else f"{self.wins[i, j]:.0%}"
                            for j in range(len(ids))] for i, a in enumerate(ids)]
        return ("run", *map(str, ids)), rows

    def agreement_cells(self) -> tuple[tuple[str, ...], list[list[str]]]:
        rows = [[m.metric, f"{m.agreeing}/{m.units}", "-" if not m.units else f"{m.share:.0%}",
                 "-" if not m.units else f"[{m.low:.0%}–{m.high:.0%}]"] for m in self.metric_agreements]
        return self.AGREEMENT_HEADER, rows

    @property
    def method(self) -> str:
        if self.ranked is None:
            return "no judgement yet: nothing to rank"
        return (f"Bradley–Terry strengths θ (log-odds, Σθ = 0; Davidson ties, ν = {self.ranked.fit.tie_nu:.2f}) "
                f"with 95% intervals from {self.ranked.resamples} bootstrap resamples of samples")

    @property
    def raters_word(self) -> str:
        return "the simulated raters" if self.simulated else "people"

    def to_dict(self) -> dict:
        """For --json: every figure, the win matrix keyed by run ids."""
        ids = [r.id for r in self.runs]
        return {
            "study": self.study.to_dict(), "judgements": self.judgements, "samples": self.samples,
            "raters": self.raters, "simulated": self.simulated,
            "tie_model": "davidson", "tie_nu": None if self.ranked is None else float(self.ranked.fit.tie_nu),
            "resamples": None if self.ranked is None else self.ranked.resamples,
            "ranking": self.ranking(),
            "win_matrix": {str(a): {str(b): _number(self.wins[i, j]) for j, b in enumerate(ids) if i != j}
                           for i, a in enumerate(ids)},
            "position_bias": {"left_wins": self.position.left_wins, "decisive": self.position.decisive,
                              "share": _number(self.position.share), "ci_low": _number(self.position.low),
                              "ci_high": _number(self.position.high), "p_value": self.position.p_value},
            "rater_agreement": {"units": self.raters_agreement.units,
                                "krippendorff_alpha": _number(self.raters_agreement.krippendorff_alpha),
                                "fleiss_kappa": None if self.raters_agreement.fleiss_kappa is None
                                else _number(self.raters_agreement.fleiss_kappa)},
            "metric_agreement": [{"metric": m.metric, "agreeing": m.agreeing, "units": m.units,
                                  "share": _number(m.share), "ci_low": _number(m.low), "ci_high": _number(m.high)}
                                 for m in self.metric_agreements],
            "median_seconds": self.median_seconds,
        }


def _number(value: float) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def analyse_study(store, study_id: int, *, ranked: RankedStrengths | None = None) -> StudyAnalysis:
    """The study's analysis from the judgements it counts (store.counted_judgements). The
    bootstrap takes the study's seed, so the intervals equal those stored as `human`;
    `ranked` is that fit when the caller has just made it (jobs.judging.refresh_human_scores)."""
    study = store.study(study_id)
    judgements = store.counted_judgements(study_id)
    runs = {run.id: run for run in store.runs(study.run_ids)}
    if ranked is None and judgements:
        ranked = bootstrap_strengths(judgements, study.run_ids, seed=study.seed)
    per_sample = {run_id: store.sample_metric_values(run_id) for run_id in study.run_ids}
    shared = set.intersection(*(set(values) for values in per_sample.values())) if per_sample else set()
    names = [name for name in METRICS if name in shared and METRICS[name].level == SAMPLE
             and METRICS[name].group not in NOT_ABOUT_THE_IMAGE]
    agreements = [
        metric_agreement(judgements, name, lambda run, sample, name=name: per_sample[run][name].get(sample),
                         higher_is_better(name))
        for name in names
    ]
    seconds = [j.seconds for j in judgements if not j.simulated]
    return StudyAnalysis(
        study=study, runs=[runs[i] for i in study.run_ids], judgements=len(judgements),
        samples=len({j.sample for j in judgements}), raters=sorted({j.rater for j in judgements}),
        simulated=bool(judgements) and all(j.simulated for j in judgements), ranked=ranked,
        wins=win_matrix(judgements, study.run_ids), position=position_bias(judgements),
        raters_agreement=rater_agreement(judgements), metric_agreements=agreements,
        median_seconds=statistics.median(seconds) if seconds else None,
    )


def summary_line(analysis: StudyAnalysis) -> str:
    study = analysis.study
    who = plural(len(analysis.raters), "simulated rater" if analysis.simulated else "rater")
    return (f"study {study.id}: \"{study.question}\" · runs {', '.join(map(str, study.run_ids))} · "
            f"{plural(analysis.judgements, 'judgement')} of {plural(study.trials, 'trial')} "
            f"({plural(analysis.samples, 'sample')}) by {who}" + (f" · {study.skips} skipped" if study.skips else ""))


WINS_TITLE = "Win rate of the row's run against the column's (ties count half)"
AGREEMENT_TITLE = "Metrics against {who}: how often each prefers the side chosen, over pairs with a majority (95% Wilson)"


def format_analysis(analysis: StudyAnalysis) -> list:
    """Rich renderables, in order: a summary line, the ranking, the win matrix and the checks
    (headings as lines of their own: a table's title would wrap to the table's width)."""
    from rich.table import Table
    from rich.text import Text

    def table(header, rows, left=("technique", "metric")) -> Table:
        made = Table()
        for name in header:
            made.add_column(name, justify="left" if name in left else "right", overflow="fold")
        for row in rows:
            made.add_row(*row)
        return made

    lines: list = [summary_line(analysis), Text(analysis.method, style="bold")]
    if analysis.ranked is None:
        return lines
    lines += [table(*analysis.ranking_cells()), Text(WINS_TITLE, style="bold"), table(*analysis.win_cells())]
    lines += check_lines(analysis)
    if analysis.metric_agreements:
        lines += [Text(AGREEMENT_TITLE.format(who=analysis.raters_word), style="bold"),
                  table(*analysis.agreement_cells())]
    return lines


def check_lines(analysis: StudyAnalysis) -> list[str]:
    """Position bias, agreement between raters and time per judgement, a line each."""
    position = analysis.position
    lines = []
    if position.decisive:
        verdict = "no sign of position bias" if position.p_value >= 0.05 else "raters favour one side"
        lines.append(f"Position: the left side won {position.left_wins} of {position.decisive} decisive judgements "
                     f"({position.share:.0%} [{position.low:.0%}–{position.high:.0%}]), binomial p = "
                     f"{format_p_value(position.p_value)}: {verdict}")
    agreement = analysis.raters_agreement
    if agreement.units:
        kappa = "" if agreement.fleiss_kappa is None else f", Fleiss' κ = {agreement.fleiss_kappa:.3f}"
        lines.append(f"Raters: Krippendorff's α = {agreement.krippendorff_alpha:.3f}{kappa} on "
                     f"{plural(agreement.units, 'pair')} judged by several raters")
    else:
        lines.append("Raters: no pair judged by two raters yet (agreement needs --raters 2 or more)")
    if analysis.median_seconds is not None:
        lines.append(f"Time: {analysis.median_seconds:.1f} s per judgement (median)")
    return lines


def score_studies(summaries: dict[int, dict]) -> dict[int, int]:
    """Per run with a human score among `summaries` ({run id: {metric: MetricSummary}}), the
    study it comes from. Scores of different studies are not comparable: where this names
    more than one study, tables say which value comes from which."""
    found = {}
    for run_id, by_name in summaries.items():
        study = human_score_study(getattr(by_name.get(HUMAN_METRIC), "note", None))
        if study is not None:
            found[run_id] = study
    return found


def mixed_studies_line(summaries: dict[int, dict]) -> str | None:
    """A line saying which runs' human scores come from which study, when a table mixes
    studies; None when it does not."""
    sources = score_studies(summaries)
    if len(set(sources.values())) < 2:
        return None
    by_study: dict[int, list[int]] = {}
    for run_id, study in sorted(sources.items()):
        by_study.setdefault(study, []).append(run_id)
    parts = "; ".join(f"{'run' if len(runs) == 1 else 'runs'} {', '.join(map(str, runs))} from study {study}"
                      for study, runs in sorted(by_study.items()))
    return f"human scores are comparable within one study only: {parts}"


def judgement_rows(store, study_id: int) -> list[dict]:
    """Every answer of the study, skips included, one row each, for `judge export`: the raw
    data of a user study (who, what was shown where, the answer, when, how long)."""
    study = store.study(study_id)
    positions = {t.id: t.position for t in store.trials(study_id)}
    names = {s.id: s.name for s in store.samples()}
    return [{
        "study_id": study.id, "question": study.question, "judgement_id": j.id, "trial": positions[j.trial_id],
        "sample_id": j.sample, "sample_name": names.get(j.sample), "left_run_id": j.left, "right_run_id": j.right,
        "outcome": j.outcome, "winner_run_id": j.winner, "rater": j.rater, "simulated": j.simulated,
        "shown_at": j.shown_at.isoformat(), "answered_at": j.answered_at.isoformat(), "seconds": j.seconds,
    } for j in store.judgements(study_id)]
