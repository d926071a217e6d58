"""Queue overhead: many tiny runs through a background worker versus the same runs executed
in-process.

What is measured
----------------
The same runs (blended on the demo set, tiny model, `--steps` steps, background metrics
only) three ways, the store paths each on its own database in one temporary folder:

* engine: `engine.inpaint` over the samples of each run, in this process, no store at all
  (what the work costs by itself);
* in-process: `execute_run` per run in this process: claims, the per-step cancel/claim
  read, progress rows, one transaction per sample, PNG files, evaluation;
* worker: `inpaint-tui worker --once` as a separate process draining the queue (one per
  round). Steady state is timed from the first run's start to the last run's end as the store recorded
  them (the worker's interpreter start and imports are reported apart, they are paid once
  per worker, not per run).

Each round runs `--runs` runs on each path, the paths' order reversed every other round.
Reported: runs/s of each (median round), the medians of the per-round ratios worker /
in-process (the queue's own overhead; target under 10%) and in-process / engine (what the
store adds), and the cost of one per-step `check_claim` read. The worker gets
OMP_NUM_THREADS equal to `--threads`, as this process does.

Usage: python bench/queue.py [--rounds 5] [--runs 4] [--steps 4] [--threads 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and `queue.py` would shadow the
# standard library's `queue` (torch imports it): put the repository root there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench._common import run_benchmark  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EVALUATION = {"groups": ["background"], "models": "tiny"}


def _queue_runs(store, seeds, steps: int) -> list[int]:
    from engine.spec import RunSpec
    from inpaint_tui.jobs.runs import queue_run

    return [queue_run(store, RunSpec.build("blended", seed=seed, steps=steps, evaluation=EVALUATION),
                      sample_set="demo") for seed in seeds]


def _store(folder: Path, name: str):
    from inpaint_tui.jobs.samples import ensure_demo
    from inpaint_tui.store import Store

    store = Store(folder / f"{name}.db")
    ensure_demo(store)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="runs per round and path")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import statistics

    import torch

    from engine.models import load_model
    from engine.runner import inpaint
    from inpaint_tui.jobs.execute import quiet_libraries
    from inpaint_tui.jobs.samples import to_engine_sample
    from inpaint_tui.jobs.worker import execute_run

    torch.set_num_threads(args.threads)
    quiet_libraries()
    model = load_model("tiny", device="cpu")
    folder = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    stores = {name: _store(folder, name) for name in ("inprocess", "worker")}
    samples = [to_engine_sample(info) for info in stores["inprocess"].samples("demo")]
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start_up: list[float] = []

    def engine(seeds) -> float:
        started = time.perf_counter()
        for seed in seeds:
            for _ in inpaint(model, "blended", samples, seed=seed, steps=args.steps, guidance=7.5,
                             on_step=lambda p: None):
                pass
        return time.perf_counter() - started

    def inprocess(seeds) -> float:
        store = stores["inprocess"]
        ids = _queue_runs(store, seeds, args.steps)
        started = time.perf_counter()
        for run_id in ids:
            execute_run(store, run_id, device="cpu")
        return time.perf_counter() - started

    def worker(seeds) -> float:
        """Steady state as the store recorded it: first run's start to last run's end (the
        interpreter's start and imports are paid once per worker, reported apart)."""
        store = stores["worker"]
        ids = _queue_runs(store, seeds, args.steps)
        launched = time.perf_counter()
        subprocess.run([sys.executable, "-m", "inpaint_tui.cli", "--db", str(folder / "worker.db"), "worker",
                        "--once", "--device", "cpu"], env=environment, check=True, capture_output=True)
        total = time.perf_counter() - launched
        infos = store.runs(ids)
        assert all(info.status == "finished" for info in infos), [info.status for info in infos]
        steady = (max(i.finished_at for i in infos) - min(i.started_at for i in infos)).total_seconds()
        start_up.append(total - steady)
        return steady

    paths = {"engine": engine, "in-process": inprocess, "worker": worker}
    for name in ("engine", "in-process"):  # warm-up (first calls build caches), untimed
        paths[name](range(10_000, 10_001))
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for round_index in range(args.rounds):
        # The three paths take turns within each round, the order reversed every other round,
        # so load drift falls on all of them alike (run one after the other, the ratio swung
        # from 0.78 to 1.52 between two tries).
        seeds = range(round_index * args.runs, (round_index + 1) * args.runs)
        for name in paths if round_index % 2 == 0 else reversed(list(paths)):
            seconds[name].append(paths[name](seeds))

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(seconds[a], seconds[b]))

    run_id = stores["worker"].runs()[0].id
    started = time.perf_counter()
    for _ in range(2000):
        stores["worker"].check_claim(run_id, 1)
    check_us = (time.perf_counter() - started) / 2000 * 1e6

    print(f"{args.rounds} rounds x {args.runs} runs x 6 samples x {args.steps} steps per path, tiny model, "
          f"{args.threads} threads")
    for name in paths:
        median = statistics.median(seconds[name])
        print(f"  {name:<11} {args.runs / median:7.2f} runs/s  (median {median:.2f} s a round)")
    print(f"  worker start-up (interpreter, imports, model load): median {statistics.median(start_up):.1f} s")
    print(f"  worker / in-process: median of per-round ratios {ratio('worker', 'in-process'):.3f}  "
          "(queue overhead, target < 1.10)")
    print(f"  in-process / engine: median of per-round ratios {ratio('in-process', 'engine'):.3f}  "
          "(store, files, evaluation)")
    print(f"  one per-step check_claim read: {check_us:.0f} us")


if __name__ == "__main__":
    run_benchmark(main, "queue")
