"""A report looked at as a person would: a demo sweep on the `tiny` model is run, reported,
and the HTML page is rendered by headless Chromium into a PNG to check by eye.

What is printed
---------------
* the time to write the report of the sweep (plus a vanilla baseline run) against the time
  to export the same runs to CSV in the same process (a ratio: the report's image work);
* where the report and the screenshot are.

Needs `chromium` (Debian: `apt-get install chromium`) for the screenshot; without it the
report is still written and its path printed.

Usage: python bench/report_screenshot.py [--out shot.png] [--steps 3] [--width 1400] [--height 2400]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench._common import run_benchmark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("report-screenshot.png"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from engine.spec import RunSpec
    from inpaint_tui.jobs.runs import queue_run
    from inpaint_tui.jobs.samples import ensure_demo
    from inpaint_tui.jobs.sweeps import expand_grid, parse_grid, queue_sweep
    from inpaint_tui.jobs.worker import execute_run
    from inpaint_tui.read.export import write_export
    from inpaint_tui.read.report import write_report
    from inpaint_tui.store import Store

    folder = Path(tempfile.mkdtemp(prefix="bench-report-"))
    store = Store(folder / "experiments.db")
    ensure_demo(store)
    evaluation = {"groups": ["background", "clip", "kid"], "models": "tiny"}
    baseline = queue_run(store, RunSpec.build("vanilla", steps=args.steps, evaluation=evaluation), sample_set="demo",
                         options={"animation": "gif"})
    points = expand_grid(["blended"], parse_grid(["progressive_shrink=0,2"]), seeds=[0], steps=[args.steps],
                         guidance=[7.5])
    swept = queue_sweep(store, points, model="tiny", sample_set="demo", evaluation=evaluation,
                        options={"animation": "gif"})
    run_ids = [baseline, *swept.run_ids]
    for run_id in run_ids:
        execute_run(store, run_id, device="cpu")

    started = time.perf_counter()
    write_export(store, run_ids, folder / "export" / "runs.csv")
    export_seconds = time.perf_counter() - started
    started = time.perf_counter()
    files = write_report(store, run_ids, folder / "report", baseline=baseline, sweep_id=swept.sweep_id)
    report_seconds = time.perf_counter() - started
    print(f"report of {len(run_ids)} runs: {report_seconds:.2f} s; export of the same runs {export_seconds:.2f} s; "
          f"ratio {report_seconds / export_seconds:.1f}")
    print(f"report: {files.html} ({len(files.images)} images)")

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        print("no chromium on PATH: open the report yourself, or `apt-get install chromium`")
        return
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={args.width},{args.height}", f"--screenshot={args.out.resolve()}",
                    files.html.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    print(f"screenshot: {args.out.resolve()} (look at it: tables, bold best values, mask outlines, images)")


if __name__ == "__main__":
    run_benchmark(main, "report_screenshot")
