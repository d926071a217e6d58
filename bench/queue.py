"""Queue overhead: many tiny runs through a background worker versus the same runs executed
in-process.

What is measured
----------------
The same batch of runs (blended on the demo set, tiny model, `--steps` steps, background
metrics only) three ways, each on its own fresh database in one temporary folder:

* engine: `engine.inpaint` over the samples of each run, in this process, no store at all
  (what the work costs by itself);
* in-process: `execute_run` per run in this process: claims, the per-step cancel/claim
  read, progress rows, one transaction per sample, PNG files, evaluation;
* worker: `inpaint-tui worker --once` as a separate process draining the queue. Steady
  state is timed from the first run's start to the last run's end as the store recorded
  them (the worker's interpreter start and imports are reported apart, they are paid once
  per worker, not per run).

Reported: runs/s of each, worker/in-process (the queue's own overhead; target under 10%),
in-process/engine (what the store adds), and the cost of one per-step `check_claim` read.
The worker gets OMP_NUM_THREADS equal to `--threads`, as this process does.

Usage: python bench/queue.py [--runs 12] [--steps 4] [--threads 2]
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


def _fresh_store(folder: Path, name: str, runs: int, steps: int):
    from engine.spec import RunSpec
    from inpaint_tui.jobs.runs import queue_run
    from inpaint_tui.jobs.samples import ensure_demo
    from inpaint_tui.store import Store

    store = Store(folder / f"{name}.db")
    ensure_demo(store)
    ids = [queue_run(store, RunSpec.build("blended", seed=seed, steps=steps, evaluation=EVALUATION), sample_set="demo")
           for seed in range(runs)]
    return store, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

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

    # Warm-up (first calls build caches): one run through each in-process path, untimed.
    warm, warm_ids = _fresh_store(folder, "warm", 1, args.steps)
    execute_run(warm, warm_ids[0], device="cpu")
    samples = [to_engine_sample(info) for info in warm.samples("demo")]

    started = time.perf_counter()
    for seed in range(args.runs):
        for _ in inpaint(model, "blended", samples, seed=seed, steps=args.steps, guidance=7.5, on_step=lambda p: None):
            pass
    engine_seconds = time.perf_counter() - started

    store, ids = _fresh_store(folder, "inprocess", args.runs, args.steps)
    started = time.perf_counter()
    for run_id in ids:
        execute_run(store, run_id, device="cpu")
    inprocess_seconds = time.perf_counter() - started

    store, ids = _fresh_store(folder, "worker", args.runs, args.steps)
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    launched = time.perf_counter()
    subprocess.run([sys.executable, "-m", "inpaint_tui.cli", "--db", str(folder / "worker.db"), "worker", "--once",
                    "--device", "cpu"], env=environment, check=True, capture_output=True)
    worker_total = time.perf_counter() - launched
    infos = store.runs(ids)
    assert all(info.status == "finished" for info in infos), [info.status for info in infos]
    worker_seconds = (max(i.finished_at for i in infos) - min(i.started_at for i in infos)).total_seconds()

    run_id = ids[0]
    claim = 1
    started = time.perf_counter()
    for _ in range(2000):
        store.check_claim(run_id, claim)
    check_us = (time.perf_counter() - started) / 2000 * 1e6

    print(f"{args.runs} runs x 6 samples x {args.steps} steps, tiny model, {args.threads} threads")
    print(f"  engine only        {args.runs / engine_seconds:7.2f} runs/s  ({engine_seconds:.1f} s)")
    print(f"  in-process store   {args.runs / inprocess_seconds:7.2f} runs/s  ({inprocess_seconds:.1f} s)")
    print(f"  worker process     {args.runs / worker_seconds:7.2f} runs/s  ({worker_seconds:.1f} s steady, "
          f"{worker_total:.1f} s with start-up)")
    print(f"  worker / in-process time ratio: {worker_seconds / inprocess_seconds:.3f}  (queue overhead, target < 1.10)")
    print(f"  in-process / engine time ratio: {inprocess_seconds / engine_seconds:.3f}  (store, files, evaluation)")
    print(f"  one per-step check_claim read: {check_us:.0f} us")


if __name__ == "__main__":
    run_benchmark(main, "queue")
