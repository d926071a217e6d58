"""The store calls a worker makes while a run executes, per call, on SQLite and on PostgreSQL.

What is measured
----------------
On one SQLite file and one PostgreSQL database (a throwaway server on loopback started as the
tests start theirs, tests/postgres.py, but with the durability a real server has: fsync and
synchronous_commit on), each holding one claimed run of the demo set:

* claim check: `Store.check_claim`, the read made at every denoising step;
* heartbeat: `Store.heartbeat`, every 2 s from the worker's heartbeat thread;
* progress write: `Store.write_progress`, a few times a second at most.

Method: one process, `--rounds` rounds; in each round every call is timed `--calls` times
back to back on each backend, the backend order flipping every round (ABBA), so drift and
other load hit both alike. Reported: median microseconds per call over rounds, and the median
of the per-round PostgreSQL/SQLite ratios (SQLite, the embedded default, is the baseline).

The claim check is then put against the work it guards: each round also times one tiny-model
sample (blended, `--steps` steps, on CPU with `--threads` threads) through `engine.inpaint`,
and the share is the round's claim check divided by the round's mean step time (median over
rounds). The tiny model's CPU step is short, so the share is pessimistic next to a real model's
step; the target is well under 1%.

Usage: python bench/store_calls.py [--rounds 9] [--calls 200] [--steps 10] [--threads 2]
It is a benchmark, not a test: it always exits 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/ off the path: its queue.py would shadow the stdlib

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench._common import run_benchmark  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TARGET_SHARE = 0.01


def _claimed(store):
    """A store holding one claimed run: (run id, claim, worker id)."""
    from engine.spec import RunSpec
    from inpaint_tui.jobs.runs import queue_run
    from inpaint_tui.jobs.samples import ensure_demo

    ensure_demo(store)
    queue_run(store, RunSpec.build("blended", seed=0, steps=10), sample_set="demo")
    worker = store.register_worker("daemon", pid=os.getpid())
    run_id, claim = store.claim_next_run(worker)
    return run_id, claim, worker


def _durable_server():
    """The tests' PostgreSQL server, with the per-commit disk sync a production server has."""
    from tests.postgres import Server

    server = Server()
    server.execute("ALTER SYSTEM SET fsync = on", "ALTER SYSTEM SET synchronous_commit = on",
                   "ALTER SYSTEM SET full_page_writes = on", "SELECT pg_reload_conf()")
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from engine.demo import demo_samples
    from engine.models import load_model
    from engine.runner import inpaint
    from inpaint_tui.jobs.execute import quiet_libraries
    from inpaint_tui.store import Store

    torch.set_num_threads(args.threads)
    quiet_libraries()
    folder = Path(tempfile.mkdtemp(prefix="bench-store-calls-"))
    server = _durable_server()
    try:
        stores = {"sqlite": Store(folder / "bench.db", data_dir=folder / "sqlite_data"),
                  "postgresql": Store(server.fresh_url(), data_dir=folder / "pg_data")}
        held = {name: _claimed(store) for name, store in stores.items()}
        with stores["postgresql"].engine.connect() as connection:
            from sqlalchemy import text

            settings = [connection.execute(text(f"SHOW {name}")).scalar() for name in ("fsync", "synchronous_commit")]
        calls = {
            "claim check": lambda s, run, claim, worker: s.check_claim(run, claim),
            "heartbeat": lambda s, run, claim, worker: s.heartbeat(worker),
            "progress write": lambda s, run, claim, worker: s.write_progress(
                run, claim, worker, phase="generating", samples_done=1, sample_count=6, step=3, steps=10),
        }
        model = load_model("tiny", device="cpu")
        sample = demo_samples()[:1]
        step_times: list[float] = []

        def one_sample() -> float:
            """Mean seconds per denoising step of one tiny-model sample."""
            stamps: list[float] = []
            for _ in inpaint(model, "blended", sample, seed=0, steps=args.steps, guidance=7.5,
                             on_step=lambda _p: stamps.append(time.perf_counter())):
                pass
            return (stamps[-1] - stamps[0]) / (len(stamps) - 1)  # between steps: no encoding or decoding

        for name, store in stores.items():  # warm-up: pools filled, statements cached, model run once
            for call in calls.values():
                for _ in range(20):
                    call(store, *held[name])
        one_sample()

        per_call: dict[tuple[str, str], list[float]] = {}
        for round_index in range(args.rounds):
            order = list(stores) if round_index % 2 == 0 else list(reversed(stores))
            for label, call in calls.items():
                for name in order:
                    store, arguments = stores[name], held[name]
                    started = time.perf_counter()
                    for _ in range(args.calls):
                        call(store, *arguments)
                    per_call.setdefault((label, name), []).append((time.perf_counter() - started) / args.calls)
            step_times.append(one_sample())

        print(f"store calls per call, median of {args.rounds} rounds x {args.calls} calls; PostgreSQL on loopback "
              f"(fsync {settings[0]}, synchronous_commit {settings[1]}); SQLite {stores['sqlite'].engine.dialect.server_version_info}")
        print(f"  {'call':<16}{'SQLite':>10}{'PostgreSQL':>12}{'PG/SQLite':>11}")
        for label in calls:
            sqlite, postgres = per_call[(label, "sqlite")], per_call[(label, "postgresql")]
            ratio = statistics.median(p / s for p, s in zip(postgres, sqlite))
            print(f"  {label:<16}{statistics.median(sqlite) * 1e6:>8.0f} us{statistics.median(postgres) * 1e6:>9.0f} us"
                  f"{ratio:>10.2f}x")
        print(f"tiny-model step (blended, CPU, {args.threads} threads, {args.steps} steps): "
              f"{statistics.median(step_times) * 1e3:.1f} ms median")
        for name in stores:
            share = statistics.median(check / step for check, step in
                                      zip(per_call[("claim check", name)], step_times))
            verdict = "ok" if share < TARGET_SHARE else "over"
            print(f"  claim check / step on {name:<10}: {share * 100:.3f}%  (target < {TARGET_SHARE:.0%}: {verdict})")
        for store in stores.values():
            store.close()
    finally:
        server.remove()


if __name__ == "__main__":
    run_benchmark(main, "store_calls")
