"""The run queue in the store: workers and their heartbeats, atomic claims, cancellation,
re-queueing of runs whose worker died, and live progress.

Workers whose process is visibly gone (same kernel boot and PID namespace as the reaper:
`host_id()`, not the hostname, which containers and cloned boxes share) are declared lost at
once; elsewhere a heartbeat silent for `stale_after` seconds decides. Heartbeats, their
staleness and progress times are the database's clock (`server_epoch`), never a client's.

On PostgreSQL a claim locks its candidate row with FOR UPDATE SKIP LOCKED, so concurrent
claimers take different runs instead of queueing behind one; SQLite has one writer at a time
and relies on the conditional update alone.

Every state change is one short transaction, and every write a worker makes about a run is
conditional on the run still carrying that worker's claim (a counter bumped by each claim):
a worker wrongly presumed dead finds its claim gone and stops, so no sample is executed
twice into the store.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from pathlib import Path

from sqlalchemy import bindparam, case, delete, or_, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import select

from inpaint_tui.store.db import StoreError, server_epoch, without_disk_sync
from inpaint_tui.store.tables import (
    RunProgressRecord,
    RunRecord,
    RunSampleRecord,
    RunStatus,
    SampleStatus,
    WorkerRecord,
    WorkerStatus,
    utcnow,
)
from inpaint_tui.store.views import RunProgressInfo, WorkerInfo


class ClaimLost(StoreError):
    """The run is no longer this worker's (re-queued after a stale heartbeat, or deleted)."""


class RunBusy(StoreError):
    """The run is being executed by a live worker; the message names it."""


class RunControl:
    """What a worker must do about its run at a step boundary."""

    CONTINUE = "continue"
    CANCEL = "cancel"
    LOST = "lost"


_CLAIM_CHECK = select(RunRecord.claim, RunRecord.status, RunRecord.cancel_requested).where(
    RunRecord.id == bindparam("run_id"))


