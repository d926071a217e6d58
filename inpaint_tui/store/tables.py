"""The schema. Every change goes through an Alembic migration in `migrations/versions/`;
a test checks that the migrations produce exactly these tables."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Boolean, Column, ForeignKey, Integer, String, UniqueConstraint, false
from sqlmodel import Field, SQLModel


# Seeds go up to 2^63-1 (engine.spec.MAX_SEED; per-sample seeds are 63-bit): 64-bit columns.
# SQLite's INTEGER is already 64-bit, so SQLite files keep it (migration 0006).
SEED = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class RunStatus:
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FINISHED_WITH_ERRORS = "finished_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ENDED = (FINISHED, FINISHED_WITH_ERRORS, FAILED, CANCELLED)
    # Ended runs `runs resume` can take up again (a finished run has nothing left to do).
    RESUMABLE = (FINISHED_WITH_ERRORS, FAILED, CANCELLED)


class SampleStatus:
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class SampleRecord(SQLModel, table=True):
    """An imported sample. Files live in the data folder under content-addressed names;
    `key` is the hash of pixels + mask + prompt + reference, so re-imports add nothing."""

    __tablename__ = "sample"

    id: Optional[int] = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True)
    name: str = Field(index=True)
    prompt: str
    image_path: str
    mask_path: str
    reference_path: Optional[str] = None
    width: int
    height: int
    source: str
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class SampleSetRecord(SQLModel, table=True):
    __tablename__ = "sample_set"

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class SampleSetMember(SQLModel, table=True):
    __tablename__ = "sample_set_member"

    set_id: int = Field(sa_column=Column(Integer, ForeignKey("sample_set.id", ondelete="CASCADE"), primary_key=True))
    sample_id: int = Field(sa_column=Column(Integer, ForeignKey("sample.id", ondelete="RESTRICT"), primary_key=True))
    position: int


class RunRecord(SQLModel, table=True):
    """One technique + parameters + model + seed over one sample set."""

    __tablename__ = "run"

    id: Optional[int] = Field(default=None, primary_key=True)
    technique: str = Field(index=True)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    model: str
    seed: int = Field(sa_column=Column(SEED, nullable=False))
    steps: int
    guidance: float
    negative_prompt: str = ""
    sample_set: str = Field(index=True)
    status: str = Field(default=RunStatus.QUEUED, index=True)
    error: Optional[str] = None
    config_hash: str = Field(index=True)
    versions: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    git_commit: Optional[str] = None
    device: Optional[str] = None
    command: Optional[str] = None
    eval_config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # How to execute, not what to compute (outside the configuration hash): requested
    # device/dtype, preview_every, animation.
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}"))
    sample_count: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    # The worker executing the run, and a counter bumped by every claim: a worker writes only
    # while the run still carries its claim, so one wrongly presumed dead cannot write twice.
    worker_id: Optional[int] = Field(default=None, index=True)
    claim: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    cancel_requested: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    # The researcher's own labels, never part of the configuration.
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]"))
    note: str = Field(default="", sa_column_kwargs={"server_default": ""})


class RunSampleRecord(SQLModel, table=True):
    """The outcome of one sample in one run; written in its own short transaction."""

    __tablename__ = "run_sample"
    __table_args__ = (UniqueConstraint("run_id", "sample_id", name="uq_run_sample"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(sa_column=Column(Integer, ForeignKey("run.id", ondelete="CASCADE"), nullable=False, index=True))
    sample_id: int = Field(sa_column=Column(Integer, ForeignKey("sample.id", ondelete="RESTRICT"), nullable=False))
    position: int
    seed: int = Field(sa_column=Column(SEED, nullable=False))
    status: str = Field(default=SampleStatus.PENDING)
    image_path: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    error: Optional[str] = None
    traceback: Optional[str] = None
    seconds: Optional[float] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # times a worker started it
    animation_path: Optional[str] = None


class MetricRecord(SQLModel, table=True):
    """A per-sample metric value: one row per (run sample, name). A value that could not be
    computed is NULL, never 0. Per-run values live in `run_metric`."""

    __tablename__ = "metric"
    __table_args__ = (UniqueConstraint("run_id", "run_sample_id", "name", name="uq_metric"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(sa_column=Column(Integer, ForeignKey("run.id", ondelete="CASCADE"), nullable=False, index=True))
    run_sample_id: int = Field(
        sa_column=Column(Integer, ForeignKey("run_sample.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    name: str = Field(index=True)
    value: Optional[float] = None


class RunMetricRecord(SQLModel, table=True):
    """A per-run metric, keyed (run, name) so a run has one value per metric: a set-level
    metric (KID: value = mean over subsets, std), a proportion (prompt_precision: value and
    its Wilson interval) or the summary of a per-sample metric (value = mean over finished
    samples, ci_low/ci_high its bootstrap interval, n the samples it covers). A metric that
    could not be computed has value NULL and a `note` saying why: missing, never 0."""

    __tablename__ = "run_metric"

    run_id: int = Field(sa_column=Column(Integer, ForeignKey("run.id", ondelete="CASCADE"), primary_key=True))
    name: str = Field(sa_column=Column(String, primary_key=True))
    value: Optional[float] = None
    std: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    n: Optional[int] = None
    note: Optional[str] = None


class WorkerStatus:
    STARTING = "starting"  # spawned, still importing torch / loading
    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"  # asked to stop (`workers stop`): still alive, finishing its step
    STOPPED = "stopped"  # exited cleanly
    LOST = "lost"  # heartbeat went stale: crashed or killed; its run was re-queued
    LIVE = (STARTING, IDLE, RUNNING, STOPPING)


class WorkerRecord(SQLModel, table=True):
    """A process executing runs (a background worker, or `run` in the foreground).
    Times are epoch seconds of the database's clock, so staleness is one comparison in SQL."""

    __tablename__ = "worker"

    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str  # "daemon", "foreground" or "ray" (a Ray actor)
    host: str  # the hostname, for people; `host_id` decides where `pid` can be checked
    pid: Optional[int] = None
    host_id: Optional[str] = None  # kernel boot and PID namespace of `pid` (store.queue.host_id)
    device: Optional[str] = None
    status: str = Field(default=WorkerStatus.STARTING, index=True)
    run_id: Optional[int] = None
    model: Optional[str] = None
    log_path: Optional[str] = None
    started_at: float
    heartbeat_at: float
    stopped_at: Optional[float] = None
    # The data root it checked at start: the path as its box sees it, and the root's id
    # (store/data_root.py); NULL for a worker of an older version, which never checked.
    data_root: Optional[str] = None
    data_root_id: Optional[str] = None


