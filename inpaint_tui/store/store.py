"""The store: every read and write the faces and the jobs layer make, as short transactions
returning plain views."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from sqlalchemy import delete, func, update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from inpaint_tui.store.db import StoreError, data_dir_for, database_url, make_engine, migrate
from inpaint_tui.store.queue import QueueMixin
from inpaint_tui.store.sweeps import SweepMixin
from inpaint_tui.store.tables import (
    MetricRecord,
    RunMetricRecord,
    RunProgressRecord,
    RunRecord,
    RunSampleRecord,
    RunStatus,
    SampleRecord,
    SampleSetMember,
    SampleSetRecord,
    SampleStatus,
    utcnow,
)
from inpaint_tui.store.views import (
    ImportReport,
    LeaderboardRow,
    MetricSummary,
    NewRun,
    NewSample,
    RunDetail,
    RunInfo,
    RunSampleInfo,
    SampleInfo,
    SampleSetInfo,
)


class NotFound(StoreError):
    """A run, sample or sample set that does not exist; the message names it."""


class Store(QueueMixin, SweepMixin):
    def __init__(self, db: str | os.PathLike | None = None, *, data_dir: str | os.PathLike | None = None) -> None:
        self.url = database_url(db)
        self.data_dir = data_dir_for(self.url, data_dir)
        self.engine = make_engine(self.url)
        try:
            migrate(self.engine)
        except OperationalError as error:
            raise StoreError(f"cannot open database {self.url}: {error.orig}") from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # --- files ----------------------------------------------------------------------------

    def path(self, relative: str | None) -> Path | None:
        return None if relative is None else self.data_dir / relative

    def _write_content_addressed(self, data: bytes, suffix: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        relative = f"samples/{digest[:2]}/{digest}{suffix}"
        target = self.data_dir / relative
        if not target.exists():  # same name, same bytes: already there from an earlier import
            _atomic_write(target, data)
        return relative

    @staticmethod
    def output_name(position: int, sample_name: str, extension: str = "png") -> str:
        """File name of a run's output for one sample (run order first, so `ls` sorts)."""
        return f"{position:04d}-{safe_file_stem(sample_name)}.{extension}"

    def save_run_file(self, run_id: int, name: str, data: bytes) -> str:
        """Write a file into the run's folder atomically; returns its relative path."""
        relative = f"runs/{run_id}/{name}"
        _atomic_write(self.data_dir / relative, data)
        return relative

    def save_output(self, run_id: int, position: int, sample_name: str, png: bytes) -> str:
        return self.save_run_file(run_id, self.output_name(position, sample_name), png)

    # --- samples --------------------------------------------------------------------------

    def import_samples(
        self, set_name: str, items: Sequence[NewSample], on_progress: Callable[[int, int], None] | None = None
    ) -> ImportReport:
        """Add samples (deduplicated by content key) and append them to a set, in one
        transaction: a failure leaves neither new rows nor a partial set. Files are written
        first under content hashes, so a failed import at most leaves files a retry reuses.
        `on_progress(done, total)` follows the file writes (the slow part)."""
        if not set_name.strip():
            raise StoreError("a sample set needs a non-empty name")
        paths = []
        for index, item in enumerate(items):
            if on_progress is not None:
                on_progress(index, len(items))
            image = self._write_content_addressed(item.image_png, ".png")
            mask = self._write_content_addressed(item.mask_png, ".png")
            reference = None if item.reference_png is None else self._write_content_addressed(item.reference_png, ".png")
            paths.append((image, mask, reference))
        added = present = 0
        with self.session() as session:
            sample_set = session.exec(select(SampleSetRecord).where(SampleSetRecord.name == set_name)).first()
            if sample_set is None:
                sample_set = SampleSetRecord(name=set_name)
                session.add(sample_set)
                session.flush()
            members = set(session.exec(select(SampleSetMember.sample_id).where(SampleSetMember.set_id == sample_set.id)).all())
            position = len(members)
            for item, (image, mask, reference) in zip(items, paths):
                record = session.exec(select(SampleRecord).where(SampleRecord.key == item.key)).first()
                if record is None:
                    record = SampleRecord(
                        key=item.key,
                        name=item.name,
                        prompt=item.prompt,
                        image_path=image,
                        mask_path=mask,
                        reference_path=reference,
                        width=item.width,
                        height=item.height,
                        source=item.source,
                        meta=item.meta,
                    )
                    session.add(record)
                    session.flush()
                    added += 1
                else:
                    present += 1
                if record.id not in members:
                    session.add(SampleSetMember(set_id=sample_set.id, sample_id=record.id, position=position))
                    members.add(record.id)
                    position += 1
            session.commit()
        return ImportReport(set_name=set_name, added=added, already_present=present, total_in_set=len(members))

    def create_sample_set(self, name: str, sample_ids: Sequence[int]) -> ImportReport:
        """Make a sample set of existing samples, or append them to an existing set (after its
        current members, in the order given; samples already in it keep their place), in one
        transaction. StoreError for an empty name or no samples, NotFound for unknown ids."""
        name = name.strip()
        if not name:
            raise StoreError("a sample set needs a non-empty name")
        ids = list(dict.fromkeys(int(sample_id) for sample_id in sample_ids))
        if not ids:
            raise StoreError(f"sample set {name!r}: no samples given")
        with self.session() as session:
            known = set(session.exec(select(SampleRecord.id).where(SampleRecord.id.in_(ids))).all())
            missing = [sample_id for sample_id in ids if sample_id not in known]
            if missing:
                raise NotFound(f"no sample with id {', '.join(map(str, missing))}")
            sample_set = session.exec(select(SampleSetRecord).where(SampleSetRecord.name == name)).first()
            if sample_set is None:
                sample_set = SampleSetRecord(name=name)
                session.add(sample_set)
                session.flush()
            in_set = SampleSetMember.set_id == sample_set.id
            members = set(session.exec(select(SampleSetMember.sample_id).where(in_set)).all())
            last = session.exec(select(func.max(SampleSetMember.position)).where(in_set)).one()
            position = 0 if last is None else last + 1
            added = 0
            for sample_id in ids:
                if sample_id not in members:
                    session.add(SampleSetMember(set_id=sample_set.id, sample_id=sample_id, position=position))
                    position += 1
                    added += 1
            session.commit()
        return ImportReport(set_name=name, added=added, already_present=len(ids) - added,
                            total_in_set=len(members) + added)

    def sample_sets(self) -> list[SampleSetInfo]:
        with self.session() as session:
            rows = session.exec(
                select(SampleSetRecord, func.count(SampleSetMember.sample_id))
                .join(SampleSetMember, SampleSetMember.set_id == SampleSetRecord.id, isouter=True)
                .group_by(SampleSetRecord.id)
                .order_by(SampleSetRecord.name)
            ).all()
            return [SampleSetInfo(name=s.name, sample_count=count, created_at=s.created_at) for s, count in rows]

    def samples(self, set_name: str | None = None) -> list[SampleInfo]:
        """All samples, or a set's samples in set order."""
        with self.session() as session:
            if set_name is None:
                records = session.exec(select(SampleRecord).order_by(SampleRecord.id)).all()
            else:
                sample_set = self._set(session, set_name)
                records = session.exec(
                    select(SampleRecord)
                    .join(SampleSetMember, SampleSetMember.sample_id == SampleRecord.id)
                    .where(SampleSetMember.set_id == sample_set.id)
                    .order_by(SampleSetMember.position)
                ).all()
            return [self._sample_info(r) for r in records]

    def sample(self, sample_id: int) -> SampleInfo:
        with self.session() as session:
            record = session.get(SampleRecord, sample_id)
            if record is None:
                raise NotFound(f"no sample with id {sample_id}")
            return self._sample_info(record)

    def set_sample_ids(self, set_name: str) -> list[int]:
        """The set's sample ids in set order."""
        with self.session() as session:
            sample_set = self._set(session, set_name)
            return list(session.exec(
                select(SampleSetMember.sample_id).where(SampleSetMember.set_id == sample_set.id)
                .order_by(SampleSetMember.position)
            ).all())

    def find_identical_run(self, config_hash: str, sample_set: str, eval_config: dict, sample_ids: list[int]) -> int | None:
        """The newest run with this configuration hash, evaluation settings and exactly these
        samples that finished cleanly or is still queued or running (a sweep reuses it)."""
        with self.session() as session:
            candidates = session.exec(
                select(RunRecord).where(
                    RunRecord.config_hash == config_hash, RunRecord.sample_set == sample_set,
                    RunRecord.status.in_([RunStatus.FINISHED, RunStatus.RUNNING, RunStatus.QUEUED]),
                ).order_by(RunRecord.id.desc())
            ).all()
            for run in candidates:
                if run.eval_config != eval_config:
                    continue
                members = session.exec(
                    select(RunSampleRecord.sample_id).where(RunSampleRecord.run_id == run.id)
                    .order_by(RunSampleRecord.position)
                ).all()
                if list(members) == list(sample_ids):
                    return run.id
        return None

    def sample_set_names(self, sample_id: int) -> list[str]:
        with self.session() as session:
            return list(
                session.exec(
                    select(SampleSetRecord.name)
                    .join(SampleSetMember, SampleSetMember.set_id == SampleSetRecord.id)
                    .where(SampleSetMember.sample_id == sample_id)
                    .order_by(SampleSetRecord.name)
                ).all()
            )

    def _set(self, session: Session, name: str) -> SampleSetRecord:
        found = session.exec(select(SampleSetRecord).where(SampleSetRecord.name == name)).first()
        if found is None:
            known = ", ".join(session.exec(select(SampleSetRecord.name)).all()) or "none yet"
            raise NotFound(f"no sample set named {name!r} (known: {known}); import one with `inpaint-tui samples import`")
        return found

    def _sample_info(self, record: SampleRecord) -> SampleInfo:
        return SampleInfo(
            id=record.id,
            key=record.key,
            name=record.name,
            prompt=record.prompt,
            image_path=self.path(record.image_path),
            mask_path=self.path(record.mask_path),
            reference_path=self.path(record.reference_path),
            width=record.width,
            height=record.height,
            source=record.source,
            meta=dict(record.meta),
        )

    # --- runs -----------------------------------------------------------------------------

    def create_run(self, spec: NewRun, seeds: dict[int, int], *, claimed_by: int | None = None) -> int:
        """Queue a run over its sample set; `seeds` maps sample id to that sample's seed.
        The run and its sample rows appear in one transaction, so no worker claims half a run.
        `claimed_by`: created already claimed (claim 1) by that worker, for execution now."""
        with self.session() as session:
            members = session.exec(
                select(SampleSetMember).where(SampleSetMember.set_id == self._set(session, spec.sample_set).id)
                .order_by(SampleSetMember.position)
            ).all()
            if not members:
                raise StoreError(f"sample set {spec.sample_set!r} is empty")
            run = RunRecord(**vars(spec), status=RunStatus.QUEUED, sample_count=len(members))
            if claimed_by is not None:
                run.status, run.worker_id, run.claim = RunStatus.RUNNING, claimed_by, 1
            session.add(run)
            session.flush()
            for position, member in enumerate(members):
                session.add(
                    RunSampleRecord(run_id=run.id, sample_id=member.sample_id, position=position, seed=seeds[member.sample_id])
                )
            session.commit()
            return run.id

    def set_run_device(self, run_id: int, device: str, *, threads: int | None = None,
                       claim: int | None = None) -> int | None:
        """Record where a claimed run executes, and when it first started. `threads` (the
        CPU thread count the worker would use) is recorded in the run's options the first
        time only; returns the recorded count, which a resumed run must use for the same
        pixels (reductions differ across thread counts)."""
        with self.session() as session:
            run = self._held(session, run_id, claim)
            run.device = device
            run.started_at = run.started_at or utcnow()
            if threads is not None and "threads" not in run.options:
                run.options = {**run.options, "threads": threads}
            recorded = run.options.get("threads")
            session.commit()
            return recorded

    def pending_samples(self, run_id: int) -> list[tuple[RunSampleInfo, SampleInfo]]:
        """The run's samples not yet done (pending, interrupted while running, or failed
        earlier), in run order, each with the sample it works on."""
        with self.session() as session:
            self._run(session, run_id)
            rows = session.exec(
                select(RunSampleRecord, SampleRecord)
                .join(SampleRecord, SampleRecord.id == RunSampleRecord.sample_id)
                .where(RunSampleRecord.run_id == run_id, RunSampleRecord.status != SampleStatus.DONE)
                .order_by(RunSampleRecord.position)
            ).all()
            return [(self._run_sample_info(rs, s.name, {}), self._sample_info(s)) for rs, s in rows]

    def mark_sample_running(self, run_id: int, sample_id: int, *, claim: int | None = None) -> None:
        with self.session() as session:
            self._held(session, run_id, claim)
            row = self._run_sample(session, run_id, sample_id)
            row.status = SampleStatus.RUNNING
            row.started_at = utcnow()
            row.attempts += 1
            session.commit()

    def reset_sample(self, run_id: int, sample_id: int, *, claim: int | None = None) -> None:
        """An interrupted sample goes back to pending (nothing of it was recorded)."""
        with self.session() as session:
            self._held(session, run_id, claim)
            row = self._run_sample(session, run_id, sample_id)
            if row.status == SampleStatus.RUNNING:
                row.status = SampleStatus.PENDING
                session.commit()

    def record_sample(
        self,
        run_id: int,
        sample_id: int,
        *,
        image_path: str | None,
        metrics: dict[str, float],
        seconds: float | None,
        width: int | None,
        height: int | None,
        error: str | None = None,
        traceback: str | None = None,
        animation_path: str | None = None,
        claim: int | None = None,
    ) -> None:
        """Store one sample's outcome and its metrics in one short transaction (replacing
        any earlier attempt's values, so a retried sample never has two sets of metrics).
        With `claim`, raises ClaimLost instead of writing when the run is no longer held."""
        with self.session() as session:
            self._held(session, run_id, claim)
            row = self._run_sample(session, run_id, sample_id)
            row.animation_path = animation_path
            row.status = SampleStatus.FAILED if error else SampleStatus.DONE
            row.image_path = image_path
            row.error = error
            row.traceback = traceback
            row.seconds = seconds
            row.width = width
            row.height = height
            row.finished_at = utcnow()
            session.exec(delete(MetricRecord).where(MetricRecord.run_sample_id == row.id))
            for name, value in metrics.items():
                session.add(MetricRecord(run_id=run_id, run_sample_id=row.id, name=name,
                                         value=None if value is None else float(value)))
            session.commit()

    def finish_run(
        self, run_id: int, *, error: str | None = None, cancelled: bool = False, claim: int | None = None
    ) -> str:
        """Close a run; its status follows from its samples unless it failed or was cancelled.
        Its live progress row goes (the preview file with it)."""
        with self.session() as session:
            run = self._held(session, run_id, claim)
            counts = dict(
                session.exec(
                    select(RunSampleRecord.status, func.count())
                    .where(RunSampleRecord.run_id == run_id)
                    .group_by(RunSampleRecord.status)
                ).all()
            )
            if cancelled:
                run.status = RunStatus.CANCELLED
            elif error is not None:
                run.status = RunStatus.FAILED
            elif counts.get(SampleStatus.DONE, 0) == run.sample_count:
                run.status = RunStatus.FINISHED
            elif counts.get(SampleStatus.DONE, 0) == 0:
                run.status = RunStatus.FAILED
                error = error or "every sample failed"
            else:
                run.status = RunStatus.FINISHED_WITH_ERRORS
            run.error = error
            run.finished_at = utcnow()
            run.cancel_requested = False
            session.exec(
                update(RunSampleRecord)
                .where(RunSampleRecord.run_id == run_id, RunSampleRecord.status == SampleStatus.RUNNING)
                .values(status=SampleStatus.PENDING)
            )
            progress = session.get(RunProgressRecord, run_id)
            if progress is not None:
                if progress.preview_path:
                    self.data_dir.joinpath(progress.preview_path).unlink(missing_ok=True)
                session.delete(progress)
            session.commit()
            return run.status

    def _run(self, session: Session, run_id: int) -> RunRecord:
        run = session.get(RunRecord, run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id}")
        return run

    def _run_sample(self, session: Session, run_id: int, sample_id: int) -> RunSampleRecord:
        row = session.exec(
            select(RunSampleRecord).where(RunSampleRecord.run_id == run_id, RunSampleRecord.sample_id == sample_id)
        ).first()
        if row is None:
            raise NotFound(f"run {run_id} has no sample {sample_id}")
        return row

    def _run_sample_info(self, row: RunSampleRecord, sample_name: str, metrics: dict[str, float]) -> RunSampleInfo:
        return RunSampleInfo(
            sample_id=row.sample_id,
            sample_name=sample_name,
            position=row.position,
            seed=row.seed,
            status=row.status,
            image_path=self.path(row.image_path),
            error=row.error,
            traceback=row.traceback,
            seconds=row.seconds,
            metrics=metrics,
            attempts=row.attempts,
            animation_path=self.path(row.animation_path),
        )

    def runs(
        self,
        run_ids: Sequence[int] | None = None,
        *,
        statuses: Sequence[str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        newer_than: int | None = None,
    ) -> list[RunInfo]:
        """All runs (or those named / with these statuses / with ids above `newer_than`),
        oldest first unless `newest_first`, at most `limit`, with live progress where running."""
        with self.session() as session:
            query = select(RunRecord.__table__).order_by(RunRecord.id.desc() if newest_first else RunRecord.id)
            if run_ids is not None:
                query = query.where(RunRecord.id.in_(list(run_ids)))
            if statuses is not None:
                query = query.where(RunRecord.status.in_(list(statuses)))
            if newer_than is not None:
                query = query.where(RunRecord.id > newer_than)
            if limit is not None:
                query = query.limit(limit)
            records = session.connection().execute(query).all()
            ids = [r.id for r in records]
            everything = run_ids is None and statuses is None and limit is None and newer_than is None
            counts = self._status_counts(session, select(RunRecord.id).scalar_subquery() if everything else ids)
            progress = self._progress_by_run(session, [r.id for r in records if r.status == RunStatus.RUNNING])
            return [self._run_info(r, counts.get(r.id, {}), progress.get(r.id)) for r in records]

    def run(self, run_id: int) -> RunInfo:
        with self.session() as session:
            record = self._run(session, run_id)
            return self._run_info(record, self._status_counts(session, [run_id]).get(run_id, {}),
                                  self._progress_by_run(session, [run_id]).get(run_id))

    def run_detail(self, run_id: int) -> RunDetail:
        with self.session() as session:
            record = self._run(session, run_id)
            run = self._run_info(record, self._status_counts(session, [run_id]).get(run_id, {}),
                                 self._progress_by_run(session, [run_id]).get(run_id))
            per_sample: dict[int, dict[str, float]] = defaultdict(dict)
            for metric in session.exec(
                select(MetricRecord).where(MetricRecord.run_id == run_id)
            ).all():
                if metric.value is not None:
                    per_sample[metric.run_sample_id][metric.name] = metric.value
            rows = session.exec(
                select(RunSampleRecord, SampleRecord.name)
                .join(SampleRecord, SampleRecord.id == RunSampleRecord.sample_id)
                .where(RunSampleRecord.run_id == run_id)
                .order_by(RunSampleRecord.position)
            ).all()
            samples = [self._run_sample_info(rs, name, per_sample.get(rs.id, {})) for rs, name in rows]
            means, summaries = self._run_metrics(session, [run_id])
            return RunDetail(run=run, samples=samples, metrics=means.get(run_id, {}), summaries=summaries.get(run_id, {}))

    def annotate_run(self, run_id: int, *, tags: Sequence[str] | None = None, note: str | None = None) -> None:
        """Set a run's tags (replacing them; sorted, without duplicates) and/or its note."""
        with self.session() as session:
            run = self._run(session, run_id)
            if tags is not None:
                cleaned = sorted({tag.strip() for tag in tags if tag.strip()})
                bad = [tag for tag in cleaned if any(c.isspace() for c in tag) or "," in tag]
                if bad:
                    raise StoreError(f"tags are single words without commas: {', '.join(map(repr, bad))}")
                run.tags = cleaned
            if note is not None:
                run.note = note.strip()
            session.commit()

    def _status_counts(self, session: Session, run_ids) -> dict[int, dict[str, int]]:
        """{run id: {sample status: count}}; `run_ids` is a list or a subquery."""
        counts: dict[int, dict[str, int]] = defaultdict(dict)
        if isinstance(run_ids, list) and not run_ids:
            return counts
        for run_id, status, count in session.connection().execute(
            select(RunSampleRecord.run_id, RunSampleRecord.status, func.count())
            .where(RunSampleRecord.run_id.in_(run_ids))
            .group_by(RunSampleRecord.run_id, RunSampleRecord.status)
        ).all():
            counts[run_id][status] = count
        return counts

    def _run_info(self, record: RunRecord, counts: dict[str, int], progress=None) -> RunInfo:
        return RunInfo(
            id=record.id,
            technique=record.technique,
            params=dict(record.params),
            model=record.model,
            seed=record.seed,
            steps=record.steps,
            guidance=record.guidance,
            negative_prompt=record.negative_prompt,
            sample_set=record.sample_set,
            status=record.status,
            error=record.error,
            config_hash=record.config_hash,
            versions=dict(record.versions),
            git_commit=record.git_commit,
            device=record.device,
            command=record.command,
            eval_config=dict(record.eval_config),
            sample_count=record.sample_count,
            done_count=counts.get(SampleStatus.DONE, 0),
            failed_count=counts.get(SampleStatus.FAILED, 0),
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            options=dict(record.options),
            worker_id=record.worker_id,
            cancel_requested=record.cancel_requested,
            progress=progress,
            tags=list(record.tags),
            note=record.note,
        )

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

    def run_count(self) -> int:
        with self.session() as session:
            return session.exec(select(func.count()).select_from(RunRecord)).one()

    def run_metric_values(self, run_ids: Sequence[int]) -> dict[int, dict[str, float]]:
        """Per run, its per-run metric values (stored, else the live mean of its samples)."""
        with self.session() as session:
            return dict(self._run_metrics(session, list(run_ids))[0])

    def run_metrics(
        self, run_ids: Sequence[int]
    ) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, MetricSummary]]]:
        """Per run, its per-run metric values and their summaries (intervals where stored)."""
        with self.session() as session:
            values, summaries = self._run_metrics(session, list(run_ids))
            return dict(values), dict(summaries)

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
        limit: int | None = None,
    ) -> list[LeaderboardRow]:
        """Runs ranked by `metric` (best first given its direction, ties by run id); runs
        without the metric come last. Only finished runs unless `include_unfinished`.

        `limit` returns the first rows of that same ranking, ranked by SQLite on the stored
        per-run values, so the top of 10 000 runs costs what a few rows cost (a screen shows
        them while the whole ranking loads). Unfinished runs have live means computed here,
        so with `include_unfinished` the whole ranking is built and cut."""
        with self.session() as session:
            table = RunRecord.__table__.c
            query = select(table.id, table.technique, table.params, table.model, table.steps, table.seed,
                           table.guidance, table.sample_set, table.status)  # plain rows: see _run_metrics
            if sample_set is not None:
                self._set(session, sample_set)
                query = query.where(RunRecord.sample_set == sample_set)
            if not include_unfinished:
                query = query.where(RunRecord.status.in_([RunStatus.FINISHED, RunStatus.FINISHED_WITH_ERRORS]))
            chosen = query.with_only_columns(RunRecord.id).scalar_subquery()
            if limit is not None and not include_unfinished:
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


def safe_file_stem(name: str) -> str:
    """`name` as a portable file-name part (letters, digits, - _ . only; at most 80 characters)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "sample"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves a truncated image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
