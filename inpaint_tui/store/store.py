"""The store: every read and write the faces and the jobs layer make, as short transactions
returning plain views.

Split by area: samples (store/samples.py), metrics and the leaderboard (store/metrics.py),
filtered and sorted run queries (store/query.py), the queue (store/queue.py) and sweeps
(store/sweeps.py) are mixins; this file keeps set-up,
sessions, run files and the run lifecycle.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from sqlalchemy import delete, func, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

# NotFound lives in db beside StoreError, so the mixins need not import this module (no cycle);
# re-exported here for callers that name it from store.store.
from inpaint_tui.store.db import (
    NotFound,
    StoreError,
    data_dir_for,
    database_url,
    describe,
    is_unusable,
    make_engine,
    migrate,
)
from inpaint_tui.store.data_root import check_exists, no_data_root, registered_path, verify_or_register
from inpaint_tui.store.files import DataFiles, safe_file_stem
from inpaint_tui.store.metrics import IDS_PER_QUERY, MetricsMixin
from inpaint_tui.store.query import QueryMixin
from inpaint_tui.store.queue import QueueMixin
from inpaint_tui.store.judging import JudgingMixin
from inpaint_tui.store.samples import SampleMixin
from inpaint_tui.store.sweeps import SweepMixin
from inpaint_tui.store.tables import (
    MetricRecord,
    RunProgressRecord,
    RunRecord,
    RunSampleRecord,
    RunStatus,
    SampleRecord,
    SampleSetMember,
    SampleStatus,
    utcnow,
)
from inpaint_tui.store.views import NewRun, RunDetail, RunInfo, RunSampleInfo, SampleInfo

__all__ = ["NotFound", "Store", "safe_file_stem"]


class Store(SampleMixin, MetricsMixin, QueryMixin, QueueMixin, SweepMixin, JudgingMixin):
    def __init__(self, db: str | os.PathLike | None = None, *, data_dir: str | os.PathLike | None = None) -> None:
        self.url = database_url(db)
        given = data_dir_for(self.url, data_dir)
        self.engine = make_engine(self.url)
        self._data_dir_checked = False
        self._claim_lock = threading.Lock()  # check_claim's connection is one per store, any thread may check
        migrate(self.engine)  # raises StoreError naming the database for every way it cannot be used
        # A server database without --data-dir takes the registered root's path; with none
        # registered, commands that touch no image still work and the others fail on first use.
        self._data_dir = given if given is not None else registered_path(self.engine)
        self._files = None if self._data_dir is None else DataFiles(self._data_dir)
        self.data_root_id: str | None = None  # known once require_writable_data_dir has checked the root

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise no_data_root(self.url)
        return self._data_dir

    @property
    def files(self) -> DataFiles:
        """The data root's files (the one interface to them: store/files.py)."""
        if self._files is None:
            raise no_data_root(self.url)
        return self._files

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
        except DBAPIError as error:
            # Damage found by a later read, or a write to a read-only file: one line naming the
            # database. Transient errors (locked, connection lost) pass on for callers that retry.
            if is_unusable(error):
                raise StoreError(describe(self.url, error)) from None
            raise

    def require_writable_data_dir(self) -> Path:
        """The data folder, created if needed, after proving a file can be written in it and
        that it is this database's data root (registering it if the database has none yet;
        once per store): called before a command's first write there, so an unusable folder
        is one line naming it rather than an OSError in the middle of an import or a run."""
        if self._data_dir_checked:
            return self.data_dir
        folder = self.data_dir
        if folder.exists() and not folder.is_dir():
            raise StoreError(f"data folder {folder} is a file, not a folder: pass --data-dir a folder "
                             "(or move the file away)")
        check_exists(self.engine, self.url, folder)
        probe = folder / f".write-check.{os.getpid()}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            blocker = next((parent for parent in folder.parents if parent.exists() and not parent.is_dir()), None)
            if blocker is not None:
                raise StoreError(f"data folder {folder} cannot be created: {blocker} is a file, not a folder; "
                                 "pass --data-dir another folder") from None
            raise StoreError(f"cannot write to data folder {folder} ({error.strerror or error}): pass --data-dir a "
                             "writable folder, or fix its permissions or free space") from None
        self.data_root_id = verify_or_register(self.engine, self.url, folder)
        self._data_dir_checked = True
        return folder

    def close(self) -> None:
        self.close_claim_reader()
        self.engine.dispose()

    # --- files ----------------------------------------------------------------------------

    def path(self, relative: str | None) -> Path | None:
        return None if relative is None else self.files.local_path(relative)

    @staticmethod
    def output_name(position: int, sample_name: str, extension: str = "png") -> str:
        """File name of a run's output for one sample (run order first, so `ls` sorts)."""
        return f"{position:04d}-{safe_file_stem(sample_name)}.{extension}"

    def save_run_file(self, run_id: int, name: str, data: bytes) -> str:
        """Write a file into the run's folder atomically; returns its relative path."""
        relative = f"runs/{run_id}/{name}"
        self.files.write_bytes(relative, data)
        return relative

    def save_output(self, run_id: int, position: int, sample_name: str, png: bytes) -> str:
        return self.save_run_file(run_id, self.output_name(position, sample_name), png)

    # --- runs -----------------------------------------------------------------------------

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

    def create_run(self, spec: NewRun, seeds: dict[int, int], *, claimed_by: int | None = None) -> int:
        """Queue a run over its sample set; `seeds` maps sample id to that sample's seed.
        The run and its sample rows appear in one transaction, so no worker claims half a run.
        `claimed_by`: created already claimed (claim 1) by that worker, for execution now."""
        self.require_writable_data_dir()  # a run writes outputs there: refuse before queueing one
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
                    self.files.remove(progress.preview_path)
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
        return self.run_details([run_id])[0]

    def run_details(self, run_ids: Sequence[int]) -> list[RunDetail]:
        """Each run's detail (its samples, their metrics, its summaries), in the order asked,
        in seven queries per IDS_PER_QUERY runs (`export` of 10 000 runs made seven a run). Raises
        NotFound naming the first id that is no run."""
        run_ids = list(run_ids)
        details: dict[int, RunDetail] = {}
        with self.session() as session:
            connection = session.connection()  # core rows: ORM objects for every sample cost seconds
            distinct = list(dict.fromkeys(run_ids))
            for start in range(0, len(distinct), IDS_PER_QUERY):
                chunk = distinct[start:start + IDS_PER_QUERY]
                records = connection.execute(select(RunRecord.__table__).where(RunRecord.id.in_(chunk))).all()
                counts = self._status_counts(session, chunk)
                progress = self._progress_by_run(session, chunk)
                metric = MetricRecord.__table__.c
                per_sample: dict[int, dict[str, float]] = defaultdict(dict)
                for run_sample_id, name, value in connection.execute(
                    select(metric.run_sample_id, metric.name, metric.value)
                    .where(metric.run_id.in_(chunk), metric.value.is_not(None))
                ).all():
                    per_sample[run_sample_id][name] = value
                samples: dict[int, list[RunSampleInfo]] = defaultdict(list)
                for row in connection.execute(
                    select(RunSampleRecord.__table__, SampleRecord.name.label("sample_name"))
                    .join(SampleRecord, SampleRecord.id == RunSampleRecord.sample_id)
                    .where(RunSampleRecord.run_id.in_(chunk))
                    .order_by(RunSampleRecord.run_id, RunSampleRecord.position)
                ).all():
                    samples[row.run_id].append(self._run_sample_info(row, row.sample_name, per_sample.get(row.id, {})))
                means, summaries = self._run_metrics(session, chunk)
                for record in records:
                    run = self._run_info(record, counts.get(record.id, {}), progress.get(record.id))
                    details[record.id] = RunDetail(run=run, samples=samples.get(record.id, []),
                                                   metrics=means.get(record.id, {}),
                                                   summaries=summaries.get(record.id, {}))
        missing = next((run_id for run_id in run_ids if run_id not in details), None)
        if missing is not None:
            raise NotFound(f"no run with id {missing}")
        return [details[run_id] for run_id in run_ids]

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

    def run_count(self) -> int:
        with self.session() as session:
            return session.exec(select(func.count()).select_from(RunRecord)).one()
