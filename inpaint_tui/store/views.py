"""Plain, immutable views of stored rows. Faces (CLI, TUI) only ever see these, never ORM
objects, so nothing lazy-loads from a closed session in a widget."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


_AS_IS = frozenset({str, int, bool, type(None)})


def jsonable(value: Any) -> Any:
    """Values for `--json` output: paths and datetimes as strings, non-finite floats as
    "inf"/"-inf"/"nan" (JSON has no such numbers). The exact built-in types are tested first:
    this runs on every value of every run a listing prints (millions at 50 000 runs)."""
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, float):  # a float subclass (numpy's float64)
        return jsonable(float(value))
    if isinstance(value, (str, int)):  # str enums (statuses), int subclasses
        return value
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):  # a view inside a view (a run's progress)
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    return value


class _View:
    def to_dict(self) -> dict[str, Any]:
        # One pass over the fields: dataclasses.asdict deep-copied every value first, the
        # larger part of `leaderboard --json`'s time at 50 000 runs.
        return jsonable(self)

    def fields(self) -> dict[str, Any]:
        """The fields as they are, not converted: for output that converts once at the end
        (`print_json` of a listing), where to_dict would convert every value twice."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class NewSample:
    """A sample to import: encoded files plus what identifies and describes it."""

    key: str
    name: str
    prompt: str
    image_png: bytes
    mask_png: bytes
    reference_png: bytes | None
    width: int
    height: int
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportReport(_View):
    set_name: str
    added: int
    already_present: int
    total_in_set: int


@dataclass(frozen=True)
class SampleInfo(_View):
    id: int
    key: str
    name: str
    prompt: str
    image_path: Path
    mask_path: Path
    reference_path: Path | None
    width: int
    height: int
    source: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class SampleSetInfo(_View):
    name: str
    sample_count: int
    created_at: datetime


@dataclass(frozen=True)
class MetricSummary(_View):
    """A per-run metric: the mean (or set-level value) with its interval or std where known.
    `value` None means missing (the metric could not be computed; `note` says why)."""

    value: float | None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    note: str | None = None


@dataclass(frozen=True)
class NewRun:
    technique: str
    params: dict[str, Any]
    model: str
    seed: int
    steps: int
    guidance: float
    negative_prompt: str
    sample_set: str
    config_hash: str
    versions: dict[str, Any]
    git_commit: str | None
    command: str | None
    eval_config: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunProgressInfo(_View):
    """A running run's latest progress as its worker wrote it (`updated_at`: epoch seconds)."""

    run_id: int
    worker_id: int | None
    phase: str
    samples_done: int
    sample_count: int
    sample_position: int | None
    sample_name: str | None
    step: int
    steps: int
    steps_per_second: float | None
    seconds_per_sample: float | None
    preview_path: Path | None
    preview_step: int | None
    updated_at: float

    @property
    def fraction(self) -> float:
        """Share of the run's generation done, counting the current sample's steps."""
        if self.sample_count == 0:
            return 0.0
        within = self.step / self.steps if self.steps else 0.0
        return min(1.0, (self.samples_done + within) / self.sample_count)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left in generation, from this attempt's seconds per sample (None before
        the first sample of the attempt finished)."""
        if self.seconds_per_sample is None:
            return None
        return max(0.0, self.sample_count - self.samples_done - (self.step / self.steps if self.steps else 0.0)) \
            * self.seconds_per_sample


@dataclass(frozen=True)
class WorkerInfo(_View):
    id: int
    kind: str
    host: str
    pid: int | None
    device: str | None
    status: str
    run_id: int | None
    model: str | None
    log_path: Path | None
    started_at: float
    heartbeat_at: float
    stopped_at: float | None
    data_root: Path | None = None  # as that worker's box sees it
    data_root_id: str | None = None


@dataclass(frozen=True)
class SweepInfo(_View):
    id: int
    name: str | None
    spec: dict[str, Any]
    command: str | None
    created_at: datetime
    run_ids: list[int]
    points: list[dict[str, Any]]  # the swept values of each run, in run_ids order
    reused: list[bool]


@dataclass(frozen=True)
class RunInfo(_View):
    id: int
    technique: str
    params: dict[str, Any]
    model: str
    seed: int
    steps: int
    guidance: float
    negative_prompt: str
    sample_set: str
    status: str
    error: str | None
    config_hash: str
    versions: dict[str, Any]
    git_commit: str | None
    device: str | None
    command: str | None
    eval_config: dict[str, Any]
    sample_count: int
    done_count: int
    failed_count: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    options: dict[str, Any] = field(default_factory=dict)
    worker_id: int | None = None
    cancel_requested: bool = False
    progress: RunProgressInfo | None = None
    tags: list[str] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class RunSampleInfo(_View):
    sample_id: int
    sample_name: str
    position: int
    seed: int
    status: str
    image_path: Path | None
    error: str | None
    traceback: str | None
    seconds: float | None
    metrics: dict[str, float]
    attempts: int = 0
    animation_path: Path | None = None


@dataclass(frozen=True)
class RunDetail(_View):
    run: RunInfo
    samples: list[RunSampleInfo]
    metrics: dict[str, float]  # per run: stored values (see summaries), else live means of per-sample values
    summaries: dict[str, MetricSummary] = field(default_factory=dict)


@dataclass(frozen=True)
class LeaderboardRow(_View):
    run_id: int
    technique: str
    params: dict[str, Any]
    model: str
    steps: int
    seed: int
    sample_set: str
    status: str
    samples_done: int
    metrics: dict[str, float]
    summaries: dict[str, MetricSummary] = field(default_factory=dict)
    guidance: float | None = None


@dataclass(frozen=True)
class StudyInfo(_View):
    """A judging study and how far it is: `answers` counts judgements and skips, `needed`
    the answers its trials ask for (trials × raters per trial)."""

    id: int
    question: str
    run_ids: list[int]
    seed: int
    raters_per_trial: int
    command: str | None
    created_at: datetime
    trials: int
    judgements: int  # answers that are judgements (not skips)
    skips: int
    raters: list[str]
    simulated_raters: list[str]

    @property
    def needed(self) -> int:
        return self.trials * self.raters_per_trial


@dataclass(frozen=True)
class TrialInfo(_View):
    id: int
    position: int
    sample_id: int
    left_run_id: int
    right_run_id: int


@dataclass(frozen=True)
class JudgementInfo(_View):
    """A stored judgement. `sample`, `left`, `right`, `outcome`, `rater` and `winner` are
    those of engine.metrics.preference.Judgement (sample and run ids), so the analyses take
    these views as they are."""

    id: int
    trial_id: int
    sample: int
    left: int
    right: int
    outcome: str
    rater: str
    shown_at: datetime
    answered_at: datetime
    seconds: float
    simulated: bool

    @property
    def winner(self) -> int | None:
        return {"left": self.left, "right": self.right}.get(self.outcome)


def human_score_note(study_id: int, detail: str) -> str:
    """The note of a run's `human` value, naming the judging study it comes from (values of
    different studies are not comparable); `human_score_study` reads the study back."""
    return f"study {study_id}: {detail}"


def human_score_study(note: str | None) -> int | None:
    if not note or not note.startswith("study "):
        return None
    head = note[len("study "):].partition(":")[0]
    return int(head) if head.isdigit() else None
