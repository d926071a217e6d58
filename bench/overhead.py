"""Runner overhead: `engine.inpaint(..., "vanilla", ...)` versus a bare diffusers loop.

What is measured
----------------
Images per second of two paths over the same work, in one process, on one loaded model:

* runner: `engine.inpaint(model, "vanilla", samples, seed=0, steps=N, guidance=7.5,
  on_step=<no-op>)`, consuming every `SampleResult`.
* bare:   a plain loop calling diffusers' `StableDiffusionInpaintPipeline` (built once, over
  the same tiny-model components) with the same prompt, image, mask, size, steps, guidance,
  per-sample seed (`engine.seeding.sample_seed(0, sample.id)`) and `output_type="np"`.

Both get the demo samples already resized to the model's working size
(`working_size`/`resize_to`, done once before timing), so the denoising work is identical
and any difference is what the runner adds around the pipeline call:

* resizing: `working_size` + `resize_to` per sample (a no-op here: the inputs are already at
  working size, which is the like-for-like case; a bare loop would have to resize too);
* building a `StableDiffusionInpaintPipeline` and a fresh DDIM scheduler per sample
  (vanilla calls `model.inpaint_pipeline()` each time; the bare loop builds one);
* the mask as a PIL image (`Sample.mask_image()`) per sample;
* the progress callback: `callback_on_step_end` on every step, building a `Progress`
  and calling `on_step` (a no-op counter here, as a UI would pass one);
* output conversion: `to_uint8` rounding and `Image.fromarray` to a PIL image;
* metrics: `sample_metrics` (background MSE, PSNR, SSIM and seam-ring metrics against the source);
* bookkeeping: peak-memory probe (`getrusage` on CPU), timers, the `SampleResult`.

Why: the runner is the single entry point for notebooks, jobs and the TUI; its throughput
should stay within 5% of calling diffusers yourself, or research timings would be skewed by
the tool. The tiny model makes the per-step work small, so this is a pessimistic
(overhead-magnifying) setting compared with a real SD model.

Method: pin `torch.set_num_threads`, one untimed warm-up pass of each path (also used to
check that both produce identical uint8 pixels for the first sample, with the runner's
`to_uint8` rounding), then `--repeats` timed rounds. Each round is one full runner pass and
one full bare pass, interleaved sample by sample (runner, bare, bare, runner, ...; the
runner's generator is advanced one sample at a time), so drift and other load on the machine
hit both paths alike. Reported: per-path median images/s over rounds and the median of the
per-round runner/bare ratios.

Usage: python bench/overhead.py [--steps 10] [--repeats 3] [--threads 2]
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

TARGET_RATIO = 0.95
GUIDANCE = 7.5
RUN_SEED = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="denoising steps per image (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import numpy as np
    import torch

    from engine.demo import demo_samples
    from engine.models import load_model
    from engine.runner import inpaint, to_uint8
    from engine.samples import resize_to, working_size
    from engine.seeding import sample_seed
    from engine.techniques import get_technique

    torch.set_num_threads(args.threads)
    model = load_model("tiny", device="cpu")
    technique = get_technique("vanilla")

    # Same inputs for both paths, resized once, outside any timing.
    samples = [resize_to(s, working_size(s.size, model.resolution)) for s in demo_samples()]
    seeds = {s.id: sample_seed(RUN_SEED, s.id) for s in samples}
    bare_inputs = [(s.prompt, s.image, s.mask_image(), s.size, seeds[s.id]) for s in samples]
    pipe = model.inpaint_pipeline()  # the bare loop builds its pipeline once, like a user would

    callbacks = 0

    def on_step(_progress) -> None:
        nonlocal callbacks
        callbacks += 1

    def run_runner() -> list:
        results = list(
            inpaint(model, technique, samples, seed=RUN_SEED, steps=args.steps, guidance=GUIDANCE,
                    on_step=on_step, errors="raise")
        )
        return [np.asarray(r.image) for r in results]

    def bare_one(index: int):
        prompt, image, mask, (width, height), seed = bare_inputs[index]
        out = pipe(
            prompt=prompt,
            image=image,
            mask_image=mask,
            height=height,
            width=width,
            num_inference_steps=args.steps,
            guidance_scale=GUIDANCE,
            generator=torch.Generator(device=model.device).manual_seed(seed),
            output_type="np",
        )
        return out.images[0]

    def run_bare() -> list:
        return [bare_one(index) for index in range(len(bare_inputs))]

    def timed_round(round_index: int) -> dict[str, list[float]]:
        """One timed round: seconds per sample for each path. Interleaved per sample: the
        runner's generator is advanced one sample, the bare loop does the same sample, and the
        order flips every other sample (ABBA), so both paths see the same machine state."""
        results = inpaint(model, technique, samples, seed=RUN_SEED, steps=args.steps, guidance=GUIDANCE,
                          on_step=on_step, errors="raise")
        seconds: dict[str, list[float]] = {"runner": [], "bare": []}
        for index in range(len(samples)):
            order = ("runner", "bare") if (index + round_index) % 2 == 0 else ("bare", "runner")
            for path in order:
                started = time.perf_counter()
                if path == "runner":
                    result = next(results)
                    if result.sample_id != samples[index].id:
                        raise RuntimeError(f"runner yielded {result.sample_id}, expected {samples[index].id}")
                else:
                    bare_one(index)
                seconds[path].append(time.perf_counter() - started)
        started = time.perf_counter()
        leftover = next(results, None)  # let the generator finish; counted as runner time
        seconds["runner"][-1] += time.perf_counter() - started
        if leftover is not None:
            raise RuntimeError("runner yielded more results than samples")
        return seconds

    sizes = sorted({s.size for s in samples})
    print(f"runner overhead benchmark: vanilla, model tiny ({model.resolution}px) on {model.device}, "
          f"{len(samples)} demo samples at {', '.join(f'{w}x{h}' for w, h in sizes)}")
    print(f"steps {args.steps}, guidance {GUIDANCE}, torch threads {torch.get_num_threads()}, "
          f"repeats {args.repeats} (interleaved, after 1 warm-up of each)")

    # Warm-up (untimed), doubling as the like-for-like check.
    runner_pixels = run_runner()
    bare_pixels = [to_uint8(image) for image in run_bare()]
    first_equal = bool(np.array_equal(runner_pixels[0], bare_pixels[0]))
    all_equal = all(np.array_equal(a, b) for a, b in zip(runner_pixels, bare_pixels))
    print(f"identical pixels, first sample ({samples[0].id}): {'yes' if first_equal else 'NO'}"
          f"  (all {len(samples)} samples: {'yes' if all_equal else 'no'})")

    rounds = [timed_round(round_index) for round_index in range(max(1, args.repeats))]
    count = len(samples)
    rates = {path: [count / sum(seconds[path]) for seconds in rounds] for path in ("runner", "bare")}
    median = {path: statistics.median(values) for path, values in rates.items()}
    # The median of the per-round ratios: both paths of a round saw the same machine state; a
    # ratio of the two medians could pair a fast round of one with a slow round of the other.
    ratio = statistics.median(runner / bare for runner, bare in zip(rates["runner"], rates["bare"]))

    print()
    print(f"{'round':<8} {'runner img/s':>12} {'bare img/s':>12} {'runner/bare':>12}")
    for round_index, (runner_rate, bare_rate) in enumerate(zip(rates["runner"], rates["bare"]), 1):
        print(f"{round_index:<8} {runner_rate:>12.3f} {bare_rate:>12.3f} {runner_rate / bare_rate:>12.3f}")
    print(f"{'median':<8} {median['runner']:>12.3f} {median['bare']:>12.3f} {ratio:>12.3f}"
          f"   <- runner overhead {100 * (1 - ratio):+.1f}%")
    spread = max(max(values) / min(values) for values in rates.values())
    if spread > 1.25:
        print(f"note: throughput varied {spread:.1f}x between rounds: the machine was busy; the interleaving "
              "keeps the two paths comparable, but rerun on an idle machine for a firm number")
    print()
    print(f"target: runner within 5% of bare diffusers (ratio >= {TARGET_RATIO})")
    print(f"result: {'met' if ratio >= TARGET_RATIO else 'NOT met'} (ratio {ratio:.3f})")
    if not first_equal:
        print("warning: the two paths did not produce identical pixels; the comparison is not like for like")
    return 0


if __name__ == "__main__":
    from bench._common import run_benchmark

    run_benchmark(main, "overhead")
