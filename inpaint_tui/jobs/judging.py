"""Blind pairwise judging, the write side: a study over runs, one rater's session through its
trials (answer, skip, undo, resume at any time), simulated raters, and the human score (each
run's Bradley–Terry strength with its bootstrap interval over samples) written as the run's
`human` metric, so leaderboards, reports and exports show it like any other.

A study's trials are drawn once (engine.metrics.preference.schedule_trials: every pair of
runs on every common sample, sides balanced per pair). Each rater goes through them in an
order of their own (drawn from the study's seed and the rater's name), so raters working at
the same time rarely meet on a trial; a trial is offered until it has `raters_per_trial`
judgements from different raters. A skip is stored (the rater is not asked again) but is no
judgement. Torch-free."""

from __future__ import annotations

import math
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine.metrics.catalogue import HUMAN_METRIC, SAMPLE, higher_is_better, metric_info
from engine.metrics.preference import bootstrap_strengths, schedule_trials, simulated_answer
from engine.params import ParamError
from inpaint_tui.store import (
    JudgementOutcome,
    MetricSummary,
    SampleInfo,
    SampleStatus,
    StudyInfo,
    TrialInfo,
    human_score_note,
    human_score_study,
)
from inpaint_tui.store.tables import utcnow

DEFAULT_QUESTION = "Which output fills the masked region more naturally?"
SIMULATED_PREFIX = "sim-"


class JudgingError(ParamError):
    """A study that cannot be set up as asked (too few runs, nothing in common, ...)."""


def open_study(store, run_ids: Sequence[int], *, question: str | None = None, raters_per_trial: int = 1,
               seed: int = 0, command: str | None = None, new: bool = False) -> tuple[StudyInfo, bool]:
    """The study comparing exactly these runs on this question, resumed when it exists (unless
    `new`), else created over the samples every run finished. Returns (study, created)."""
    question = (question or DEFAULT_QUESTION).strip()
    run_ids = list(run_ids)
    repeated = [run_id for run_id, count in Counter(run_ids).items() if count > 1]
    if repeated:
        raise JudgingError(f"--runs: run {repeated[0]} is named twice")
    if seed < 0:
        raise JudgingError(f"--seed: a whole number from 0, not {seed}")
    if len(run_ids) < 2:
        raise JudgingError("--runs: a judging study compares at least two runs (e.g. --runs 3,5)")
    if raters_per_trial < 1:
        raise JudgingError(f"--raters: each trial needs at least one rater, not {raters_per_trial}")
    if not new:
        for study in reversed(store.studies(run_ids)):
            if study.question == question:
                if study.raters_per_trial != raters_per_trial:
                    raise JudgingError(
                        f"--raters: study {study.id} over these runs asks {study.raters_per_trial} rater(s) per trial; "
                        f"judge it with --raters {study.raters_per_trial}, or start another with --new")
                return study, False
    details = store.run_details(run_ids)  # NotFound names a missing run
    for detail in details:
        if not any(s.status == SampleStatus.DONE for s in detail.samples):
            raise JudgingError(f"--runs: run {detail.run.id} has no finished sample to show yet ({detail.run.status})")
    finished = [{s.sample_id for s in d.samples if s.status == SampleStatus.DONE and s.image_path is not None}
                for d in details]
    common = sorted(set.intersection(*finished))
    if not common:
        raise JudgingError(f"--runs: runs {', '.join(map(str, run_ids))} have no finished sample in common "
                           "(each pair is judged on the same sample)")
    trials = [(t.sample, t.left, t.right) for t in schedule_trials(run_ids, common, seed=seed)]
    study_id = store.create_study(question=question, run_ids=run_ids, seed=seed, raters_per_trial=raters_per_trial,
                                  command=command, trials=trials)
    return store.study(study_id), True


def default_rater() -> str:
    """The rater's name when none is given: the user name ("" when the uid has none, as in
    some containers)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def check_rater(rater: str) -> str:
    """The rater's name as stored, or JudgingError naming --rater."""
    rater = rater.strip()
    if not rater:
        raise JudgingError("--rater: a judging session needs the rater's name (--rater NAME)")
    if rater.startswith(SIMULATED_PREFIX):
        raise JudgingError(f"--rater: names starting with {SIMULATED_PREFIX!r} are kept for simulated raters")
    return rater


def rater_order(study: StudyInfo, rater: str, trials: int) -> list[int]:
    """The positions in the order this rater is shown them: a permutation drawn from the
    study's seed and the rater's name, the same in every session."""
    rng = np.random.default_rng([study.seed & 0xFFFFFFFF, study.seed >> 32, zlib.crc32(rater.encode())])
    return [int(k) for k in rng.permutation(trials)]


