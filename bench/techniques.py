"""Technique cost: seconds and model evaluations per image, relative to `vanilla`.

What is measured
----------------
Every technique registered in `engine.techniques` (`technique_names()`, so techniques added
later appear without editing this file) runs through `engine.inpaint` on the tiny model,
with its default parameters, on the same demo samples (already resized to the working size,
outside any timing), with the same run seed, steps and guidance. For each one:

* s/image: wall-clock seconds of the whole `engine.inpaint` call over the samples, divided
  by the number of samples (the technique, the runner's post-processing hook with everything
  off, the metrics: the same work around every technique, so the ratios compare techniques);
* ratio: s/image over vanilla's;
* UNet calls/image, its ratio to vanilla, and VAE encodes/decodes per image, from
  `SampleResult.cost` (counted by each technique; a CFG pair batched in one forward is one
  call). These are machine-independent; the seconds are not.

A second section applies the post-processing options every technique takes to `blended`:
background = paste, feather, poisson, decoder (with `--decoder-steps`, 10 by default instead of
the 75 a real run uses, to keep the benchmark short on a CPU; its cost grows linearly with the
steps) and post_condition (default strength 0.2), and reports what each adds to plain
`blended` in seconds and in model evaluations (decoder fine-tuning also counts its Adam
steps).

Method: pin `torch.set_num_threads`, one untimed warm-up run of every configuration (which also
drops any that fail, e.g. a technique still being written, with the error printed), then
`--repeats` timed rounds. Each round runs every configuration once, in an order rotated by
one each round, so load drift on the machine spreads over all of them. Reported: the median
over rounds. The tiny model makes the denoising itself cheap, so fixed costs (VAE passes,
compositing, a decoder's backward passes) weigh more than with a real SD model: read the
UNet-call ratios for what a real model would cost, the seconds for this machine.

Usage: python bench/techniques.py [--steps 10] [--repeats 3] [--samples 2] [--threads 2]
       [--decoder-steps 10]
It is a benchmark, not a test: it always exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/ off the path: its queue.py would shadow the stdlib

GUIDANCE = 7.5
RUN_SEED = 0
BASELINE = "vanilla"
POST_BASE = "blended"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="denoising steps per image (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds (default 3)")
    parser.add_argument("--samples", type=int, default=2,
                        help="how many demo samples, from the first (default 2, max 6)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--decoder-steps", type=int, default=10,
                        help="Adam steps for background=decoder (default 10; real runs default to 75)")
    args = parser.parse_args(argv)
    for name in ("steps", "repeats", "samples", "threads", "decoder_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


@dataclass
class Config:
    """One thing to time: a technique with parameters, shown under `label`."""

    label: str
    technique: str
    params: dict[str, Any]
    seconds: list[float] = field(default_factory=list)  # per image, one entry per round
    cost: tuple[float, float, float, float] | None = None  # per image: unet, encodes, decodes, optimisation
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import torch

    from engine.demo import demo_samples
    from engine.models import load_model
    from engine.runner import inpaint
    from engine.samples import resize_to, working_size
    from engine.techniques import technique_names

    torch.set_num_threads(args.threads)
    model = load_model("tiny", device="cpu")
    samples = [resize_to(s, working_size(s.size, model.resolution)) for s in demo_samples()[: args.samples]]

    techniques = [Config(name, name, {}) for name in technique_names()]
    post = [Config(f"{POST_BASE} (no post-processing)", POST_BASE, {})]
    post += [Config(f"background={b}", POST_BASE, {"background": b}) for b in ("paste", "feather", "poisson")]
    post.append(Config(f"background=decoder ({args.decoder_steps} steps)", POST_BASE,
                       {"background": "decoder", "decoder_steps": args.decoder_steps}))
    post.append(Config("post_condition=true", POST_BASE, {"post_condition": True}))
    configs = techniques + post

    def run(config: Config) -> float:
        """Seconds per image of one full pass over the samples; records the cost per image."""
        started = time.perf_counter()
        results = list(inpaint(model, config.technique, samples, seed=RUN_SEED, params=config.params,
                               steps=args.steps, guidance=GUIDANCE, errors="raise"))
        seconds = (time.perf_counter() - started) / len(samples)
        costs = [r.cost.as_tuple() for r in results]
        config.cost = tuple(sum(column) / len(costs) for column in zip(*costs))
        return seconds

    sizes = sorted({s.size for s in samples})
    print(f"technique benchmark: model tiny ({model.resolution}px) on {model.device}, {len(samples)} demo samples "
          f"({', '.join(s.id for s in samples)}) at {', '.join(f'{w}x{h}' for w, h in sizes)}")
    print(f"steps {args.steps}, guidance {GUIDANCE}, default parameters, torch threads {torch.get_num_threads()}, "
          f"repeats {args.repeats} (interleaved, rotated order, after 1 warm-up of each)")
    print(f"registered techniques: {', '.join(technique_names())}")

    # Warm-up, untimed; a configuration that fails here is reported and left out.
    for config in configs:
        try:
            run(config)
        except Exception as error:  # a technique mid-development must not stop the others
            config.error = f"{type(error).__name__}: {error}".splitlines()[0][:160]
    active = [c for c in configs if c.error is None]
    for round_index in range(args.repeats):
        shift = round_index % len(active) if active else 0
        for config in active[shift:] + active[:shift]:
            if config.error is not None:
                continue
            try:
                config.seconds.append(run(config))
            except Exception as error:
                config.error = f"{type(error).__name__}: {error}".splitlines()[0][:160]

    print()
    print_techniques(techniques)
    print()
    print_postprocessing(post, args.decoder_steps)
    timed = [c for c in configs if c.error is None and len(c.seconds) > 1]
    spread = max((max(c.seconds) / min(c.seconds) for c in timed), default=1.0)
    if spread > 1.25:
        print()
        print(f"note: a configuration's time varied {spread:.1f}x between rounds: the machine was busy; the "
              "interleaving keeps configurations comparable, but rerun on an idle machine for firm seconds")
    return 0


def _ok(config: Config) -> bool:
    return config.error is None and bool(config.seconds) and config.cost is not None


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base > 0 else "n/a"


def print_techniques(configs: list[Config]) -> None:
    base = next((c for c in configs if c.label == BASELINE and _ok(c)), None)
    print(f"techniques (default parameters), relative to {BASELINE}")
    header = f"{'technique':<16} {'s/image':>9} {'ratio':>7} {'UNet/img':>9} {'ratio':>7} {'VAE enc':>8} {'VAE dec':>8}"
    print(header)
    print("-" * len(header))
    for config in configs:
        if not _ok(config):
            print(f"{config.label:<16} failed: {config.error}")
            continue
        unet, encodes, decodes, _ = config.cost
        time_ratio = _ratio(config.median, base.median) if base else "n/a"
        unet_ratio = _ratio(unet, base.cost[0]) if base else "n/a"
        print(f"{config.label:<16} {config.median:>9.3f} {time_ratio:>7} {unet:>9.1f} {unet_ratio:>7} "
              f"{encodes:>8.1f} {decodes:>8.1f}")


def print_postprocessing(configs: list[Config], decoder_steps: int) -> None:
    base = configs[0]
    print(f"post-processing options applied to {POST_BASE}: added cost per image")
    header = (f"{'option':<32} {'s/image':>9} {'+s/image':>9} {'ratio':>7} {'UNet/img':>9} {'+UNet':>6} "
              f"{'VAE enc':>8} {'VAE dec':>8} {'opt steps':>9}")
    print(header)
    print("-" * len(header))
    if not _ok(base):
        print(f"{base.label:<32} failed: {base.error}")
        return
    for config in configs:
        if not _ok(config):
            print(f"{config.label:<32} failed: {config.error}")
            continue
        unet, encodes, decodes, optimisation = config.cost
        added = config.median - base.median
        print(f"{config.label:<32} {config.median:>9.3f} {added:>+9.3f} {_ratio(config.median, base.median):>7} "
              f"{unet:>9.1f} {unet - base.cost[0]:>+6.1f} {encodes:>8.1f} {decodes:>8.1f} {optimisation:>9.1f}")
    print(f"(decoder at {decoder_steps} Adam steps; a real run's 75 cost about {75 / decoder_steps:.1f}x its added "
          "time, each step one decoder forward and backward)")


if __name__ == "__main__":
    from bench._common import run_benchmark

    run_benchmark(main, "techniques")
