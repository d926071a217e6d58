"""KID on the masked crop: first evaluation versus a second one that hits the reference cache.

What is measured
----------------
`engine.metrics.kid.kid_on_masked_crop` on N synthetic items (default 64 at 256×256: smooth
random colour fields, a random box mask per item, the output = the reference with a brightness
shift inside the mask), in one process, with the same features, subsets and seed each time:

* first:  a fresh cache: every reference crop is cut, resized, hashed and run through the
  feature extractor, then stored (all misses);
* second: the same references again: the references' features come from the cache (all hits),
  only the outputs go through the extractor;
* none:   no cache at all (what the first evaluation costs without storing anything).

Both cache kinds are timed: in memory and a directory of `.npy` files (the one the app puts
next to the database). Reported: median seconds over `--repeats` of each, the speed-up
first/second, and a check that the second value equals the first exactly.

Feature extractors: `tiny_extractor(input_size=299)`, a fixed random conv net at the Inception
input size (the crop resizing costs the same as in production while the network itself is
cheap: a lower bound on what the cache saves), and Inception-v3 (torchmetrics/torch-fidelity)
when its package and weights are available here; otherwise the reason is printed.

A last line times the MMD part alone at production scale (1000 × 2048 features per side,
100 subsets of 1000) to show what the subset loop costs.

Usage: python bench/metrics.py [--items 64] [--size 256] [--repeats 3] [--threads 2]
It is a benchmark, not a test: it always exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/ off the path: its queue.py would shadow the stdlib

SUBSETS = 100
SUBSET_SIZE = 1000  # reduced to N by the metric (the warning is printed once)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64, help="synthetic items (default 64)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each case (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    return parser.parse_args(argv)


def synthetic_items(count: int, size: int, seed: int = 0) -> list:
    import numpy as np
    from PIL import Image

    from engine.metrics.base import EvalItem

    rng = np.random.default_rng(seed)
    items = []
    for index in range(count):
        coarse = rng.integers(0, 256, size=(5, 5, 3), dtype=np.uint8)
        reference = np.asarray(Image.fromarray(coarse, "RGB").resize((size, size), Image.Resampling.BICUBIC))
        mask = np.zeros((size, size), bool)
        side = int(rng.integers(size // 8, size // 3))
        top, left = (int(v) for v in rng.integers(0, size - side, size=2))
        mask[top : top + side, left : left + side] = True
        output = reference.astype(int)
        output[mask] += 40
        output = np.clip(output, 0, 255).astype(np.uint8)
        items.append(EvalItem(f"b{index:03d}", output, reference, mask, "x", reference))
    return items


def bench_extractor(label: str, feature, items, repeats: int) -> None:
    from engine.metrics.kid import DirectoryReferenceCache, MemoryReferenceCache, kid_on_masked_crop

    def evaluate(cache):
        started = time.perf_counter()
        result = kid_on_masked_crop(
            items, feature=feature, subsets=SUBSETS, subset_size=SUBSET_SIZE, seed=0, cache=cache
        )
        return time.perf_counter() - started, result

    evaluate(None)  # warm-up: first-call costs (allocator, kernels) stay out of the timings
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for kind in ("memory", "directory"):
            firsts, seconds, identical = [], [], True
            for repeat in range(repeats):
                folder = Path(scratch) / f"run{repeat}"
                cache = MemoryReferenceCache() if kind == "memory" else DirectoryReferenceCache(folder)
                first_s, first = evaluate(cache)
                # Memory: the same object, as within one process; directory: reopened, as a new process would.
                again = cache if kind == "memory" else DirectoryReferenceCache(folder)
                second_s, second = evaluate(again)
                if (cache.misses, again.hits) != (len(items), len(items)) or second.mean != first.mean:
                    identical = False
                firsts.append(first_s)
                seconds.append(second_s)
            rows.append((kind, statistics.median(firsts), statistics.median(seconds), identical))
        none_s = statistics.median(evaluate(None)[0] for _ in range(repeats))

    result = evaluate(None)[1]
    print(f"\n{label}: {feature.name}, input {feature.input_size}px, KID mean {result.mean:.6g} std {result.std:.3g}")
    for warning in result.warnings:
        print(f"  note: {warning}")
    print(f"  {'cache':<10} {'first s':>9} {'second s':>9} {'speed-up':>9}  second == first, all hits")
    for kind, first_s, second_s, identical in rows:
        same = "yes" if identical else "NO"
        print(f"  {kind:<10} {first_s:>9.3f} {second_s:>9.3f} {first_s / second_s:>8.2f}x  {same}")
    print(f"  {'no cache':<10} {none_s:>9.3f}")


def bench_mmd_only() -> None:
    import numpy as np

    from engine.metrics.kid import kid_from_features

    rng = np.random.default_rng(0)
    reference = rng.random((1000, 2048), dtype=np.float32)
    output = rng.random((1000, 2048), dtype=np.float32) * 1.05
    started = time.perf_counter()
    result = kid_from_features(reference, output, subsets=100, subset_size=1000, seed=0)
    elapsed = time.perf_counter() - started
    print(f"\nMMD only: 1000 x 2048 features per side, {result.subsets} subsets of {result.subset_size}: "
          f"{elapsed:.2f} s (KID mean {result.mean:.4g})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from engine.metrics.base import MetricUnavailable
    from engine.metrics.kid import inception_extractor, tiny_extractor

    torch.set_num_threads(args.threads)
    items = synthetic_items(args.items, args.size)
    print(f"KID cache benchmark: {len(items)} synthetic items at {args.size}x{args.size}, subsets {SUBSETS}, "
          f"subset_size {SUBSET_SIZE}, torch threads {torch.get_num_threads()}, median of {args.repeats}")

    bench_extractor("tiny extractor", tiny_extractor(input_size=299), items, args.repeats)
    try:
        inception = inception_extractor()
    except MetricUnavailable as error:
        print(f"\nInception: not run here: {error}")
    else:
        bench_extractor("Inception", inception, items, args.repeats)
    bench_mmd_only()
    return 0


if __name__ == "__main__":
    from bench._common import run_benchmark

    run_benchmark(main, "metrics")