@dataclass(frozen=True)
class Shown:
    """What the rater is looking at: the trial (only the code knows its runs), the sample and
    the two outputs' files, and when it was shown."""

    trial: TrialInfo
    sample: SampleInfo
    left_image: Path
    right_image: Path
    shown_at: datetime


@dataclass(frozen=True)
class JudgingProgress:
    mine: int  # this rater's answers (skips included)
    left_for_me: int  # trials this rater could still be shown
    answered: int  # the study's judgements that count toward `needed` (at most raters_per_trial per trial)
    needed: int


class JudgingSession:
    """One rater working through a study. Every call reads the study's answers from the
    store, so other raters' answers (another terminal, another box) are taken into account
    and a session can be left and resumed at any point."""

    def __init__(self, store, study_id: int, rater: str, *, clock: Callable[[], datetime] = utcnow) -> None:
        rater = check_rater(rater)
        self.store = store
        self.rater = rater
        self.clock = clock
        self.study = store.study(study_id)
        self.trials = store.trials(study_id)
        self._by_position = {t.position: t for t in self.trials}
        self.order = rater_order(self.study, rater, len(self.trials))
        details = store.run_details(self.study.run_ids)
        self._outputs = {(d.run.id, s.sample_id): s.image_path for d in details for s in d.samples
                         if s.image_path is not None}
        sample_ids = {t.sample_id for t in self.trials}
        self._samples = {s.id: s for s in store.samples() if s.id in sample_ids}
        self._again: list[int] = []  # trial ids undone: shown again first
        self.current: Shown | None = None
        self.last_progress: JudgingProgress | None = None

    def _answers(self):
        """(judgements per trial id, this rater's answered trial ids, this rater's answers as
        (judgement id, trial id) in order); simulated raters never take a trial from people."""
        judged, mine = self.store.rater_state(self.study.id, self.rater)
        return defaultdict(int, judged), {trial_id for _, trial_id in mine}, mine

    def _open(self, trial: TrialInfo, judged, answered) -> bool:
        return trial.id not in answered and judged[trial.id] < self.study.raters_per_trial

    def progress(self) -> JudgingProgress:
        return self._progress(*self._answers())

    def _progress(self, judged, answered, mine) -> JudgingProgress:
        open_trials = sum(self._open(t, judged, answered) for t in self.trials)
        counted = sum(min(judged[t.id], self.study.raters_per_trial) for t in self.trials)
        return JudgingProgress(mine=len(mine), left_for_me=open_trials, answered=counted, needed=self.study.needed)

    def next(self) -> Shown | None:
        """The next trial to show this rater (None: nothing left for them); its clock starts
        now. `last_progress` is where the study stood when it was chosen (one read for both)."""
        judged, answered, mine = self._answers()
        self.last_progress = self._progress(judged, answered, mine)
        by_id = {t.id: t for t in self.trials}
        candidates = [by_id[i] for i in self._again if i in by_id]
        candidates += [self._by_position[p] for p in self.order]
        for trial in candidates:
            if self._open(trial, judged, answered):
                left = self._outputs.get((trial.left_run_id, trial.sample_id))
                right = self._outputs.get((trial.right_run_id, trial.sample_id))
                self.current = Shown(trial, self._samples[trial.sample_id], left, right, self.clock())
                return self.current
        self.current = None
        return None

    def answer(self, outcome: str) -> None:
        """Record the rater's answer to the trial shown: left, right, tie or skip."""
        if self.current is None:
            raise JudgingError("no trial is shown: call next() first")
        if outcome not in JudgementOutcome.ALL:
            raise JudgingError(f"an answer is one of {', '.join(JudgementOutcome.ALL)}, not {outcome!r}")
        shown = self.current
        self.store.record_judgements(self.study.id, [(shown.trial.id, self.rater, outcome, shown.shown_at,
                                                      self.clock(), False)])
        if shown.trial.id in self._again:
            self._again.remove(shown.trial.id)
        self.current = None

    def undo(self) -> bool:
        """Take back this rater's latest answer in the study (from this session or an earlier
        one); its trial is shown next. False when there is nothing to take back."""
        _, _, mine = self._answers()
        if not mine:
            return False
        judgement_id, trial_id = mine[-1]
        self.store.delete_judgement(judgement_id)
        self._again.insert(0, trial_id)
        self.current = None
        return True


