"""The schema. Every change goes through an Alembic migration in `migrations/versions/`;
a test checks that the migrations produce exactly these tables."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, Column, ForeignKey, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel


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
    seed: int
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
    sample_count: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None


class RunSampleRecord(SQLModel, table=True):
    """The outcome of one sample in one run; written in its own short transaction."""

    __tablename__ = "run_sample"
    __table_args__ = (UniqueConstraint("run_id", "sample_id", name="uq_run_sample"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(sa_column=Column(Integer, ForeignKey("run.id", ondelete="CASCADE"), nullable=False, index=True))
    sample_id: int = Field(sa_column=Column(Integer, ForeignKey("sample.id", ondelete="RESTRICT"), nullable=False))
    position: int
    seed: int
    status: str = Field(default=SampleStatus.PENDING)
    image_path: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    error: Optional[str] = None
    traceback: Optional[str] = None
    seconds: Optional[float] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None


class MetricRecord(SQLModel, table=True):
    """A metric value, per sample (run_sample_id set) or per run (run_sample_id NULL).

    Per-run rows hold either a set-level metric (KID: value = mean over subsets, std) or the
    aggregate of a per-sample metric (value = mean over finished samples, ci_low/ci_high its
    bootstrap interval, n the samples it covers). A metric that could not be computed is a
    row with value NULL and a `note` saying why: missing, never 0."""

    __tablename__ = "metric"
    __table_args__ = (UniqueConstraint("run_id", "run_sample_id", "name", name="uq_metric"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(sa_column=Column(Integer, ForeignKey("run.id", ondelete="CASCADE"), nullable=False, index=True))
    run_sample_id: Optional[int] = Field(
        default=None, sa_column=Column(Integer, ForeignKey("run_sample.id", ondelete="CASCADE"), nullable=True, index=True)
    )
    name: str = Field(index=True)
    value: Optional[float] = None
    std: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    n: Optional[int] = None
    note: Optional[str] = None
