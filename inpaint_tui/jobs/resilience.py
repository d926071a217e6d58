"""Writes that must not fail a sample because the database was briefly locked or away.

Two kinds: best-effort writes (progress rows, heartbeats, previews) are skipped when they
fail and tried again at the next beat; durable writes (a sample's record, a run's end) are
retried with bounded exponential backoff. Either way the worker logs one line when a kind of
failure starts and one when it stops, not a traceback per beat. Torch-free.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, TypeVar

from sqlalchemy.exc import OperationalError

from inpaint_tui.store.db import brief_waits

T = TypeVar("T")

# Bounded: with the default 30 s busy timeout each attempt already waits 30 s for the lock,
# so 8 attempts (backoff 0.25, 0.5, ... capped at 8 s) give up after about 5 minutes.
DURABLE_ATTEMPTS = 8
FIRST_DELAY = 0.25
MAX_DELAY = 8.0


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
        message = describe(error)
        with self._lock:
            previous, count = self._failing.get(kind, (None, 0))
            self._failing[kind] = (message, count + 1)
        if previous != message:  # a new kind of failure, or the same write failing differently
            self.logger.warning("%s failed (%s); %s (repeats are not logged)", kind, message, consequence)

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
    except OperationalError as error:
        failures.failed(kind, error, "skipped until the next one")
        return None
    failures.ok(kind)
    return result


def durable(failures: FailureLog, kind: str, write: Callable[..., T], *args,
            attempts: int = DURABLE_ATTEMPTS, **kwargs) -> T:
    """`write(...)`, retried on OperationalError (locked, busy, briefly unreachable) with
    exponential backoff, at most `attempts` times; the last error propagates. The writes
    passed here are idempotent (a sample's record replaces any earlier one)."""
    delay = FIRST_DELAY
    for attempt in range(1, attempts + 1):
        try:
            result = write(*args, **kwargs)
        except OperationalError as error:
            if attempt == attempts:
                raise
            failures.failed(kind, error, f"retrying (up to {attempts} attempts)")
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
            continue
        failures.ok(kind)
        return result
    raise AssertionError("unreachable")


__all__ = ["FailureLog", "best_effort", "describe", "durable"]
