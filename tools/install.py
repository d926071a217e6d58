"""Install inpaint-tui into the running interpreter's environment (meant for `.venv`).

torch goes first, chosen for the machine: an existing torch is kept (a GPU box's CUDA
build stays); with an NVIDIA driver present pip's default (CUDA) build is installed; without
one the CPU build, so a laptop or CI machine does not download several GB of CUDA
libraries. Then the package itself, editable, with the extras asked for.

    python tools/install.py [--extras test,dev,postgres]

Environment: TORCH_SPEC (default "torch==2.13.0" for the CPU case) and TORCH_INDEX_URL
(e.g. PyTorch's CPU wheel index where PyPI's default wheel is a CUDA build).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_TORCH = "torch==2.13.0"


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def has_nvidia_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        return subprocess.run([smi, "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="", help="comma-separated extras, e.g. test, dev or postgres")
    args = parser.parse_args()

    if importlib.util.find_spec("torch") is not None:
        print("torch already installed: keeping it", flush=True)
    else:
        index = os.environ.get("TORCH_INDEX_URL")
        extra = ["--index-url", index] if index else []
        if has_nvidia_gpu():
            pip(os.environ.get("TORCH_SPEC", "torch"), *extra)
        else:
            pip(os.environ.get("TORCH_SPEC", CPU_TORCH), *extra)
    target = f"{ROOT}[{args.extras}]" if args.extras else str(ROOT)
    pip("-e", target)


if __name__ == "__main__":
    main()
