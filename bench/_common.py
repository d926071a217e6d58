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
