"""The experiment store: SQLModel schema, database set-up and the queries the faces need."""

from inpaint_tui.store.db import StoreError, database_url
from inpaint_tui.store.queue import ClaimLost, RunBusy
from inpaint_tui.store.store import NotFound, Store, safe_file_stem
from inpaint_tui.store.tables import RunStatus, SampleStatus, WorkerStatus
from inpaint_tui.store.views import (
    ImportReport,
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
    SweepInfo,
    WorkerInfo,
    jsonable,
)

__all__ = [
    "safe_file_stem",
    "ClaimLost",
    "RunBusy",
    "RunProgressInfo",
    "SweepInfo",
    "WorkerInfo",
    "WorkerStatus",
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