class QueueMixin:
    """Store methods for the queue; mixed into `Store` (needs `session`, `engine`, `_run`)."""

    _claim_reader = None  # the connection of check_claim, opened on first use (guarded by `_claim_lock`)

    # --- workers ---------------------------------------------------------------------------

    def register_worker(
        self,
        kind: str,
        *,
        device: str | None = None,
        pid: int | None = None,
        log_path: str | os.PathLike | None = None,
        status: str = WorkerStatus.IDLE,
        worker_id: int | None = None,
        data_root: str | os.PathLike | None = None,
        data_root_id: str | None = None,
    ) -> int:
        """Add a worker row (or adopt one pre-registered by the process that spawned it)."""
        with self.session() as session:
            now = self._now(session)
            record = session.get(WorkerRecord, worker_id) if worker_id is not None else None
            if record is None:
                record = WorkerRecord(kind=kind, host=socket.gethostname(), started_at=now, heartbeat_at=now)
                session.add(record)
            if pid is not None:  # the pid and where it means something go together
                record.pid, record.host_id, record.host = pid, host_id(), socket.gethostname()
            record.device = device or record.device
            record.log_path = str(log_path) if log_path is not None else record.log_path
            record.data_root = str(data_root) if data_root is not None else record.data_root
            record.data_root_id = data_root_id or record.data_root_id
            if record.status != WorkerStatus.STOPPING:  # a stop asked before it started still holds
                record.status = status
            record.heartbeat_at = now
            record.stopped_at = None
            session.commit()
            return record.id

    def heartbeat(self, worker_id: int, **fields) -> bool:
        """Refresh a worker's heartbeat (and status/run_id/model if given). False when the
        worker was meanwhile declared lost (it must then stop touching its run) or asked to
        stop (it must stop at the next step; its heartbeat still counts until it has)."""
        with self.session() as session:
            record = session.get(WorkerRecord, worker_id)
            if record is None or record.status not in WorkerStatus.LIVE:
                return False
            stopping = record.status == WorkerStatus.STOPPING
            if stopping:
                fields.pop("status", None)  # the request outlives the worker's own status updates
            without_disk_sync(session)  # rewritten every beat: a lost one is replaced by the next
            record.heartbeat_at = server_epoch(session.get_bind().dialect.name)  # evaluated in the UPDATE
            for name, value in fields.items():
                setattr(record, name, value)
            session.commit()
            return not stopping

    def request_worker_stop(self, worker_id: int) -> WorkerInfo:
        """Ask a live worker to stop, wherever it runs (another box, a Ray actor): it sees the
        request at its next heartbeat and stops as on SIGTERM (its run goes back to the queue)."""
        with self.session() as session:
            record = session.get(WorkerRecord, worker_id)
            if record is None:
                raise StoreError(f"no worker {worker_id} (see inpaint-tui workers --all)")
            if record.status not in WorkerStatus.LIVE:
                raise StoreError(f"worker {worker_id} is not running (status {record.status})")
            record.status = WorkerStatus.STOPPING
            session.commit()
            return self._worker_info(record)

    def stop_worker(self, worker_id: int) -> None:
        with self.session() as session:
            record = session.get(WorkerRecord, worker_id)
            if record is not None:
                if record.status in WorkerStatus.LIVE:
                    record.status = WorkerStatus.STOPPED
                record.run_id = None
                record.stopped_at = self._now(session)
                session.commit()

    def workers(self, *, include_ended: bool = False) -> list[WorkerInfo]:
        with self.session() as session:
            query = select(WorkerRecord).order_by(WorkerRecord.id)
            if not include_ended:
                query = query.where(WorkerRecord.status.in_(WorkerStatus.LIVE))
            return [self._worker_info(r) for r in session.exec(query).all()]

    def worker(self, worker_id: int) -> WorkerInfo | None:
        with self.session() as session:
            record = session.get(WorkerRecord, worker_id)
            return None if record is None else self._worker_info(record)

    @staticmethod
    def _now(session) -> float:
        """The database's clock, epoch seconds (see `server_epoch`)."""
        return session.exec(select(server_epoch(session.get_bind().dialect.name))).one()

    def _worker_info(self, record: WorkerRecord) -> WorkerInfo:
        return WorkerInfo(
            id=record.id, kind=record.kind, host=record.host, pid=record.pid, device=record.device,
            status=record.status, run_id=record.run_id, model=record.model,
            log_path=Path(record.log_path) if record.log_path else None, started_at=record.started_at,
            heartbeat_at=record.heartbeat_at, stopped_at=record.stopped_at,
            data_root=Path(record.data_root) if record.data_root else None, data_root_id=record.data_root_id,
        )

    def reap_stale_workers(self, stale_after: float) -> list[int]:
        """Declare workers silent for `stale_after` seconds lost and put their runs (and
        running runs without a live worker) back in the queue. Returns the re-queued runs."""
        with self.session() as session:
            now = self._now(session)
            session.exec(
                update(WorkerRecord)
                .where(WorkerRecord.status.in_(WorkerStatus.LIVE), WorkerRecord.heartbeat_at < now - stale_after)
                .values(status=WorkerStatus.LOST, stopped_at=now, run_id=None)
            )
            # Where this process can see the worker's pid, a dead process is certain at once.
            for record in session.exec(
                select(WorkerRecord).where(WorkerRecord.status.in_(WorkerStatus.LIVE),
                                           WorkerRecord.host_id == host_id(), WorkerRecord.pid.is_not(None))
            ).all():
                if not _process_exists(record.pid):
                    record.status, record.stopped_at, record.run_id = WorkerStatus.LOST, now, None
            live = select(WorkerRecord.id).where(WorkerRecord.status.in_(WorkerStatus.LIVE))
            orphans = session.exec(
                select(RunRecord.id).where(
                    RunRecord.status == RunStatus.RUNNING,
                    or_(RunRecord.worker_id.is_(None), RunRecord.worker_id.not_in(live)),
                )
            ).all()
            for run_id in orphans:
                self._requeue(session, run_id)
            session.commit()
            return list(orphans)

    # --- claims -----------------------------------------------------------------------------

    def claim_next_run(self, worker_id: int, *, prefer_model: str | None = None,
                       take_back_held: bool = False) -> tuple[int, int] | None:
        """Atomically take the oldest queued run (one using `prefer_model` first, so a loaded
        model is reused); returns (run id, claim) or None when the queue is empty.
        `take_back_held`: first return a run already running under this worker, for a worker
        holding none whose last claim failed: its commit may have succeeded with the answer
        lost on a dropped connection, and the run would otherwise stay running unexecuted."""
        with self.session() as session:
            held = None if not take_back_held else session.exec(
                select(RunRecord.id, RunRecord.claim)
                .where(RunRecord.status == RunStatus.RUNNING, RunRecord.worker_id == worker_id)
                .order_by(RunRecord.id).limit(1)
            ).first()
            if held is not None:
                return held[0], held[1]
        while True:
            with self.session() as session:
                order = [RunRecord.id]
                if prefer_model is not None:
                    order.insert(0, (RunRecord.model != prefer_model))
                # SKIP LOCKED (PostgreSQL; SQLite renders no locking clause): a run another
                # claimer is taking is passed over, not waited for.
                candidate = session.exec(
                    select(RunRecord.id).where(RunRecord.status == RunStatus.QUEUED).order_by(*order).limit(1)
                    .with_for_update(skip_locked=True)
                ).first()
                if candidate is None:
                    return None
                claimed = self._take(session, candidate, worker_id)
                session.commit()
                if claimed is not None:
                    return candidate, claimed
            # another worker took it between the select and the update: look again

    def claim_run(self, run_id: int, worker_id: int) -> int:
        """Take one queued run by id (foreground execution, `runs resume`); returns the claim."""
        with self.session() as session:
            claim = self._take(session, run_id, worker_id)
            session.commit()
        if claim is None:
            raise RunBusy(f"run {run_id} is not queued any more (status {self.run(run_id).status})")
        return claim

    def _take(self, session, run_id: int, worker_id: int) -> int | None:
        # One conditional UPDATE: exactly one claimer matches (SQLite serialises writers; PostgreSQL
        # makes a second UPDATE wait for the first and re-check the status it wrote).
        result = session.exec(
            update(RunRecord)
            .where(RunRecord.id == run_id, RunRecord.status == RunStatus.QUEUED)
            .values(status=RunStatus.RUNNING, worker_id=worker_id, claim=RunRecord.claim + 1)
        )
        if result.rowcount != 1:
            return None
        session.exec(
            update(WorkerRecord).where(WorkerRecord.id == worker_id)
            # A stop requested while it was claiming stays requested: it hands the run back.
            .values(status=case((WorkerRecord.status == WorkerStatus.STOPPING, WorkerStatus.STOPPING),
                                else_=WorkerStatus.RUNNING),
                    run_id=run_id, heartbeat_at=server_epoch(session.get_bind().dialect.name))
        )
        return session.exec(select(RunRecord.claim).where(RunRecord.id == run_id)).one()

    def check_claim(self, run_id: int, claim: int) -> str:
        """A `RunControl` value: carry on, stop because cancelled, or stop because lost.
        One indexed read, cheap enough for every denoising step: on a connection kept for it
        in autocommit mode, so a check is one round trip (no pool checkout with its liveness
        ping, no BEGIN/ROLLBACK); a connection that fails is dropped and the next check opens
        another."""
        with self._claim_lock:
            if self._claim_reader is None:
                self._claim_reader = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                row = self._claim_reader.execute(_CLAIM_CHECK, {"run_id": run_id}).first()
            except DBAPIError:
                self.close_claim_reader()
                raise
        if row is None or row.claim != claim or row.status != RunStatus.RUNNING:
            return RunControl.LOST
        return RunControl.CANCEL if row.cancel_requested else RunControl.CONTINUE

    def close_claim_reader(self) -> None:
        """Close the connection `check_claim` keeps (Store.close does)."""
        reader, self._claim_reader = self._claim_reader, None
        if reader is not None:
            try:
                reader.close()
            except DBAPIError:  # already broken: nothing left to close cleanly
                reader.invalidate()

    def _held(self, session, run_id: int, claim: int | None) -> RunRecord:
        """The run, checked to still carry `claim` (None: unchecked, single-process use)."""
        run = self._run(session, run_id)
        if claim is not None and (run.claim != claim or run.status != RunStatus.RUNNING):
            raise ClaimLost(f"run {run_id} is no longer held by this worker")
        return run

    def release_run(self, run_id: int, claim: int) -> None:
        """Hand a run back to the queue (its worker is stopping); finished samples stay."""
        with self.session() as session:
            self._held(session, run_id, claim)
            self._requeue(session, run_id)
            session.commit()

    def _requeue(self, session, run_id: int) -> None:
        session.exec(
            update(RunRecord).where(RunRecord.id == run_id)
            .values(status=RunStatus.QUEUED, worker_id=None, finished_at=None)
        )
        session.exec(
            update(RunSampleRecord)
            .where(RunSampleRecord.run_id == run_id, RunSampleRecord.status == SampleStatus.RUNNING)
            .values(status=SampleStatus.PENDING)
        )
        session.exec(delete(RunProgressRecord).where(RunProgressRecord.run_id == run_id))

    # --- user actions -------------------------------------------------------------------------

    def request_cancel(self, run_id: int) -> str:
        """Cancel a run: a queued one at once, a running one at its worker's next step
        (status stays running until then). Returns the status after the request."""
        with self.session() as session:
            run = self._run(session, run_id)
            if run.status in RunStatus.ENDED:
                raise StoreError(f"run {run_id} has already ended ({run.status})")
            if run.status == RunStatus.QUEUED:
                run.status = RunStatus.CANCELLED
                run.finished_at = utcnow()
            else:
                run.cancel_requested = True
            session.commit()
            return run.status

    def requeue_for_resume(self, run_id: int, *, stale_after: float) -> None:
        """Put an ended or orphaned run back in the queue: unfinished samples (pending,
        interrupted, failed) will be redone with their recorded seeds; done ones stay."""
        self.reap_stale_workers(stale_after)
        with self.session() as session:
            run = self._run(session, run_id)
            if run.status == RunStatus.RUNNING:
                raise RunBusy(f"run {run_id} is running on worker {run.worker_id}; cancel it first "
                              f"(inpaint-tui runs cancel {run_id})")
            if run.status == RunStatus.FINISHED:
                raise StoreError(f"run {run_id} finished with every sample done: nothing to resume")
            self._requeue(session, run_id)
            run = self._run(session, run_id)
            run.cancel_requested = False
            run.error = None
            session.exec(
                update(RunSampleRecord)
                .where(RunSampleRecord.run_id == run_id, RunSampleRecord.status == SampleStatus.FAILED)
                .values(status=SampleStatus.PENDING)
            )
            session.commit()

    def delete_run(self, run_id: int, *, stale_after: float) -> int:
        """Delete a run's rows (samples, metrics, progress, sweep membership) and its files;
        returns the number of files removed. A run a live worker holds must be cancelled first."""
        self.reap_stale_workers(stale_after)
        with self.session() as session:
            run = self._run(session, run_id)
            if run.status == RunStatus.RUNNING:
                raise RunBusy(f"run {run_id} is running on worker {run.worker_id}; cancel it first "
                              f"(inpaint-tui runs cancel {run_id})")
            studies = self.studies_of_run(run_id)
            if studies:
                listed = ", ".join(map(str, studies))
                raise RunBusy(f"run {run_id} was shown to raters in judging stud{'ies' if len(studies) > 1 else 'y'} "
                              f"{listed}; their judgements would be lost with it (delete the study first: "
                              f"inpaint-tui judge delete {studies[0]})")
            session.delete(run)
            session.commit()
        return self.files.remove_tree(f"runs/{run_id}")

    # --- progress -------------------------------------------------------------------------------

    def write_progress(self, run_id: int, claim: int, worker_id: int, **fields) -> None:
        """Replace the run's progress row; ignored once the claim is gone."""
        with self.session() as session:
            without_disk_sync(session)  # rewritten a few times a second: the next one replaces a lost one
            self._held(session, run_id, claim)
            record = session.get(RunProgressRecord, run_id)
            if record is None:
                record = RunProgressRecord(run_id=run_id, phase=fields.get("phase", "loading"), updated_at=0.0)
                session.add(record)
            for name, value in fields.items():
                setattr(record, name, value)
            record.worker_id = worker_id
            record.updated_at = server_epoch(session.get_bind().dialect.name)  # evaluated in the write
            session.commit()

    def run_progress(self, run_id: int) -> RunProgressInfo | None:
        with self.session() as session:
            record = session.get(RunProgressRecord, run_id)
            return None if record is None else self._progress_info(record)

    def _progress_info(self, record: RunProgressRecord) -> RunProgressInfo:
        return RunProgressInfo(
            run_id=record.run_id, worker_id=record.worker_id, phase=record.phase, samples_done=record.samples_done,
            sample_count=record.sample_count, sample_position=record.sample_position, sample_name=record.sample_name,
            step=record.step, steps=record.steps, steps_per_second=record.steps_per_second,
            seconds_per_sample=record.seconds_per_sample, preview_path=self.path(record.preview_path),
            preview_step=record.preview_step, updated_at=record.updated_at,
        )

    def _progress_by_run(self, session, run_ids: list[int]) -> dict[int, RunProgressInfo]:
        if not run_ids:
            return {}
        records = session.exec(select(RunProgressRecord).where(RunProgressRecord.run_id.in_(run_ids))).all()
        return {r.run_id: self._progress_info(r) for r in records}


@functools.cache
def host_id() -> str:
    """Where a pid means something: this kernel boot and PID namespace (Linux), else the
    hostname and hardware address. Two boxes (or containers) sharing a hostname differ here,
    so one never declares the other's workers lost because their pids are absent locally."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return f"{socket.gethostname()}/{uuid.getnode():012x}"
    return f"{boot}/{namespace.removeprefix('pid:').strip('[]')}"


def _process_exists(pid: int) -> bool:
    """Whether `pid` is a live process. A zombie (killed, not yet reaped by its parent: where
    PID 1 does not reap, as in containers without an init) still answers `kill(pid, 0)`
    but will never heartbeat again, so it counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) state ...": comm may hold spaces and parentheses, so split at the last ')'.
            return stat.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):  # no /proc (macOS) or the process just went: kill() decided
        return False
