"""Start-up: how long a command takes from launch to its answer, as a ratio to `--help`.

What is measured
----------------
On a database of the demo samples and `--runs` finished runs, each round launches, in an
order shuffled per round (so load drift hits every side alike):

* `inpaint-tui --help`: the baseline, the cheapest command there is;
* `inpaint-tui runs list`: wall time until the process exits, table printed;
* the TUI: `inpaint-tui` started in a detached tmux window (a real terminal, `--size`), until
  its first screen shows the newest run (polled every 10 ms with `tmux capture-pane`).

Each side's time is divided by the same round's `--help` time; the median of those per-round
ratios is reported (targets from issue 16: runs list <= 1.5, TUI first screen <= 2.5), with
the median absolute times. The commands run as a user runs them: the console script, byte code
written (`PYTHONDONTWRITEBYTECODE` unset: a user's install keeps its .pyc files) and warmed by
one untimed round.

Usage: python bench/startup.py [--rounds 9] [--runs 30] [--size 120x40]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench._common import run_benchmark  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def command() -> list[str]:
    script = Path(sys.executable).with_name("inpaint-tui")
    return [str(script)] if script.exists() else [sys.executable, "-m", "inpaint_tui.cli"]


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    return env


def timed_process(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment(), check=True,
                   timeout=120)
    return time.perf_counter() - start


def timed_tui(db: Path, size: str, marker: str) -> float:
    """Launch to the first screen showing `marker`, in a real terminal (tmux)."""
    columns, lines = size.split("x")
    session = f"bench-startup-{os.getpid()}"
    shell_command = " ".join(["env", "-u", "PYTHONDONTWRITEBYTECODE", "HF_HUB_OFFLINE=1", f"PYTHONPATH={ROOT}",
                              *command(), "--db", str(db)])
    start = time.perf_counter()
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", columns, "-y", lines, shell_command], check=True)
    try:
        deadline = start + 60
        while time.perf_counter() < deadline:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                    text=True).stdout
            if marker in screen:
                return time.perf_counter() - start
            time.sleep(0.01)
        raise RuntimeError(f"the TUI's first screen never showed {marker!r}:\n{screen}")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--size", default="120x40")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        raise RuntimeError("tmux is needed for the TUI's side")
    from tests.scale_database import build

    folder = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    db = folder / "experiments.db"
    build(db, args.runs).close()
    marker = f"{args.runs} "  # the newest run's id, in the dashboard's latest results
    sides = {
        "help": lambda: timed_process([*command(), "--help"]),
        "runs list": lambda: timed_process([*command(), "--db", str(db), "runs", "list"]),
        "tui first screen": lambda: timed_tui(db, args.size, marker),
    }
    for side in sides.values():  # warm-up: byte code, page cache
        side()
    times: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    rng = random.Random(0)
    for _ in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            times[name].append(sides[name]())
    print(f"start-up, {args.rounds} rounds, {args.runs} runs, terminal {args.size} (median seconds; median of "
          "per-round ratios to --help)")
    for name in sides:
        ratios = [value / baseline for value, baseline in zip(times[name], times["help"])]
        print(f"  {name:>18}: {statistics.median(times[name]):6.3f} s   x{statistics.median(ratios):.2f}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    run_benchmark(main, "startup")