class RunProgressRecord(SQLModel, table=True):
    """Where a running run is, for any reader (TUI, `runs show`); rewritten a few times a
    second at most by the worker executing it."""

    __tablename__ = "run_progress"

    run_id: int = Field(sa_column=Column(Integer, ForeignKey("run.id", ondelete="CASCADE"), primary_key=True))
    worker_id: Optional[int] = None
    phase: str  # loading, generating, evaluating
    samples_done: int = 0
    sample_count: int = 0
    sample_position: Optional[int] = None
    sample_name: Optional[str] = None
    step: int = 0
    steps: int = 0
    steps_per_second: Optional[float] = None
    seconds_per_sample: Optional[float] = None
    preview_path: Optional[str] = None
    preview_step: Optional[int] = None
    updated_at: float


class SweepRecord(SQLModel, table=True):
    """A grid of runs queued together (`inpaint-tui sweep`)."""

    __tablename__ = "sweep"

    id: Optional[int] = Field(default=None, primary_key=True)
    name: Optional[str] = None
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    command: Optional[str] = None
    created_at: datetime = Field(default_factory=utcnow)


class SweepRunRecord(SQLModel, table=True):
    """A run of a sweep: queued for it, or an identical finished run it reused."""

    __tablename__ = "sweep_run"

    sweep_id: int = Field(sa_column=Column(Integer, ForeignKey("sweep.id", ondelete="CASCADE"), primary_key=True))
    run_id: int = Field(sa_column=Column(Integer, ForeignKey("run.id", ondelete="CASCADE"), primary_key=True))
    position: int
    point: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # the swept values
    reused: bool = False


class StoreInfoRecord(SQLModel, table=True):
    """Facts about the database as a whole, as key/value text (`SCHEMA_WRITTEN_BY`: the
    inpaint-tui version that last migrated it, named when an older version meets it; the
    data root's id, path and host as registered: store/data_root.py)."""

    __tablename__ = "store_info"

    key: str = Field(sa_column=Column(String, primary_key=True))
    value: str = Field(sa_column=Column(String, nullable=False))


SCHEMA_WRITTEN_BY = "schema_written_by"


class StudyRecord(SQLModel, table=True):
    """A blind pairwise judging study (`inpaint-tui judge`): runs compared by people on the
    samples they all finished. Its trials are drawn once, at creation, so every rater and
    every resumed session sees the same sides."""

    __tablename__ = "study"

    id: Optional[int] = Field(default=None, primary_key=True)
    question: str
    run_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    seed: int = Field(sa_column=Column(SEED, nullable=False))
    # Answers each trial is to get (from different raters): 2 or more measure agreement.
    raters_per_trial: int = 1
    command: Optional[str] = None
    created_at: datetime = Field(default_factory=utcnow)


class TrialRecord(SQLModel, table=True):
    """One screen of a study: a sample and two runs' outputs, `left_run_id` shown on the left."""

    __tablename__ = "study_trial"
    __table_args__ = (UniqueConstraint("study_id", "position", name="uq_study_trial"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    study_id: int = Field(sa_column=Column(Integer, ForeignKey("study.id", ondelete="CASCADE"), nullable=False,
                                           index=True))
    position: int
    sample_id: int = Field(sa_column=Column(Integer, ForeignKey("sample.id", ondelete="RESTRICT"), nullable=False))
    # RESTRICT: people's judgements are not deleted along with a run (Store.delete_run says so).
    left_run_id: int = Field(sa_column=Column(Integer, ForeignKey("run.id", ondelete="RESTRICT"), nullable=False))
    right_run_id: int = Field(sa_column=Column(Integer, ForeignKey("run.id", ondelete="RESTRICT"), nullable=False))


class JudgementOutcome:
    LEFT = "left"
    RIGHT = "right"
    TIE = "tie"
    SKIP = "skip"  # the rater passed: not a judgement, but the trial is not shown to them again
    ALL = (LEFT, RIGHT, TIE, SKIP)


class JudgementRecord(SQLModel, table=True):
    """One rater's answer to one trial: which side (the trial says which run was where), when
    the pair was shown and answered, and the seconds between."""

    __tablename__ = "judgement"
    __table_args__ = (UniqueConstraint("trial_id", "rater", name="uq_judgement"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    study_id: int = Field(sa_column=Column(Integer, ForeignKey("study.id", ondelete="CASCADE"), nullable=False,
                                           index=True))
    trial_id: int = Field(sa_column=Column(Integer, ForeignKey("study_trial.id", ondelete="CASCADE"), nullable=False,
                                           index=True))
    rater: str
    outcome: str
    shown_at: datetime
    answered_at: datetime
    seconds: float
    simulated: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
