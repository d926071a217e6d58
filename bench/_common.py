"""What every benchmark script shares. Run them as `python bench/NAME.py`."""

from __future__ import annotations

import sys
import traceback
from typing import Callable


def run_benchmark(main: Callable[[], object], name: str) -> None:
    """Run `main` and exit 0 whatever happens: benchmarks report, they never fail CI."""
    try:
        main()
    except SystemExit as exit_:  # --help / bad arguments
        if exit_.code not in (0, None):
            print(f"{name} benchmark: bad arguments ({exit_.code})", file=sys.stderr)
    except Exception as error:
        traceback.print_exc()
        print(f"{name} benchmark could not run: {type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(0)


def interleaved(cases: dict[str, Callable[[], object]], rounds: int, *, repeat: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each case, one entry per round: in every round each case is timed
    `repeat` times back to back, the order of the cases reversed every other round (ABBA), so
    drift and background load fall on all of them alike. Compare cases by the median of the
    per-round ratios, not by one run each."""
    import time

    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            started = time.perf_counter()
            for _ in range(repeat):
                cases[name]()
            times[name].append((time.perf_counter() - started) / repeat)
    return times


def synthetic_samples(count: int, side: int, prefix: str = "bench"):
    """`count` distinct square samples of `side` px: a smooth noisy gradient and a mask box
    placed per sample, so a batch's samples differ (images, masks and prompts)."""
    import numpy as np
    from PIL import Image

    from engine.samples import make_sample

    made = []
    y, x = np.mgrid[0:side, 0:side]
    for k in range(count):
        rng = np.random.default_rng(k)
        base = np.stack([x / side, y / side, (x + y) / (2 * side)], axis=2) + rng.normal(0, 0.05, (side, side, 3))
        image = Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8), mode="RGB")
        mask = np.zeros((side, side), dtype=np.float32)
        offset = (k * side // (2 * count)) % (side // 2)
        mask[offset : offset + side // 2, side // 4 : 3 * side // 4] = 1.0
        made.append(make_sample(f"{prefix}-{k}", image, mask, f"a photo of object {k}"))
    return made
