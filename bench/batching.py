"""Batched generation: a batch of B samples against the same B samples one by one.

What is measured
----------------
For each technique (and the post-conditioning option), images per second of
`Generation.batch(samples)` (one batch of B) and of B calls of `Generation.sample`, on the
same loaded model, the same B samples of one working size, the same seeds. Each round runs
both sides, alternating which goes first, so drift hits both alike; reported: the median of
the per-round ratios batched/one-by-one, and the largest 8-bit pixel difference between the
two sides (the kernels' batch-size rounding; tests/engine/test_batching.py checks exact
equality with batch-invariant kernels).

Usage: python bench/batching.py [--batch 4] [--steps 10] [--repeats 3] [--threads 2]
[--model tiny] [--device cpu] [--techniques blended,vanilla]
It is a benchmark, not a test: it always exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/ off the path: its queue.py would shadow the stdlib

CASES = {
    "vanilla": {},
    "blended": {},
    "tdpaint": {},
    "repaint": {"jump_length": 2, "jump_n_sample": 2},
    "diffdiff": {},
    "latentpaint": {},
    "blended+post_condition": {"post_condition": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default=None)
    parser.add_argument("--techniques", default=",".join(CASES))
    options = parser.parse_args()

    import numpy as np
    import torch

    from bench._common import synthetic_samples
    from engine.models import load_model
    from engine.runner import Generation

    torch.set_num_threads(options.threads)
    model = load_model(options.model, device=options.device)
    samples = synthetic_samples(options.batch, model.resolution, prefix="bench")
    seeds = list(range(options.batch))
    print(f"{options.model} on {model.device} ({model.dtype}), {model.resolution}px, batch {options.batch}, "
          f"{options.steps} steps, {options.repeats} rounds, {torch.get_num_threads()} threads")
    print(f"{'technique':<24} {'one by one':>11} {'batched':>9} {'ratio':>7} {'max diff':>9}")
    for name in options.techniques.split(","):
        technique, _, option = name.partition("+")
        params = dict(CASES[name])
        generation = Generation(model, technique, params=params, steps=options.steps, guidance=7.5)

        def one_by_one():
            return [generation.sample(sample, seed=seed, errors="raise") for sample, seed in zip(samples, seeds)]

        def batched():
            return generation.batch(samples, seeds=seeds, errors="raise")

        alone, together = one_by_one(), batched()  # warm-up, and the pixel comparison
        difference = max(int(np.abs(np.asarray(a.image, dtype=np.int16) - np.asarray(b.image, dtype=np.int16)).max())
                         for a, b in zip(alone, together))
        rates = {"alone": [], "batched": []}
        ratios = []
        for round_index in range(options.repeats):
            order = [("alone", one_by_one), ("batched", batched)]
            if round_index % 2:
                order.reverse()
            seconds = {}
            for side, function in order:
                if model.device.startswith("cuda"):
                    torch.cuda.synchronize()
                started = time.perf_counter()
                function()
                if model.device.startswith("cuda"):
                    torch.cuda.synchronize()
                seconds[side] = time.perf_counter() - started
            for side in rates:
                rates[side].append(options.batch / seconds[side])
            ratios.append(seconds["alone"] / seconds["batched"])
        print(f"{name:<24} {statistics.median(rates['alone']):>9.2f}/s {statistics.median(rates['batched']):>7.2f}/s "
              f"{statistics.median(ratios):>6.2f}x {difference:>9}")


if __name__ == "__main__":
    main()
