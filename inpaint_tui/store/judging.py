"""Judging studies in the store: studies, their trials and each rater's judgements; mixed
into `Store`."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Sequence

from sqlalchemy import delete, func, insert
from sqlmodel import Session, select

from inpaint_tui.store.db import NotFound, StoreError
from inpaint_tui.store.metrics import IDS_PER_QUERY
from inpaint_tui.store.tables import JudgementOutcome, JudgementRecord, StudyRecord, TrialRecord
from inpaint_tui.store.views import JudgementInfo, StudyInfo, TrialInfo


class JudgingMixin:
    """Store methods for judging studies; mixed into `Store` (needs `session`)."""

    def create_study(self, *, question: str, run_ids: Sequence[int], seed: int, raters_per_trial: int,
                     command: str | None, trials: Sequence[tuple[int, int, int]]) -> int:
        """Record a study and its trials, (sample id, left run id, right run id) in the order
        they are to be shown; one transaction."""
        with self.session() as session:
            study = StudyRecord(question=question, run_ids=list(run_ids), seed=seed,
                                raters_per_trial=raters_per_trial, command=command)
            session.add(study)
            session.flush()
            for position, (sample_id, left, right) in enumerate(trials):
                session.add(TrialRecord(study_id=study.id, position=position, sample_id=sample_id,
                                        left_run_id=left, right_run_id=right))
            session.commit()
            return study.id

    def studies(self, run_ids: Sequence[int] | None = None) -> list[StudyInfo]:
        """Every study, oldest first; with `run_ids`, those comparing exactly these runs."""
        with self.session() as session:
            records = session.exec(select(StudyRecord).order_by(StudyRecord.id)).all()
            if run_ids is not None:
                records = [r for r in records if sorted(r.run_ids) == sorted(run_ids)]
            return [self._study_info(session, record) for record in records]

    def study(self, study_id: int) -> StudyInfo:
        with self.session() as session:
            return self._study_info(session, self._study(session, study_id))

    def _study(self, session: Session, study_id: int) -> StudyRecord:
        record = session.get(StudyRecord, study_id)
        if record is None:
            raise NotFound(f"no study with id {study_id} (inpaint-tui judge list shows them)")
        return record

    def _study_info(self, session: Session, record: StudyRecord) -> StudyInfo:
        trials = session.exec(select(func.count()).select_from(TrialRecord).where(TrialRecord.study_id == record.id)).one()
        answer = JudgementRecord.__table__.c
        skip = answer.outcome == JudgementOutcome.SKIP
        groups = session.connection().execute(  # counted in SQL: a large study has tens of thousands
            select(answer.rater, answer.simulated, skip, func.count())
            .where(answer.study_id == record.id)
            .group_by(answer.rater, answer.simulated, skip)
        ).all()
        outcomes = Counter()
        for _, _, skipped, count in groups:
            outcomes[bool(skipped)] += count
        return StudyInfo(
            id=record.id, question=record.question, run_ids=list(record.run_ids), seed=record.seed,
            raters_per_trial=record.raters_per_trial, command=record.command, created_at=record.created_at,
            trials=trials, judgements=outcomes[False], skips=outcomes[True],
            raters=sorted({rater for rater, simulated, _, _ in groups if not simulated}),
            simulated_raters=sorted({rater for rater, simulated, _, _ in groups if simulated}),
        )

    def trials(self, study_id: int) -> list[TrialInfo]:
        """The study's trials in schedule order."""
        with self.session() as session:
            self._study(session, study_id)
            rows = session.exec(select(TrialRecord).where(TrialRecord.study_id == study_id)
                                .order_by(TrialRecord.position)).all()
            return [TrialInfo(id=r.id, position=r.position, sample_id=r.sample_id, left_run_id=r.left_run_id,
                              right_run_id=r.right_run_id) for r in rows]

    def judgements(self, study_id: int) -> list[JudgementInfo]:
        """Every answer of the study (skips too), in the order they were given. Plain rows:
        ORM objects for a large study's answers would cost a second."""
        with self.session() as session:
            self._study(session, study_id)
            answer, trial = JudgementRecord.__table__.c, TrialRecord.__table__.c
            rows = session.connection().execute(
                select(answer.id, answer.trial_id, trial.sample_id, trial.left_run_id, trial.right_run_id,
                       answer.outcome, answer.rater, answer.shown_at, answer.answered_at, answer.seconds,
                       answer.simulated)
                .join(TrialRecord.__table__, trial.id == answer.trial_id)
                .where(answer.study_id == study_id)
                .order_by(answer.answered_at, answer.id)
            ).all()
        return [JudgementInfo(id=r[0], trial_id=r[1], sample=r[2], left=r[3], right=r[4], outcome=r[5], rater=r[6],
                              shown_at=r[7], answered_at=r[8], seconds=r[9], simulated=bool(r[10])) for r in rows]

    def rater_state(self, study_id: int, rater: str) -> tuple[dict[int, int], list[tuple[int, int]]]:
        """What a judging session reads at every step, and no more: per trial, the judgements
        (not skips) people gave it, and the (judgement id, trial id) of this rater's answers
        (skips too) in the order given. Simulated answers are left out of both."""
        answer = JudgementRecord.__table__.c
        with self.session() as session:
            connection = session.connection()
            people = (answer.study_id == study_id) & answer.simulated.is_(False)
            judged = dict(connection.execute(
                select(answer.trial_id, func.count())
                .where(people, answer.outcome != JudgementOutcome.SKIP)
                .group_by(answer.trial_id)
            ).all())
            mine = [(r[0], r[1]) for r in connection.execute(
                select(answer.id, answer.trial_id).where(people, answer.rater == rater)
                .order_by(answer.answered_at, answer.id)
            ).all()]
        return judged, mine

    def counted_judgements(self, study_id: int) -> list[JudgementInfo]:
        """The judgements an analysis counts: answers, not skips; people's when there are
        any, else the simulated raters' (the two are never mixed)."""
        answers = [j for j in self.judgements(study_id) if j.outcome != JudgementOutcome.SKIP]
        people = [j for j in answers if not j.simulated]
        return people or answers

    def record_judgements(self, study_id: int, answers: Sequence[tuple[int, str, str, datetime, datetime, bool]]) -> int:
        """Store answers (trial id, rater, outcome, shown at, answered at, simulated) in one
        transaction; a rater's new answer to a trial replaces their earlier one. Returns how
        many were stored. Core statements: a simulation stores tens of thousands at once."""
        rows, by_rater = [], defaultdict(set)
        for trial_id, rater, outcome, shown_at, answered_at, simulated in answers:
            if outcome not in JudgementOutcome.ALL:
                raise StoreError(f"a judgement's outcome is one of {', '.join(JudgementOutcome.ALL)}, not {outcome!r}")
            if not rater.strip():
                raise StoreError("a judgement needs the rater's name")
            rows.append({"study_id": study_id, "trial_id": trial_id, "rater": rater, "outcome": outcome,
                         "shown_at": shown_at, "answered_at": answered_at,
                         "seconds": max(0.0, (answered_at - shown_at).total_seconds()), "simulated": simulated})
            by_rater[rater].add(trial_id)
        table, trials = JudgementRecord.__table__, TrialRecord.__table__
        with self.session() as session:
            self._study(session, study_id)
            connection = session.connection()
            asked = list({row["trial_id"] for row in rows})
            known = set()
            for start in range(0, len(asked), IDS_PER_QUERY):  # backends cap a query's bound values
                known.update(connection.execute(select(trials.c.id).where(
                    trials.c.study_id == study_id, trials.c.id.in_(asked[start:start + IDS_PER_QUERY]))).scalars())
            missing = sorted(set(asked) - known)
            if missing:
                raise NotFound(f"study {study_id} has no trial {missing[0]}")
            for rater, trial_ids in by_rater.items():
                ids = sorted(trial_ids)
                for start in range(0, len(ids), IDS_PER_QUERY):
                    connection.execute(delete(table).where(table.c.study_id == study_id, table.c.rater == rater,
                                                           table.c.trial_id.in_(ids[start:start + IDS_PER_QUERY])))
            if rows:
                connection.execute(insert(table), rows)
            session.commit()
        return len(rows)

    def delete_judgement(self, judgement_id: int) -> None:
        with self.session() as session:
            record = session.get(JudgementRecord, judgement_id)
            if record is None:
                raise NotFound(f"no judgement with id {judgement_id}")
            session.delete(record)
            session.commit()

    def studies_of_run(self, run_id: int) -> list[int]:
        """The studies whose trials show this run."""
        with self.session() as session:
            return sorted(set(session.exec(
                select(TrialRecord.study_id).where((TrialRecord.left_run_id == run_id)
                                                   | (TrialRecord.right_run_id == run_id))
            ).all()))

    def delete_study(self, study_id: int) -> int:
        """Delete a study with its trials and judgements; returns the judgements deleted."""
        with self.session() as session:
            record = self._study(session, study_id)
            count = session.exec(select(func.count()).select_from(JudgementRecord)
                                 .where(JudgementRecord.study_id == study_id)).one()
            session.delete(record)
            session.commit()
            return count