def refresh_human_scores(store, study_id: int):
    """Fit the study's judgements and write each run's `human` metric: its Bradley–Terry
    strength θ (log-odds scale, Σθ = 0 over the study's runs), the 95% bootstrap interval over
    samples, n = judgements it appears in, and a note naming the study. Returns the fit
    (engine RankedStrengths), or None before any judgement."""
    study = store.study(study_id)
    judgements = store.counted_judgements(study_id)
    if not judgements:  # every answer taken back: no score from this study any more
        _clear_scores_of(store, study)
        return None
    ranked = bootstrap_strengths(judgements, study.run_ids, seed=study.seed)
    appearances = defaultdict(int)
    for judgement in judgements:
        appearances[judgement.left] += 1
        appearances[judgement.right] += 1
    raters = {j.rater for j in judgements}
    simulated = all(j.simulated for j in judgements)
    note = human_score_note(study_id, f"{len(judgements)} judgement{'s' if len(judgements) != 1 else ''} by "
                            f"{len(raters)} {'simulated ' if simulated else ''}rater{'s' if len(raters) != 1 else ''}")
    for index, run_id in enumerate(ranked.fit.players):
        store.record_run_metrics(run_id, {HUMAN_METRIC: MetricSummary(
            value=float(ranked.fit.theta[index]), ci_low=float(ranked.low[index]), ci_high=float(ranked.high[index]),
            n=appearances[run_id], note=note)})
    return ranked


def _clear_scores_of(store, study: StudyInfo) -> None:
    """Remove the `human` values this study gave (a run's value from another study stays)."""
    summaries = store.run_metrics(study.run_ids)[1]
    given = [run_id for run_id in study.run_ids
             if human_score_study(getattr(summaries.get(run_id, {}).get(HUMAN_METRIC), "note", None)) == study.id]
    if given:
        store.delete_run_metric(given, HUMAN_METRIC)


def delete_study(store, study_id: int) -> int:
    """Delete a study with its judgements, and the `human` values it gave; returns the
    answers deleted."""
    study = store.study(study_id)
    _clear_scores_of(store, study)
    return store.delete_study(study_id)


def check_simulation(metric: str, *, raters: int, noise: float, tie_margin: float) -> None:
    """What simulate_raters refuses, checked before anything is stored."""
    info = metric_info(metric)
    if info.level != SAMPLE:
        raise JudgingError(f"--simulate: {metric} has one value per run; simulated raters compare per-sample values")
    if raters < 1:
        raise JudgingError(f"--raters: at least one simulated rater, not {raters}")
    if noise < 0 or tie_margin < 0:
        raise JudgingError("--noise and --tie-margin are standard deviations of the metric: not negative")


def simulate_raters(store, study_id: int, *, metric: str, raters: int = 1, noise: float = 0.5,
                    tie_margin: float = 0.0, seed: int = 0) -> int:
    """Simulated raters `sim-1`, `sim-2`, ... answer every trial of the study: each prefers the
    output with the better value of the per-sample `metric` (by its direction), seen with
    Gaussian noise. `noise` and `tie_margin` are in units of the metric's standard deviation
    over the study's outputs, so one setting means the same for every metric. A trial whose
    metric is missing on either side is skipped. Returns the answers recorded."""
    check_simulation(metric, raters=raters, noise=noise, tie_margin=tie_margin)
    study = store.study(study_id)
    trials = store.trials(study_id)
    values = {run_id: store.sample_metric_values(run_id).get(metric, {}) for run_id in study.run_ids}
    shown = [v for run_values in values.values() for v in run_values.values() if math.isfinite(v)]
    if not shown:
        raise JudgingError(f"--simulate: no output of runs {', '.join(map(str, study.run_ids))} has {metric}")
    scale = float(np.std(shown)) or 1.0
    sign = 1.0 if higher_is_better(metric) else -1.0

    def utility(run_id: int, sample_id: int) -> float | None:
        value = values[run_id].get(sample_id)
        return None if value is None or not math.isfinite(value) else sign * value / scale

    now = utcnow()
    answers = []
    for k in range(1, raters + 1):
        rng = np.random.default_rng([seed, k])
        for trial in trials:
            left, right = utility(trial.left_run_id, trial.sample_id), utility(trial.right_run_id, trial.sample_id)
            outcome = (JudgementOutcome.SKIP if left is None or right is None
                       else simulated_answer(left, right, rng, noise=noise, tie_margin=tie_margin))
            answers.append((trial.id, f"{SIMULATED_PREFIX}{k}", outcome, now, now, True))
    store.record_judgements(study_id, answers)
    return len(answers)
