"""Judging studies end to end below the faces, on each backend: a study's trials, a rater's
session (answers with their times and sides, skip, undo, resume, raters sharing the work),
simulated raters, the human score written per run, and what deleting does to people's work."""

from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from engine.metrics.preference import Judgement, bootstrap_strengths, fit_bradley_terry
from engine.metrics.catalogue import HUMAN_METRIC
from inpaint_tui.jobs.judging import (
    JudgingError,
    JudgingSession,
    delete_study,
    open_study,
    refresh_human_scores,
    simulate_raters,
)
from inpaint_tui.read.judging import analyse_study
from inpaint_tui.store import NotFound, RunBusy


class Clock:
    """A clock the test moves: each call is `step` seconds after the one before."""

    def __init__(self, step: float = 2.5) -> None:
        self.now = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)
        self.step = step
        self.calls = []

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=self.step)
        self.calls.append(self.now)
        return self.now


def _shown_until_done(session, limit: int = 100):
    """Each trial the session shows, until it has none (a session that never ends fails)."""
    for _ in range(limit):
        current = session.next()
        if current is None:
            return
        yield current
    raise AssertionError(f"the session still shows trials after {limit}")


def _finished(store):
    vanilla, blended, tdpaint = store.ids["finished"]
    return vanilla, blended, tdpaint


def test_a_study_shows_every_pair_on_every_common_sample_with_balanced_sides(populated_store):
    store = populated_store
    vanilla, blended, tdpaint = _finished(store)
    with_errors = store.ids["with_errors"]  # its 5th sample failed: not shown to anyone
    runs = [vanilla, blended, tdpaint, with_errors]
    study, created = open_study(store, runs, seed=3)
    assert created and study.trials == 6 * 5 and study.needed == 30
    trials = store.trials(study.id)
    failed = next(s.sample_id for s in store.run_detail(with_errors).samples if s.status == "failed")
    units = Counter((t.sample_id, frozenset((t.left_run_id, t.right_run_id))) for t in trials)
    assert set(units.values()) == {1} and len(units) == 6 * 5
    assert failed not in {t.sample_id for t in trials}
    for a in runs:
        for b in runs:
            if a < b:
                pair = [t for t in trials if {t.left_run_id, t.right_run_id} == {a, b}]
                left_a = sum(t.left_run_id == a for t in pair)
                assert abs(left_a - (len(pair) - left_a)) <= 1, "sides balanced within one per pair"


def test_opening_the_same_runs_again_resumes_the_study(populated_store):
    store = populated_store
    vanilla, blended, _ = _finished(store)
    first, created = open_study(store, [vanilla, blended])
    again, created_again = open_study(store, [blended, vanilla])
    assert created and not created_again and again.id == first.id
    other_question, created = open_study(store, [vanilla, blended], question="Which looks less blurry?")
    assert created and other_question.id != first.id
    renewed, created = open_study(store, [vanilla, blended], new=True)
    assert created and renewed.id not in (first.id, other_question.id)
    with pytest.raises(JudgingError, match="--raters: study .* asks 1 rater"):
        open_study(store, [vanilla, blended], question="Which looks less blurry?", raters_per_trial=2)


def test_studies_that_cannot_be_judged_are_refused_naming_the_option(populated_store):
    store = populated_store
    vanilla, blended, _ = _finished(store)
    for runs, message in (([vanilla], "at least two runs"), ([vanilla, blended, vanilla], f"run {vanilla} is named twice"),
                          ([vanilla, store.ids["queued"]], f"run {store.ids['queued']} has no finished sample"),
                          ([vanilla, store.ids["failed"]], f"run {store.ids['failed']} has no finished sample")):
        with pytest.raises(JudgingError, match=message) as caught:
            open_study(store, runs)
        assert str(caught.value).startswith("--runs")
    with pytest.raises(NotFound, match="no run with id 999"):
        open_study(store, [vanilla, 999])
    with pytest.raises(JudgingError, match="--raters"):
        open_study(store, [vanilla, blended], raters_per_trial=0)
    with pytest.raises(JudgingError, match="--seed: a whole number from 0, not -1"):
        open_study(store, [vanilla, blended], seed=-1)
    assert store.studies() == []  # nothing half-made


