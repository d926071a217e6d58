"""Every technique and post-processing option on a GPU in fp16 (and fp32) with the tiny model:
no NaN, the costs stated, the background invariants where they are exact, seconds per image.

    python bench/device_check.py [--device cuda] [--steps 10]

For a lent GPU machine, which has torch but not this project's other packages: carry the
diffusers wheel (see the device tool's notes). Exits 0; prints one line per configuration.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/ off the path: its queue.py would shadow the stdlib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    import numpy as np
    import torch

    from engine.demo import demo_samples
    from engine.models import load_model
    from engine.runner import inpaint
    from engine.techniques import technique_names

    samples = demo_samples()[:3]
    options = [{}, {"background": "paste"}, {"background": "feather"}, {"background": "poisson"},
               {"background": "decoder", "decoder_steps": 10}, {"post_condition": True}, {"resize": "crop"}]
    for dtype in ("fp16", "fp32"):
        model = load_model("tiny", device=args.device, dtype=dtype)
        print(f"== {args.device} {dtype}: {torch.cuda.get_device_name() if args.device.startswith('cuda') else ''}")
        for technique in technique_names():
            for params in ([{}] if technique != "blended" else options):
                started = time.perf_counter()
                results = list(inpaint(model, technique, samples, seed=0, steps=args.steps, params=params))
                seconds = (time.perf_counter() - started) / len(samples)
                failed = [r.error for r in results if not r.ok]
                pixels = [np.asarray(r.image) for r in results if r.ok]
                flat = bool(pixels) and all(p.std() == 0 for p in pixels)  # all-black/NaN outputs decode flat
                mse = [round(r.metrics["bg_mse"], 4) for r in results if r.ok]
                memory = max((r.peak_memory_mb for r in results if r.ok), default=0)
                status = "FAILED " + "; ".join(failed) if failed else ("FLAT OUTPUT" if flat else "ok")
                print(f"{technique:12} {str(params):45} {status:8} bg_mse {mse} unet {results[0].cost.unet_calls} "
                      f"{seconds:.3f} s/img peak {memory:.0f} MB")


if __name__ == "__main__":
    from bench._common import run_benchmark

    run_benchmark(main, "device check")
