"""Writes that must not fail a sample because the database was briefly locked or away.

Two kinds: best-effort writes (progress rows, heartbeats, previews) are skipped when they
fail and tried again at the next beat; durable writes (a sample's record, a run's end) are
retried with exponential backoff: a locked database a bounded number of times, a lost
connection to a database server (restarted, unreachable) for up to `OUTAGE_SECONDS`, since
an outage lasts however long it lasts. Retrying is safe because every write a worker makes
is conditional on its claim and replaces an earlier copy of itself. Either way the worker
logs one line when a kind of failure starts and one when it stops, not a traceback per
beat, and an outage is one failure however its messages change while the server goes down
and comes back. Torch-free.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from inpaint_tui.store.db import brief_waits

T = TypeVar("T")

# Bounded: with the default 30 s busy timeout each attempt already waits 30 s for the lock,
# so 8 attempts (backoff 0.25, 0.5, ... capped at 8 s) give up after about 5 minutes.
DURABLE_ATTEMPTS = 8
FIRST_DELAY = 0.25
MAX_DELAY = 8.0
OUTAGE_SECONDS = 300.0  # how long a durable write waits for a database server to come back
OUTAGE_MAX_DELAY = 2.0  # a refused connection costs the server nothing: notice its return quickly
# What a lost server connection says, across its phases (shutting down, gone, refusing, starting up).
CONNECTION_LOSS = ("connection refused", "could not connect", "connection failed", "server closed the connection",
                   "terminating connection", "connection is closed", "connection not open", "connection is lost",
                   "database system is shutting down", "database system is starting up", "no connection to the server",
                   "consuming input failed", "connection timed out", "timeout expired", "ssl syscall error")


def is_transient(error: BaseException) -> bool:
    """A database error worth retrying: locked/busy (OperationalError) or a lost connection."""
    return isinstance(error, OperationalError) or connection_lost(error)


def connection_lost(error: BaseException) -> bool:
    """Whether `error` means the database server could not be reached or dropped us."""
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    lowered = str(error.orig).lower()
    return any(words in lowered for words in CONNECTION_LOSS)


def describe(error: BaseException) -> str:
    """One line: the driver's message without SQLAlchemy's SQL echo and background link."""
    origin = getattr(error, "orig", None)
    text = str(origin if origin is not None else error).strip().splitlines()
    return f"{type(origin if origin is not None else error).__name__}: {text[0] if text else ''}"


class FailureLog:
    """Logs the first failure of each kind of write and its recovery, counting (not logging)
    the repeats in between; thread-safe (the heartbeat thread and the main thread share one)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._lock = threading.Lock()
        self._failing: dict[str, tuple[str, int]] = {}  # kind -> (message, failures)

    def failed(self, kind: str, error: BaseException, consequence: str = "will retry") -> None:
        # An outage is one failure: "terminating connection", then "refused", then "starting up".
        message = "the database server is unreachable" if connection_lost(error) else describe(error)
        with self._lock:
            previous, count = self._failing.get(kind, (None, 0))
            self._failing[kind] = (message, count + 1)
        if previous != message:  # a new kind of failure, or the same write failing differently
            self.logger.warning("%s failed (%s); %s (repeats are not logged)", kind, describe(error), consequence)

    def ok(self, kind: str) -> None:
        if kind not in self._failing:  # the common case, without the lock
            return
        with self._lock:
            _message, count = self._failing.pop(kind, (None, 0))
        if count:
            self.logger.warning("%s works again after %d failure(s)", kind, count)


def best_effort(failures: FailureLog, kind: str, write: Callable[..., T], *args, **kwargs) -> T | None:
    """`write(...)`, or None when the database is locked or unreachable (logged once); it
    waits for a lock only briefly (BRIEF_WAIT_MS), never the busy timeout."""
    try:
        with brief_waits():
            result = write(*args, **kwargs)
    except DBAPIError as error:
        if not is_transient(error):
            raise
        failures.failed(kind, error, "skipped until the next one")
        return None
    failures.ok(kind)
    return result


def durable(failures: FailureLog, kind: str, write: Callable[..., T], *args,
            attempts: int = DURABLE_ATTEMPTS, outage: float = OUTAGE_SECONDS, **kwargs) -> T:
    """`write(...)`, retried with exponential backoff: on a locked or busy database at most
    `attempts` times, on a lost server connection until `outage` seconds have passed since
    the connection was first lost; then the last error propagates. The writes passed here
    are idempotent (a sample's record replaces any earlier one)."""
    delay = FIRST_DELAY
    attempt = 0
    lost_since: float | None = None
    while True:
        try:
            result = write(*args, **kwargs)
        except DBAPIError as error:
            if not is_transient(error):
                raise
            if connection_lost(error):
                lost_since = lost_since if lost_since is not None else time.monotonic()
                if time.monotonic() - lost_since >= outage:
                    raise
                consequence = f"retrying for up to {outage:g} s"
            else:
                attempt += 1
                if attempt >= attempts:
                    raise
                consequence = f"retrying (up to {attempts} attempts)"
            failures.failed(kind, error, consequence)
            time.sleep(delay)
            delay = min(delay * 2, OUTAGE_MAX_DELAY if lost_since is not None else MAX_DELAY)
            continue
        failures.ok(kind)
        return result


__all__ = ["FailureLog", "best_effort", "connection_lost", "describe", "durable", "is_transient"]
