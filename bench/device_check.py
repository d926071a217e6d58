"""Every technique and post-processing option on a GPU in fp16 (and fp32) with a model (the
tiny one by default): no NaN, the costs stated, the background invariants where they are
exact, seconds per image, peak memory.

    python bench/device_check.py [--device cuda] [--steps 10] [--model tiny] [--dtypes fp16,fp32]
    python bench/device_check.py --model sdxl-arch --dtypes fp16 --steps 2 --samples 1

With a full-size `-arch` preset (random weights, the preset's resolution: 1024 px for
sdxl-arch) this is the fp16 finiteness and memory check of the real architecture.

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
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--dtypes", default="fp16,fp32")
    parser.add_argument("--samples", type=int, default=3, help="demo samples per configuration")
    args = parser.parse_args()

    import numpy as np
    import torch

    from engine.demo import demo_samples
    from engine.models import load_model
    from engine.runner import inpaint
    from engine.techniques import technique_names

    samples = demo_samples()[: args.samples]
    options = [{}, {"background": "paste"}, {"background": "feather"}, {"background": "poisson"},
               {"background": "decoder", "decoder_steps": 10}, {"post_condition": True}, {"resize": "crop"}]
    for dtype in args.dtypes.split(","):
        model = load_model(args.model, device=args.device, dtype=dtype)
        print(f"== {args.model} on {args.device} {dtype}: "
              f"{torch.cuda.get_device_name() if args.device.startswith('cuda') else ''}, {model.resolution} px")
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