def test_a_session_stores_each_answer_with_rater_times_and_sides_and_resumes_without_repeats(populated_store):
    store = populated_store
    vanilla, blended, tdpaint = _finished(store)
    study, _ = open_study(store, [vanilla, blended, tdpaint])
    clock = Clock()
    session = JudgingSession(store, study.id, "alice", clock=clock)
    shown = []
    for outcome in ("left", "right", "tie", "skip"):
        current = session.next()
        shown.append(current.trial)
        assert current.left_image == store.run_detail(current.trial.left_run_id).samples[
            [s.sample_id for s in store.run_detail(current.trial.left_run_id).samples].index(current.sample.id)].image_path
        session.answer(outcome)
    answers = store.judgements(study.id)
    assert [a.outcome for a in answers] == ["left", "right", "tie", "skip"]
    assert [a.trial_id for a in answers] == [t.id for t in shown]
    assert all(a.rater == "alice" and not a.simulated for a in answers)
    # shown at one tick, answered at the next: 2.5 s each
    assert [a.seconds for a in answers] == [2.5] * 4
    assert [(a.left, a.right) for a in answers] == [(t.left_run_id, t.right_run_id) for t in shown]
    progress = session.progress()
    assert (progress.mine, progress.left_for_me, progress.answered, progress.needed) == (4, 14, 3, 18)
    assert store.study(study.id).judgements == 3 and store.study(study.id).skips == 1

    resumed = JudgingSession(store, study.id, "alice", clock=clock)  # a new terminal, another day
    seen = {t.id for t in shown}
    for current in _shown_until_done(resumed):
        assert current.trial.id not in seen, "a resumed session never shows an answered trial again"
        seen.add(current.trial.id)
        resumed.answer("left")
    assert len(seen) == 18 and resumed.progress().left_for_me == 0
    assert len(store.judgements(study.id)) == 18


def test_undo_takes_back_the_latest_answer_even_from_an_earlier_session(populated_store):
    store = populated_store
    vanilla, blended, _ = _finished(store)
    study, _ = open_study(store, [vanilla, blended])
    session = JudgingSession(store, study.id, "alice")
    session.next()
    session.answer("left")
    last = session.next().trial
    session.answer("right")
    later = JudgingSession(store, study.id, "alice")
    assert later.undo()
    assert later.next().trial == last, "the trial taken back is shown next"
    assert [a.outcome for a in store.judgements(study.id)] == ["left"]
    later.answer("tie")
    assert [a.outcome for a in store.judgements(study.id)] == ["left", "tie"]
    assert later.undo() and later.undo() and not later.undo()  # nothing left to take back
    assert store.judgements(study.id) == []


def test_raters_share_the_trials_until_each_has_its_judgements(populated_store):
    store = populated_store
    vanilla, blended, tdpaint = _finished(store)
    runs = [vanilla, blended, tdpaint]
    solo, _ = open_study(store, runs)
    alice, bob = JudgingSession(store, solo.id, "alice"), JudgingSession(store, solo.id, "bob")
    assert alice.order != bob.order, "each rater has an order of their own"
    done_by_alice = set()
    for _ in range(10):
        done_by_alice.add(alice.next().trial.id)
        alice.answer("left")
    offered = set()
    for current in _shown_until_done(bob):
        offered.add(current.trial.id)
        bob.answer("skip" if len(offered) == 1 else "right")
    assert offered == {t.id for t in store.trials(solo.id)} - done_by_alice
    # bob's skip is no judgement: that trial is still open, to alice only
    assert alice.progress().left_for_me == 1 and bob.progress().left_for_me == 0

    pair, _ = open_study(store, runs, raters_per_trial=2, question="twice each")
    for rater in ("alice", "bob"):
        session = JudgingSession(store, pair.id, rater)
        for _ in _shown_until_done(session):
            session.answer("left")
    assert JudgingSession(store, pair.id, "carol").next() is None
    assert Counter(j.trial_id for j in store.judgements(pair.id)) == Counter({t.id: 2 for t in store.trials(pair.id)})
    agreement = analyse_study(store, pair.id).raters_agreement
    assert agreement.units == 18 and agreement.fleiss_kappa is not None


def test_simulated_raters_and_the_human_score_stored_per_run(populated_store):
    store = populated_store
    vanilla, blended, tdpaint = _finished(store)  # bg_mse: blended < tdpaint < vanilla
    runs = [vanilla, blended, tdpaint]
    study, _ = open_study(store, runs, seed=5)
    answers = simulate_raters(store, study.id, metric="bg_mse", raters=3, noise=0.3, seed=1)
    assert answers == 3 * 18
    ranked = refresh_human_scores(store, study.id)
    assert ranked.fit.ranking() == [blended, tdpaint, vanilla]

    # The stored value is the fit of the stored answers, rebuilt here from the trials alone.
    trials = {t.id: t for t in store.trials(study.id)}
    rebuilt = [Judgement(trials[a.trial_id].sample_id, trials[a.trial_id].left_run_id,
                         trials[a.trial_id].right_run_id, a.outcome, a.rater) for a in store.judgements(study.id)]
    fit = fit_bradley_terry(rebuilt, runs)
    again = bootstrap_strengths(rebuilt, runs, seed=study.seed)
    summaries = store.run_metrics(runs)[1]
    for index, run_id in enumerate(runs):
        human = summaries[run_id][HUMAN_METRIC]
        assert human.value == pytest.approx(fit.theta[index], abs=1e-9)
        assert (human.ci_low, human.ci_high) == pytest.approx((again.low[index], again.high[index]), abs=1e-9)
        assert human.ci_low <= human.value <= human.ci_high
        assert human.n == 3 * 12  # every run is in 2 of the 3 pairs: 12 trials, 3 raters
        assert human.note == f"study {study.id}: 54 judgements by 3 simulated raters"
    board = store.leaderboard(HUMAN_METRIC, descending=True)
    assert [row.run_id for row in board[:3]] == [blended, tdpaint, vanilla]

    # People's answers, once there are any, are what counts; the simulation is never mixed in.
    alice = JudgingSession(store, study.id, "alice")
    for _ in range(6):
        alice.next()
        alice.answer("left")
    refresh_human_scores(store, study.id)
    assert store.run_metrics(runs)[1][vanilla][HUMAN_METRIC].note == f"study {study.id}: 6 judgements by 1 rater"
    assert len(store.counted_judgements(study.id)) == 6


