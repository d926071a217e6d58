"""Metrics in the store: per-sample and per-run values (reads and writes) and the
leaderboard ranked on them; mixed into `Store`."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from sqlalchemy import delete, func
from sqlmodel import Session, select

from inpaint_tui.store.db import NotFound
from inpaint_tui.store.query import Node, RunQuery, SortKey
from inpaint_tui.store.tables import MetricRecord, RunMetricRecord, RunRecord, RunSampleRecord, RunStatus, SampleStatus
from inpaint_tui.store.views import LeaderboardRow, MetricSummary


IDS_PER_QUERY = 5000


class MetricsMixin:
    """Store methods for metric values and the leaderboard; mixed into `Store` (needs
    `session`, `_run`, `_set`, `_status_counts`)."""

    def _run_metrics(
        self, session: Session, run_ids
    ) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, MetricSummary]]]:
        """Per run: (values, summaries); `run_ids` is a list or a subquery of run ids.

        Stored per-run rows (set-level metrics, aggregates with intervals, missing metrics)
        win. A run that ended cleanly has an aggregate for every per-sample metric (the jobs
        layer writes them even when evaluation fails); other runs (running, cancelled) get
        the live mean over their done samples. Rows are read as plain tuples: building ORM
        objects for 10 000 runs' metrics would take seconds."""
        values: dict[int, dict[str, float]] = defaultdict(dict)
        summaries: dict[int, dict[str, MetricSummary]] = defaultdict(dict)
        if isinstance(run_ids, list) and not run_ids:
            return values, summaries
        metric = MetricRecord.__table__.c
        per_run = RunMetricRecord.__table__.c
        unsettled = select(RunRecord.id).where(
            RunRecord.id.in_(run_ids), RunRecord.status.not_in([RunStatus.FINISHED, RunStatus.FINISHED_WITH_ERRORS]))
        connection = session.connection()  # core results: no ORM row processing
        for run_id, name, mean, count in connection.execute(
            select(metric.run_id, metric.name, func.avg(metric.value), func.count(metric.value))
            .where(metric.run_id.in_(unsettled))
            .group_by(metric.run_id, metric.name)
        ).all():
            if count:
                values[run_id][name] = float(mean)
                summaries[run_id][name] = MetricSummary(value=float(mean), n=count)
        for run_id, name, value, std, low, high, n, note in connection.execute(
            select(per_run.run_id, per_run.name, per_run.value, per_run.std, per_run.ci_low, per_run.ci_high,
                   per_run.n, per_run.note)
            .where(per_run.run_id.in_(run_ids))
        ).all():
            summaries[run_id][name] = MetricSummary(value=value, std=std, ci_low=low, ci_high=high, n=n, note=note)
            if value is None:
                values[run_id].pop(name, None)
            else:
                values[run_id][name] = value
        return values, summaries

    def run_metric_values(self, run_ids: Sequence[int] | None = None) -> dict[int, dict[str, float]]:
        """Per run, its per-run metric values (stored, else the live mean of its samples);
        every run's when `run_ids` is None (no ids bound: the TUI's full reload)."""
        return self.run_metrics(run_ids)[0]

    def run_metrics(
        self, run_ids: Sequence[int] | None = None
    ) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, MetricSummary]]]:
        """Per run, its per-run metric values and their summaries (intervals where stored);
        every run's when `run_ids` is None."""
        values: dict[int, dict[str, float]] = {}
        summaries: dict[int, dict[str, MetricSummary]] = {}
        with self.session() as session:
            if run_ids is None:
                every_values, every_summaries = self._run_metrics(session, select(RunRecord.id))
                return dict(every_values), dict(every_summaries)
            run_ids = list(run_ids)
            # In chunks: backends cap a query's bound values (SQLite builds at 32 766, PostgreSQL at 65 535).
            for start in range(0, len(run_ids), IDS_PER_QUERY):
                chunk_values, chunk_summaries = self._run_metrics(session, run_ids[start:start + IDS_PER_QUERY])
                values.update(chunk_values)
                summaries.update(chunk_summaries)
            return values, summaries

    def record_run_metrics(self, run_id: int, summaries: dict[str, MetricSummary]) -> None:
        """Replace the run's per-run rows for these metric names (one transaction)."""
        with self.session() as session:
            self._run(session, run_id)
            session.exec(
                delete(RunMetricRecord).where(RunMetricRecord.run_id == run_id,
                                              RunMetricRecord.name.in_(list(summaries)))
            )
            for name, summary in summaries.items():
                session.add(RunMetricRecord(run_id=run_id, name=name, value=summary.value, std=summary.std,
                                            ci_low=summary.ci_low, ci_high=summary.ci_high, n=summary.n,
                                            note=summary.note))
            session.commit()

    def delete_run_metric(self, run_ids: Sequence[int], name: str) -> int:
        """Delete the runs' per-run `name` rows; returns how many."""
        with self.session() as session:
            deleted = session.exec(delete(RunMetricRecord).where(RunMetricRecord.run_id.in_(list(run_ids)),
                                                                 RunMetricRecord.name == name)).rowcount
            session.commit()
            return deleted

    def record_sample_metrics(self, run_id: int, values: dict[int, dict[str, float | None]]) -> None:
        """Replace some per-sample metrics of a run: {sample id: {name: value}}, one
        transaction; other metrics of those samples stay as they are."""
        with self.session() as session:
            rows = {
                row.sample_id: row
                for row in session.exec(select(RunSampleRecord).where(RunSampleRecord.run_id == run_id)).all()
            }
            for sample_id, metrics in values.items():
                row = rows.get(sample_id)
                if row is None:
                    raise NotFound(f"run {run_id} has no sample {sample_id}")
                session.exec(
                    delete(MetricRecord).where(MetricRecord.run_sample_id == row.id, MetricRecord.name.in_(list(metrics)))
                )
                for name, value in metrics.items():
                    session.add(MetricRecord(run_id=run_id, run_sample_id=row.id, name=name,
                                             value=None if value is None else float(value)))
            session.commit()

    def sample_metric_values(self, run_id: int) -> dict[str, dict[int, float]]:
        """{metric name: {sample id: value}} over the run's samples that have the value, each
        inner dict in sample-id order (a bootstrap over the values must not depend on the
        order the database happens to return rows in)."""
        with self.session() as session:
            rows = session.exec(
                select(MetricRecord.name, RunSampleRecord.sample_id, MetricRecord.value)
                .join(RunSampleRecord, RunSampleRecord.id == MetricRecord.run_sample_id)
                .where(MetricRecord.run_id == run_id, MetricRecord.value.is_not(None))
                .order_by(MetricRecord.name, RunSampleRecord.sample_id)
            ).all()
        result: dict[str, dict[int, float]] = defaultdict(dict)
        for name, sample_id, value in rows:
            result[name][sample_id] = value
        return dict(result)

    def leaderboard(
        self, metric: str, *, descending: bool, sample_set: str | None = None, include_unfinished: bool = False,
        limit: int | None = None, where: Node | None = None, order: Sequence[SortKey] = (),
    ) -> list[LeaderboardRow]:
        """Runs ranked by `metric` (best first given its direction, ties by run id); runs
        without the metric come last. Only finished runs unless `include_unfinished`; only
        those matching the filter `where` (store/query.py). `order` ranks by those sort keys
        instead (missing values last, ties by id).

        `limit` returns the first rows of that same ranking, ranked by SQLite on the stored
        per-run values, so the top of 10 000 runs costs what a few rows cost (a screen shows
        them while the whole ranking loads). Unfinished runs have live means computed here,
        so with `include_unfinished` the whole ranking is built and cut (not so with `order`,
        whose keys read live means in SQL)."""
        with self.session() as session:
            table = RunRecord.__table__.c
            query = select(table.id, table.technique, table.params, table.model, table.steps, table.seed,
                           table.guidance, table.sample_set, table.status)  # plain rows: see _run_metrics
            if sample_set is not None:
                self._set(session, sample_set)
                query = query.where(RunRecord.sample_set == sample_set)
            if not include_unfinished:
                query = query.where(RunRecord.status.in_([RunStatus.FINISHED, RunStatus.FINISHED_WITH_ERRORS]))
            compiler = RunQuery(session.get_bind().dialect.name)
            if where is not None:
                query = query.where(compiler.condition(where))
            chosen = query.with_only_columns(RunRecord.id).scalar_subquery()
            ordered: list[int] | None = None
            if order:
                ordered = list(session.connection().execute(
                    query.with_only_columns(RunRecord.id).order_by(*compiler.order(order)).limit(limit)
                ).scalars().all())
                query = query.where(RunRecord.id.in_(ordered))
                chosen = ordered
            elif limit is not None and not include_unfinished:
                top = self._top_run_ids(session, chosen, metric, descending, limit)
                query = query.where(RunRecord.id.in_(top))
                chosen = top
            records = session.connection().execute(query.order_by(RunRecord.id)).all()
            metrics, summaries = self._run_metrics(session, chosen)
            counts = self._status_counts(session, chosen)
        rows = [
            LeaderboardRow(
                run_id=r.id,
                technique=r.technique,
                params=dict(r.params),
                model=r.model,
                steps=r.steps,
                seed=r.seed,
                guidance=r.guidance,
                sample_set=r.sample_set,
                status=r.status,
                samples_done=counts.get(r.id, {}).get(SampleStatus.DONE, 0),
                metrics=metrics.get(r.id, {}),
                summaries=summaries.get(r.id, {}),
            )
            for r in records
        ]
        if ordered is not None:
            place = {run_id: index for index, run_id in enumerate(ordered)}
            return sorted(rows, key=lambda row: place[row.run_id])
        present = [row for row in rows if metric in row.metrics]
        missing = [row for row in rows if metric not in row.metrics]
        present.sort(key=lambda row: row.metrics[metric], reverse=descending)
        ranked = present + missing
        return ranked if limit is None else ranked[:limit]

    @staticmethod
    def _top_run_ids(session: Session, chosen, metric: str, descending: bool, limit: int) -> list[int]:
        """The first `limit` run ids of `leaderboard`'s ranking among `chosen` (ended runs,
        whose per-run values are stored): by value, ties by id, then runs without a value by id."""
        values = RunMetricRecord.__table__.c
        ranked = session.connection().execute(
            select(values.run_id)
            .where(values.run_id.in_(chosen), values.name == metric, values.value.is_not(None))
            .order_by(values.value.desc() if descending else values.value, values.run_id)
            .limit(limit)
        ).scalars().all()
        if len(ranked) < limit:
            with_value = select(values.run_id).where(values.name == metric, values.value.is_not(None))
            ranked += session.connection().execute(
                select(RunRecord.id).where(RunRecord.id.in_(chosen), RunRecord.id.not_in(with_value))
                .order_by(RunRecord.id).limit(limit - len(ranked))
            ).scalars().all()
        return list(ranked)
