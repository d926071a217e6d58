"""The metric catalogue: the one owner of what each metric is. Torch-free.

For every metric the tool can store: its name, definition, direction (higher or lower is
better), level (one value per sample, or one per run), group (what computes it), unit, and
how it is summarised per run:
- `bootstrap`: per-sample values; the run's value is their mean with a 95% percentile
  bootstrap interval over samples (engine.metrics.stats), samples taken in sample-id order;
- `set`: a set-level value computed once from the whole run (KID: mean ± std over subsets);
- `wilson`: a proportion of per-sample successes with its Wilson score interval;
- `study`: people's judgements of the runs compared in one study (inpaint-tui judge), fitted
  together; the value and a bootstrap interval over the study's samples;
- `summarised_as`: a per-sample metric whose per-run summary is another catalogue entry
  (prompt_hit per sample, prompt_precision per run), so the same number is not stored twice.

Every other list (metric groups, their default selection, the columns tables show first,
leaderboard choices, the report's arrows, the TUI's sort direction, export columns) is
derived from here. Asking for the direction of a name that is not here is an error, never a
guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.params import ParamError

HIGHER, LOWER = "higher", "lower"
SAMPLE, RUN = "sample", "run"


class UnknownMetric(ParamError):
    """A metric or group name the catalogue does not have; the message lists the known ones."""


@dataclass(frozen=True)
class MetricInfo:
    name: str
    description: str
    direction: str  # HIGHER or LOWER
    level: str  # SAMPLE or RUN
    group: str
    unit: str = ""
    summary: str = "bootstrap"  # bootstrap | set | wilson | study (see the module docstring)
    summarised_as: str | None = None  # a per-sample metric summarised by another entry
    key: bool = False  # shown first in tables (in catalogue order)
    count: bool = False  # whole numbers per sample (model evaluations, hits): shown without decimals

    def __post_init__(self) -> None:
        if self.direction not in (HIGHER, LOWER):
            raise ValueError(f"metric {self.name!r}: direction must be {HIGHER!r} or {LOWER!r}")
        if self.level not in (SAMPLE, RUN):
            raise ValueError(f"metric {self.name!r}: level must be {SAMPLE!r} or {RUN!r}")
        if self.summary not in ("bootstrap", "set", "wilson", "study"):
            raise ValueError(f"metric {self.name!r}: unknown summary {self.summary!r}")

    @property
    def higher_is_better(self) -> bool:
        return self.direction == HIGHER

    @property
    def arrow(self) -> str:
        return "↑" if self.direction == HIGHER else "↓"

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "direction": self.direction,
                "level": self.level, "group": self.group, "unit": self.unit, "summary": self.summary,
                "summarised_as": self.summarised_as}


@dataclass(frozen=True)
class GroupInfo:
    """What computes a group's metrics. `at_generation`: cheap per-sample metrics computed by
    the worker as each sample finishes (so live tables have them); the others are computed
    once at the end of the run, with models. `selectable`: chosen per run (`--metrics`);
    the cost group is always recorded."""

    name: str
    description: str
    at_generation: bool
    selectable: bool = True
    default: bool = True
    why_not_selectable: str = ""  # for a group `--metrics` cannot choose: where its values come from


_GROUPS = (
    GroupInfo("background", "fidelity of the unmasked region: bg_mse, bg_psnr, bg_ssim, ring_mse, ring_psnr",
              at_generation=True),
    GroupInfo("clip", "CLIP alignment with the prompt: clip_local (mask crop), clip_global", at_generation=False),
    GroupInfo("precision", "prompt-following precision: an open-vocabulary detector finds the prompted object "
              "in the mask's box (prompt_hit, prompt_precision)", at_generation=False),
    GroupInfo("kid", "KID between masked crops of outputs and references", at_generation=False),
    GroupInfo("cost", "time, memory and model evaluations per image", at_generation=True, selectable=False,
              why_not_selectable="is measured while generating, always"),
    GroupInfo("human", "people's blind pairwise judgements (inpaint-tui judge): human", at_generation=False,
              selectable=False, default=False, why_not_selectable="comes from people's judgements (inpaint-tui judge)"),
)

_METRICS = (
    MetricInfo("bg_mse", "mean squared error against the input over unmasked pixels and RGB channels, images in "
               "[0, 1] (per-channel mean: BrushBench's convention is 3x this)", LOWER, SAMPLE, "background", key=True),
    MetricInfo("bg_psnr", "10·log10(1 / bg_mse) in dB (inf when the background is identical; infinite values "
               "are left out of the run's mean and counted)", HIGHER, SAMPLE, "background", "dB", key=True),
    MetricInfo("bg_ssim", "SSIM against the input (Wang et al.: Gaussian sigma 1.5, 11x11 window, data range 1), "
               "mean over RGB and the pixels whose whole window lies in the unmasked region and inside the image "
               "(a 5-pixel border dropped)", HIGHER, SAMPLE, "background", key=True),
    MetricInfo("ring_mse", "mean squared error against the input over unmasked pixels within ring_width px "
               "(square neighbourhood, default 8) of the mask: the seam", LOWER, SAMPLE, "background", key=True),
    MetricInfo("ring_psnr", "10·log10(1 / ring_mse) in dB (inf when the ring is identical)", HIGHER, SAMPLE,
               "background", "dB"),
    MetricInfo("clip_local", "CLIP score max(100·cos, 0) of the square crop around the mask's box (resized to "
               "224) against the prompt", HIGHER, SAMPLE, "clip", key=True),
    MetricInfo("clip_global", "CLIP score max(100·cos, 0) of the whole output against the prompt", HIGHER, SAMPLE,
               "clip", key=True),
    MetricInfo("prompt_hit", "1 when the detector finds the prompted object (score >= 0.1) with IoU >= 0.3 "
               "against the mask's box, else 0", HIGHER, SAMPLE, "precision", summarised_as="prompt_precision",
               key=True, count=True),
    MetricInfo("prompt_precision", "share of samples with prompt_hit = 1, with its 95% Wilson score interval",
               HIGHER, RUN, "precision", summary="wilson", key=True),
    MetricInfo("kid", "kernel inception distance between the masked crops of outputs and of references "
               "(unbiased MMD², cubic polynomial kernel): mean ± std over subsets", LOWER, RUN, "kid",
               summary="set", key=True),
    MetricInfo("human", "Bradley–Terry strength from blind pairwise judgements (inpaint-tui judge): log-odds of "
               "beating the study's average run (Σ = 0 over the runs judged together, so only comparable within one "
               "study), with its 95% bootstrap interval over samples", HIGHER, RUN, "human", summary="study", key=True),
    MetricInfo("unet_calls", "UNet forward passes per image (a batched CFG pair counts once)", LOWER, SAMPLE,
               "cost", key=True, count=True),
    MetricInfo("seconds", "wall time to inpaint the sample (technique only, no I/O; after a warm-up)", LOWER, SAMPLE,
               "cost", "s", key=True),
    MetricInfo("peak_memory_mb", "peak CUDA memory allocated, or growth of the process's peak RSS on CPU", LOWER,
               SAMPLE, "cost", "MB"),
    MetricInfo("vae_encodes", "VAE encoder passes per image", LOWER, SAMPLE, "cost", count=True),
    MetricInfo("vae_decodes", "VAE decoder passes per image", LOWER, SAMPLE, "cost", count=True),
    MetricInfo("optimisation_steps", "gradient steps per image (decoder fine-tuning)", LOWER, SAMPLE, "cost",
               count=True),
)

METRICS: dict[str, MetricInfo] = {m.name: m for m in _METRICS}
METRIC_GROUPS: dict[str, GroupInfo] = {g.name: g for g in _GROUPS}
GROUP_METRICS: dict[str, tuple[str, ...]] = {
    g.name: tuple(m.name for m in _METRICS if m.group == g.name) for g in _GROUPS
}
GROUPS: tuple[str, ...] = tuple(g.name for g in _GROUPS if g.selectable)  # what `--metrics` may name
DEFAULT_GROUPS: tuple[str, ...] = tuple(g.name for g in _GROUPS if g.selectable and g.default)
KEY_METRICS: tuple[str, ...] = tuple(m.name for m in _METRICS if m.key)
DEFAULT_RANKING_METRIC = "bg_mse"  # what a leaderboard ranks by unless told otherwise
HUMAN_METRIC = "human"  # the per-run score judging studies write (its value names its study)

if METRICS[HUMAN_METRIC].summary != "study" or [m.name for m in _METRICS if m.summary == "study"] != [HUMAN_METRIC]:
    raise ValueError(f"{HUMAN_METRIC!r} must be the one metric summarised per judging study")
for _metric in _METRICS:  # a broken catalogue fails on import, not in a table
    if _metric.group not in METRIC_GROUPS:
        raise ValueError(f"metric {_metric.name!r}: unknown group {_metric.group!r}")
    if _metric.summarised_as is not None and METRICS.get(_metric.summarised_as, _metric).level != RUN:
        raise ValueError(f"metric {_metric.name!r}: summarised_as must name a per-run metric")


def metric_info(name: str) -> MetricInfo:
    try:
        return METRICS[name]
    except KeyError:
        raise UnknownMetric(f"unknown metric {name!r} (known: {', '.join(METRICS)})") from None


def higher_is_better(name: str) -> bool:
    """The metric's direction; an unknown name raises UnknownMetric."""
    return metric_info(name).higher_is_better


