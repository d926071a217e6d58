"""How values are shown, for both faces (CLI tables and TUI widgets) and the report: number
formats, parameters that differ from defaults, best values per metric direction, progress
lines. Torch-free and free of Rich and Textual."""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

from engine.metrics.catalogue import METRICS, higher_is_better

# ANSI escape sequences (CSI such as colours and cursor moves, OSC such as titles and links,
# two-character ESC ones), then any other C0/C1 control character or DEL.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` safe to print on a terminal: escape sequences removed, other control characters
    (and newlines/tabs, which would break a table row) shown as spaces. For display only: the
    stored text stays as imported.

    >>> printable("a \\x1b[31mred\\x1b[0m cat\\x07sits")
    'a red cat sits'
    """
    text = _ESCAPES.sub("", text)
    return _CONTROLS.sub(" ", text.replace("\n", " ").replace("\t", " "))


def _not_a_number(value: float | None) -> str | None:
    """How every number format shows a missing or non-finite value; None for a finite one."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def format_number(value: float | None, *, whole: bool = False) -> str:
    """4 decimals, scientific below 1e-3 and from 1e5; with `whole`, a whole number (a count
    such as unet_calls, or its mean when every sample had the same count) without decimals.

    >>> [format_number(v) for v in (0.01234567, 4.0, 0.0, 2.5e-5, None)]
    ['0.0123', '4.0000', '0.0000', '2.500e-05', '-']
    >>> format_number(4.0, whole=True), format_number(4.5, whole=True)
    ('4', '4.5000')
    """
    special = _not_a_number(value)
    if special is not None:
        return special
    if whole and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4f}"


def compact_number(value: float | None) -> str:
    """Four significant digits (0.0105, 26.25, 20): a narrow table's numbers, never cut."""
    special = _not_a_number(value)
    if special is not None:
        return special
    text = f"{value:.4g}"
    return text.replace("e-0", "e-").replace("e+0", "e")


def format_metric(name: str, value: float | None) -> str:
    """A metric's value: counts (the catalogue's `count` metrics) as whole numbers where they
    are whole, everything else as format_number."""
    info = METRICS.get(name)
    return format_number(value, whole=bool(info and info.count))


def short(value: float) -> str:
    return ("inf" if value > 0 else "-inf") if math.isinf(value) else f"{value:.3g}"


def format_interval(low: float | None, high: float | None, *, number=short, separator: str = "–") -> str:
    """`[low–high]` (`separator` ", " where bounds are often negative: `[-0.03, -0.01]`); a
    single point (every resample equal: all values, or all differences, the same) is
    `all equal`, not a range `[4–4]`; `-` when there is none (one value)."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "-"
    if low == high:
        return "all equal"
    return f"[{number(low)}{separator}{number(high)}]"


def format_p_value(p: float) -> str:
    """3 significant digits, with more where rounding would put it on the other side of 0.05
    (the verdict's level), so the shown p never contradicts the verdict."""
    for digits in (3, 4, 5, 6):
        text = f"{p:.{digits}g}"
        if (float(text) < 0.05) == (p < 0.05):
            return text
    return repr(p)


def format_seed(seed: int | None) -> str:
    """A per-sample seed (63-bit, engine.seeding) in hexadecimal: 16 digits at most instead
    of 19 decimal ones, for tables headed "seed (hex)". Display only: the stored value is
    unchanged and --json has it in decimal. Run seeds (small, typed by the user) stay decimal.

    >>> format_seed(5863425046325970838), format_seed(7)
    ('515f12038d634796', '7')
    """
    return "-" if seed is None else f"{seed:x}"


def plural(count: int, word: str, plural_word: str | None = None) -> str:
    """`1 run`, `2 runs`, `0 runs`.

    >>> plural(1, "run"), plural(3, "sample"), plural(2, "match", "matches")
    ('1 run', '3 samples', '2 matches')
    """
    return f"{count} {word if count == 1 else plural_word or word + 's'}"


def format_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "-"


def format_summary(summary, value: float | None = None, name: str | None = None) -> str:
    """`mean [low–high]` (bootstrap interval; `mean (all equal)` when every sample had the
    value, `mean` alone with one sample), `value ±std` (set-level), or "missing". With the
    metric's `name`, counts show as whole numbers (format_metric)."""
    number = (lambda v: format_metric(name, v)) if name else format_number
    if summary is None or summary.value is None:
        return "missing" if summary is not None else number(value)
    text = number(summary.value)
    if summary.std is not None:
        return f"{text} ±{short(summary.std)}"
    negative = summary.ci_low is not None and summary.ci_low < 0  # "[-2.5–-0.5]" reads as a typo
    interval = format_interval(summary.ci_low, summary.ci_high, separator=", " if negative else "–")
    if interval == "all equal":
        # A count every sample shares (unet_calls) is just that number; a measured value
        # every sample shares is worth saying.
        counted = name is not None and name in METRICS and METRICS[name].count
        return text if counted else f"{text} (all equal)"
    return text if interval == "-" else f"{text} {interval}"


def best_values(rows: Sequence[Any], names: Iterable[str]) -> dict[str, float]:
    """Per metric, the best value among rows (`row.metrics`), knowing its direction."""
    best = {}
    for name in names:
        direction = higher_is_better(name)
        values = [row.metrics[name] for row in rows if name in row.metrics and not math.isnan(row.metrics[name])]
        if values and direction is not None:
            best[name] = max(values) if direction else min(values)
    return best


def format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def format_progress(progress) -> str:
    """`sample 3/6 step 12/50 4.1 it/s ETA 1m05s` for a running run; "-" without progress."""
    if progress is None:
        return "-"
    if progress.phase != "generating":
        return progress.phase
    text = f"sample {min(progress.samples_done + 1, progress.sample_count)}/{progress.sample_count} " \
           f"step {progress.step}/{progress.steps}"
    if progress.steps_per_second:
        text += f" {progress.steps_per_second:.1f} it/s"
    if progress.eta_seconds is not None:
        text += f" ETA {format_duration(progress.eta_seconds)}"
    return text
