"""Filtering, sorting and cutting 10 000 runs with the query language, against listing runs
unfiltered.

What is measured
----------------
An SQLite file made with the store's migrations and filled in bulk (executemany, one
transaction): `--runs` runs of every technique with varied parameters (a quarter recording
only part of them, as older versions did), statuses, tags and 11 per-run metric values each
in `run_metric`, over the 6 demo samples. Then, in one process, interleaved (ABBA) over
`--rounds` rounds:

* baseline: `Store.runs(limit=50)`, the newest-first page an unfiltered listing reads;
* query ids: `Store.query_run_ids(filter, sort, 50)`: the filter
  `technique = 'blended' and param.blend_start >= 0.25 and metric.bg_mse < 0.5 and tag = 'paper'`
  (a parameter with its default filled in, a metric, a tag), sorted by `-metric.kid,id`;
* query runs: `Store.find_runs(...)` with the same arguments: the runs themselves, as
  `runs list --filter ... --sort ... --limit 50` reads them, and their metrics;
* leaderboard: `Store.leaderboard("bg_mse", where=filter, limit=50)`;
* broad sort: every run sorted by a metric (`-metric.kid`, no filter), limit 50: the query's
  worst case, a correlated lookup for each of the runs.

Reported: the median seconds of each and its median per-round ratio to the baseline. Target:
each query well under a second on 10 000 runs. It is a benchmark, not a test: it always exits 0.

Usage: python bench/query.py [--runs 10000] [--rounds 9]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/ off the path: its queue.py would shadow the stdlib

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench._common import interleaved, run_benchmark  # noqa: E402
from tests.scale_database import build  # noqa: E402

FILTER = "technique = 'blended' and param.blend_start >= 0.25 and metric.bg_mse < 0.5 and tag = 'paper'"
SORT = "-metric.kid,id"
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()

    from inpaint_tui.read.query import parse_filter, parse_sort

    folder = Path(tempfile.mkdtemp(prefix="bench-query-"))
    started = time.perf_counter()
    store = build(folder / "runs.db", args.runs)
    print(f"database: {args.runs} runs, built in {time.perf_counter() - started:.1f} s")
    where, order = parse_filter(FILTER), parse_sort(SORT)
    broad = parse_sort("-metric.kid")
    matching = len(store.query_run_ids(where))
    cases = {
        "baseline: runs(limit=50)": lambda: store.runs(limit=50, newest_first=True),
        "query ids": lambda: store.query_run_ids(where, order, 50),
        "query runs (+ metrics)": lambda: store.run_metrics([run.id for run in store.find_runs(where, order, 50)]),
        "leaderboard, filtered": lambda: store.leaderboard("bg_mse", descending=False, where=where, limit=50),
        "broad sort, no filter": lambda: store.query_run_ids(order=broad, limit=50),
    }
    for case in cases.values():  # warm-up: statements compiled, pages cached
        case()
    times = interleaved(cases, args.rounds)
    baseline = times["baseline: runs(limit=50)"]
    print(f"filter: {FILTER}  ({matching} of {args.runs} runs match); sort {SORT}; limit 50")
    print(f"median of {args.rounds} interleaved rounds; ratio = the median per-round ratio to the baseline")
    for name, values in times.items():
        ratio = statistics.median(v / b for v, b in zip(values, baseline))
        print(f"  {name:<26}{statistics.median(values) * 1000:>9.1f} ms{ratio:>9.1f}x")
    store.close()


if __name__ == "__main__":
    run_benchmark(main, "query")