def group_of(name: str) -> str:
    """The group computing a metric (a group's own name maps to itself)."""
    if name in METRIC_GROUPS:
        return name
    if name in METRICS:
        return METRICS[name].group
    known = ", ".join(METRICS)
    raise UnknownMetric(f"unknown metric {name!r} (known: groups {', '.join(GROUPS)}, or {known})")


def parse_groups(text: str | None, *, option: str = "--metrics") -> tuple[str, ...]:
    """A comma-separated list of groups (or metric names, meaning their group) as the
    selectable groups it names, in catalogue order; None is the default selection, an empty
    text no group at all."""
    if text is None:
        return DEFAULT_GROUPS
    names = [part.strip() for part in text.split(",") if part.strip()]
    chosen = set()
    for name in names:
        group = group_of(name) if name in METRICS or name in METRIC_GROUPS else None
        if group is None:
            raise UnknownMetric(f"{option}: unknown metric {name!r} (groups: {', '.join(GROUPS)}, or a metric "
                                f"of theirs)")
        if not METRIC_GROUPS[group].selectable:
            raise UnknownMetric(f"{option}: {name!r} {METRIC_GROUPS[group].why_not_selectable} (choose among the "
                                f"groups {', '.join(GROUPS)})")
        chosen.add(group)
    return tuple(g for g in GROUPS if g in chosen)


def sample_level(names) -> list[str]:
    """The per-sample metrics among `names` (catalogue order)."""
    present = set(names)
    return [m.name for m in _METRICS if m.name in present and m.level == SAMPLE]


def key_metrics(present, first: str | None = None) -> list[str]:
    """The key metrics among `present`, in catalogue order, `first` (if given) leading. A
    per-sample metric whose run summary is another present entry is shown once, as that."""
    present = set(present)
    names = [name for name in KEY_METRICS if name in present and name != first
             and METRICS[name].summarised_as not in present]
    return ([first] if first else []) + names


def ranking_metric(name: str) -> str:
    """The per-run value a leaderboard ranks on for `name` (prompt_hit ranks by
    prompt_precision, the per-run summary it is stored as)."""
    info = metric_info(name)
    return info.summarised_as or info.name