def test_simulated_raters_agree_with_their_metric_less_as_noise_grows(populated_store):
    store = populated_store
    runs = list(_finished(store)) + store.ids["swept"]
    shares, alphas = [], []
    for noise in (0.0, 3.0):
        study, _ = open_study(store, runs, question=f"noise {noise}")
        simulate_raters(store, study.id, metric="bg_mse", raters=3, noise=noise, seed=2)
        analysis = analyse_study(store, study.id)
        bg_mse = next(m for m in analysis.metric_agreements if m.metric == "bg_mse")
        shares.append(bg_mse.share)
        alphas.append(analysis.raters_agreement.krippendorff_alpha)
        assert analysis.simulated and analysis.judgements == 3 * study.trials
    assert shares[0] == 1.0 and alphas[0] == 1.0  # noiseless raters all pick the lower bg_mse
    assert shares[1] < 0.95 and alphas[1] < 0.6
    assert [m.metric for m in analysis.metric_agreements] == ["bg_mse", "bg_psnr"]  # no cost metric


def test_simulation_needs_a_per_sample_metric_the_runs_have(populated_store):
    store = populated_store
    study, _ = open_study(store, list(_finished(store))[:2])
    with pytest.raises(JudgingError, match="--simulate: kid has one value per run"):
        simulate_raters(store, study.id, metric="kid")
    with pytest.raises(JudgingError, match="--simulate: no output of runs .* has clip_local"):
        simulate_raters(store, study.id, metric="clip_local")
    with pytest.raises(JudgingError, match="--rater: names starting with 'sim-'"):
        JudgingSession(store, study.id, "sim-1")
    assert store.judgements(study.id) == []


def test_a_judged_run_cannot_be_deleted_until_its_study_is(populated_store):
    store = populated_store
    vanilla, blended, tdpaint = _finished(store)
    study, _ = open_study(store, [vanilla, blended])
    simulate_raters(store, study.id, metric="bg_mse")
    refresh_human_scores(store, study.id)
    with pytest.raises(RunBusy, match=f"judging study {study.id}; their judgements would be lost"):
        store.delete_run(vanilla, stale_after=60)
    assert len(store.judgements(study.id)) == 6
    assert delete_study(store, study.id) == 6
    assert HUMAN_METRIC not in store.run_metrics([vanilla])[1][vanilla]
    store.delete_run(vanilla, stale_after=60)
    with pytest.raises(NotFound):
        store.run(vanilla)


def test_taking_every_answer_back_removes_the_score_it_gave(populated_store):
    store = populated_store
    vanilla, blended, _ = _finished(store)
    study, _ = open_study(store, [vanilla, blended])
    session = JudgingSession(store, study.id, "alice")
    session.next()
    session.answer("left")
    assert refresh_human_scores(store, study.id) is not None
    assert HUMAN_METRIC in store.run_metrics([vanilla])[1][vanilla]
    session.undo()
    assert refresh_human_scores(store, study.id) is None
    assert HUMAN_METRIC not in store.run_metrics([vanilla])[1][vanilla]


def test_the_analysis_win_matrix_and_position_bias_count_the_stored_answers(populated_store):
    store = populated_store
    vanilla, blended, _ = _finished(store)
    study, _ = open_study(store, [vanilla, blended])
    session = JudgingSession(store, study.id, "alice")
    outcomes = ["left", "left", "left", "right", "tie", "skip"]
    winners = []
    for outcome in outcomes:
        trial = session.next().trial
        winners.append({"left": trial.left_run_id, "right": trial.right_run_id}.get(outcome))
        session.answer(outcome)
    analysis = analyse_study(store, study.id)
    assert analysis.judgements == 5 and analysis.study.skips == 1
    vanilla_wins = sum(w == vanilla for w in winners) + 0.5  # the tie counts half
    assert analysis.wins[0, 1] == pytest.approx(vanilla_wins / 5)
    assert analysis.wins[1, 0] == pytest.approx(1 - vanilla_wins / 5)
    assert np.isnan(analysis.wins[0, 0])
    assert (analysis.position.left_wins, analysis.position.decisive) == (3, 4)
    assert analysis.median_seconds is not None
    data = analysis.to_dict()
    assert data["win_matrix"][str(vanilla)][str(blended)] == pytest.approx(vanilla_wins / 5)
    assert [row["run_id"] for row in data["ranking"]] == analysis.ranked.fit.ranking()
