"""Listings at scale: `runs list --json`, `leaderboard --json` and `export` on a store of
`--runs` runs (tests/scale_database.py: 50 000 by default), as a user runs them.

What is measured
----------------
Each command runs as its own process (the console script's module, `python -m
inpaint_tui.cli`), and for each its wall time and peak resident memory (the child's maxrss)
are taken. The baseline is `runs list --limit 1 --json` on the same store, the start-up and
one row, run in the same round. With `--compare-to FOLDER` (a checkout of another revision,
e.g. `git worktree add /tmp/old <commit>`) every command also runs with that code on
PYTHONPATH, so the two revisions are compared within each round. The order of the sides is
shuffled per round; reported: the median seconds and peak MiB of each, and the median of the
per-round ratios (to the baseline, and new / old where compared).

Usage: python bench/listings.py [--runs 50000] [--rounds 3] [--export-runs 10000] [--compare-to FOLDER]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench._common import run_benchmark  # noqa: E402
from tests.scale_database import build  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one process, its output discarded. It starts in
    `cwd`, the revision's folder: `python -m` puts the working directory first on sys.path,
    before PYTHONPATH, so started elsewhere it would import the code found there."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode()[-500:]}")
    return seconds, usage.ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--export-runs", type=int, default=10_000, help="runs exported (the newest)")
    parser.add_argument("--compare-to", type=Path, default=None, help="a checkout of the revision to compare with")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-listings-"))
    db = folder / "big.db"
    started = time.perf_counter()
    build(db, args.runs).close()
    print(f"database: {args.runs} runs x 6 samples, built in {time.perf_counter() - started:.1f} s")
    base = [sys.executable, "-m", "inpaint_tui.cli", "--db", str(db)]
    export_filter = f"id > {args.runs - args.export_runs}"
    commands = {
        "baseline: runs list --limit 1 --json": [*base, "runs", "list", "--limit", "1", "--json"],
        "runs list --json": [*base, "runs", "list", "--json"],
        "leaderboard --json": [*base, "leaderboard", "--json"],
        f"export {args.export_runs} runs": [*base, "export", "--filter", export_filter, "--out",
                                            str(folder / "export.csv")],
    }
    revisions = {"new": ROOT} | ({"old": args.compare_to.resolve()} if args.compare_to else {})
    sides = [(revision, name) for revision in revisions for name in commands]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {side: [] for side in sides}
    rng = random.Random(0)
    for _ in range(args.rounds):
        order = list(sides)
        rng.shuffle(order)  # load drift falls on every side alike
        for revision, name in order:
            env = {**environment, "PYTHONPATH": str(revisions[revision])}
            results[(revision, name)].append(_timed(commands[name], env, revisions[revision]))

    def ratio(a, b) -> float:
        return statistics.median(x[0] / y[0] for x, y in zip(results[a], results[b]))

    print(f"median of {args.rounds} shuffled rounds (wall seconds, peak RSS); ratios: median of per-round ratios")
    for revision in revisions:
        print(f"{revision} ({revisions[revision]}):")
        baseline = (revision, next(iter(commands)))
        for name in commands:
            side = (revision, name)
            seconds = statistics.median(s for s, _ in results[side])
            memory = statistics.median(m for _, m in results[side])
            versus = f"  x{ratio(side, baseline):.2f} baseline"
            if revision == "new" and "old" in revisions:
                versus += f"  new/old x{ratio(side, ('old', name)):.2f}"
            print(f"  {name:<40}{seconds:>8.2f} s {memory:>8.0f} MiB{versus}")


if __name__ == "__main__":
    run_benchmark(main, "listings")
