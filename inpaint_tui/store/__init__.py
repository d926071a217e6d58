"""The experiment store: SQLModel schema, database set-up and the queries the faces need."""

from inpaint_tui.store.db import StoreError, database_url
from inpaint_tui.store.queue import ClaimLost, RunBusy
from inpaint_tui.store.store import NotFound, Store, safe_file_stem
from inpaint_tui.store.tables import JudgementOutcome, RunStatus, SampleStatus, WorkerStatus
from inpaint_tui.store.views import (
    ImportReport,
    JudgementInfo,
    LeaderboardRow,
    MetricSummary,
    NewRun,
    NewSample,
    RunDetail,
    RunInfo,
    RunProgressInfo,
    RunSampleInfo,
    SampleInfo,
    SampleSetInfo,
    StudyInfo,
    SweepInfo,
    TrialInfo,
    WorkerInfo,
    jsonable,
)

__all__ = [
    "safe_file_stem",
    "ClaimLost",
    "RunBusy",
    "RunProgressInfo",
    "SweepInfo",
    "StudyInfo",
    "TrialInfo",
    "JudgementInfo",
    "WorkerInfo",
    "WorkerStatus",
    "JudgementOutcome",
    "ImportReport",
    "LeaderboardRow",
    "MetricSummary",
    "NewRun",
    "NewSample",
    "NotFound",
    "RunDetail",
    "RunInfo",
    "RunSampleInfo",
    "RunStatus",
    "SampleInfo",
    "SampleSetInfo",
    "SampleStatus",
    "Store",
    "StoreError",
    "database_url",
    "jsonable",
]
