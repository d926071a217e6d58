"""Evaluating finished samples: the configured metric groups, per sample and per run.

Groups and the metrics they produce:
- `background`: bg_mse, bg_psnr, bg_ssim, ring_mse, ring_psnr per sample (metrics.background);
- `clip`: clip_local, clip_global per sample (metrics.clip);
- `precision`: prompt_hit (1 = the detector found the prompted object in the mask's box)
  per sample, prompt_precision per run with its Wilson interval (metrics.detection);
- `kid`: kid per run (mean and std over subsets) on the masked crops (metrics.kid).

Per-run aggregates of per-sample metrics are the mean with a 95% percentile-bootstrap
interval (`summarize`). A group whose model cannot be loaded is reported as missing with the
reason, never as 0.

`models="tiny"` swaps every evaluation model for a random offline one (CLIP, Inception
stand-in, detector): the numbers then mean nothing, but the whole path runs without a hub —
what tests, CI and the demo on the `tiny` generation model use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from engine.metrics.base import EvalItem, MetricUnavailable
from engine.metrics.catalogue import GROUP_METRICS, METRIC_GROUPS
from engine.metrics.stats import bootstrap_ci
from engine.spec import EvalConfig


def generation_groups(config: EvalConfig) -> tuple[str, ...]:
    """The run's groups computed per sample as it finishes (cheap, no model: live tables
    show them); `final_groups` are computed once at the end of the run."""
    return tuple(g for g in config.groups if METRIC_GROUPS[g].at_generation)


def final_groups(config: EvalConfig) -> tuple[str, ...]:
    return tuple(g for g in config.groups if not METRIC_GROUPS[g].at_generation)


def sample_time_metrics(output: np.ndarray, source: np.ndarray, mask: np.ndarray,
                        config: EvalConfig) -> dict[str, float]:
    """The generation-time metrics of one finished sample (uint8 output and input at the
    working size, bool mask), with the run's settings: only the groups it asked for."""
    values: dict[str, float] = {}
    if "background" in config.groups:
        from engine.metrics.background import sample_metrics

        values.update(sample_metrics(output, source, mask, ring_width=config.ring_width))
    return values


@dataclass
class Summary:
    """A per-run value: mean (or set-level value), interval or std, count, or missing + why."""

    value: float | None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    note: str | None = None


@dataclass
class Evaluation:
    per_sample: dict[str, dict[str, float]] = field(default_factory=dict)  # sample id -> metric -> value
    per_run: dict[str, Summary] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


def summarize(values: Sequence[float], *, seed: int = 0) -> Summary:
    """Mean and 95% bootstrap interval of per-sample values. Infinite values (a PSNR of a
    pasted background) are left out of the interval; if all are infinite the value is that
    infinity with no interval, and the note says so."""
    array = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if array.size == 0:
        return Summary(value=None, n=0, note="no finished sample has this metric")
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return Summary(value=float(array[0]) if np.all(array == array[0]) else math.nan, n=int(array.size),
                       note="every value is infinite")
    interval = bootstrap_ci(array, seed=seed)
    note = None
    if interval.excluded:
        note = f"{interval.excluded} infinite value(s) left out of the mean and interval"
    low = None if math.isnan(interval.low) else float(interval.low)
    high = None if math.isnan(interval.high) else float(interval.high)
    return Summary(value=float(interval.mean), ci_low=low, ci_high=high, n=int(interval.n), note=note)


def summarize_per_sample(values: dict[str, dict[Any, float]], *, seed: int = 0) -> dict[str, Summary]:
    """Per-run summaries of per-sample metrics ({name: {sample id: value}}): the bootstrap
    mean and interval, drawn over the values in sample-id order so the interval does not
    depend on the order a database returned them. Metrics whose per-run summary is another
    catalogue entry (prompt_hit: prompt_precision) and per-run metrics are not summarised here;
    a name the catalogue does not know is an error."""
    from engine.metrics.catalogue import SAMPLE, metric_info

    summaries = {}
    for name, by_sample in values.items():
        info = metric_info(name)
        if info.level != SAMPLE or info.summarised_as is not None:
            continue
        summaries[name] = summarize([by_sample[key] for key in sorted(by_sample)], seed=seed)
    return summaries


CHUNK = 32  # samples held at once: at 512 px one is ~3 MB (output, input, reference, mask)


def evaluate(
    items: Iterable[EvalItem],
    config: EvalConfig,
    *,
    groups: Sequence[str] | None = None,
    kid_cache: Any = None,
    on_message: Callable[[str], None] | None = None,
    phrases: dict[str, str] | None = None,
    chunk: int = CHUNK,
) -> Evaluation:
    """Compute the given groups (default: the config's) on finished samples. `items` is
    read once, `chunk` at a time, every group working on each chunk: a run's evaluation
    holds a chunk of images and, across chunks, what the per-run metrics need (KID's
    features, precision's hits), so its memory does not grow with the run's samples."""
    result = Evaluation()
    pending = list(config.groups if groups is None else groups)
    unknown = [group for group in pending if group not in _STEPS]
    if unknown:
        raise ValueError(f"unknown metric group {unknown[0]!r}")
    state = _RunState(phrases or {})

    def missing(group: str, reason: str) -> None:
        message = f"{group} metrics skipped: {reason}"
        result.messages.append(message)
        if on_message is not None:
            on_message(message)
        for name in GROUP_METRICS[group]:
            result.per_run[name] = Summary(value=None, note=reason)
        pending.remove(group)

    for part in _chunks(items, chunk):
        for item in part:
            result.per_sample.setdefault(item.sample_id, {})
        for group in list(pending):
            try:
                _STEPS[group](part, config, result, state, kid_cache)
            except MetricUnavailable as error:
                missing(group, str(error))
    if not result.per_sample:
        return result
    for group in list(pending):
        try:
            if group == "precision":
                _precision_summary(result, state)
            elif group == "kid":
                _kid_summary(config, result, state)
        except MetricUnavailable as error:
            missing(group, str(error))
    return result


def _chunks(items: Iterable[EvalItem], size: int) -> Iterator[list[EvalItem]]:
    part: list[EvalItem] = []
    for item in items:
        part.append(item)
        if len(part) >= size:
            yield part
            part = []
    if part:
        yield part


class _RunState:
    """What the per-run metrics gather across chunks."""

    def __init__(self, phrases: dict[str, str]) -> None:
        self.phrases = phrases
        self.hits: list[bool] = []  # prompt precision, one per sample
        self.kid = None  # KidFeatures, made at the first sample with a reference
        self.without_reference = 0


def _background(items: Sequence[EvalItem], config: EvalConfig, result: Evaluation, state: _RunState,
                cache: Any) -> None:
    from engine.metrics.background import sample_metrics

    for item in items:
        result.per_sample[item.sample_id].update(
            sample_metrics(item.output, item.source, item.mask, ring_width=config.ring_width)
        )


# --- evaluation models, loaded once per process ------------------------------------------
# A worker draining a sweep evaluates run after run with the same models: loading CLIP, the
# detector and Inception for each took seconds a run (real) and rebuilt the tiny ones. Keyed
# by everything that selects the weights; a load that fails (MetricUnavailable) is not kept,
# so a model downloaded later is found by the next run. The models are used read-only (eval
# mode, no grad), so runs sharing one cannot affect each other. One of each: a worker uses
# one configuration at a time, and a second would double the memory held.


def _model_seed(config: EvalConfig) -> int:
    """What the cache keys on for the seed: the tiny models are random weights drawn from it;
    the real ones do not depend on it (runs with other seeds share them)."""
    return config.seed if config.models == "tiny" else 0


@lru_cache(maxsize=1)
def clip_scorer(models: str, clip_model: str, seed: int):
    from engine.metrics.clip import load_clip_scorer, tiny_clip_scorer

    return tiny_clip_scorer(seed=seed) if models == "tiny" else load_clip_scorer(clip_model)


@lru_cache(maxsize=1)
def detector(models: str, name: str, seed: int):
    from engine.metrics.detectors import load_detector, tiny_detector

    return tiny_detector(seed=seed) if models == "tiny" else load_detector(name)


@lru_cache(maxsize=1)
def kid_features(models: str, seed: int):
    from engine.metrics.kid import inception_extractor, tiny_extractor

    return tiny_extractor(seed=seed) if models == "tiny" else inception_extractor()


def _clip(items: Sequence[EvalItem], config: EvalConfig, result: Evaluation, state: _RunState,
          cache: Any) -> None:
    from engine.metrics.clip import clip_batch_metrics

    scorer = clip_scorer(config.models, config.clip_model, _model_seed(config))
    for item, values in zip(items, clip_batch_metrics(items, scorer)):
        result.per_sample[item.sample_id].update(values)


def _precision(items: Sequence[EvalItem], config: EvalConfig, result: Evaluation, state: _RunState,
               cache: Any) -> None:
    from engine.metrics.detection import prompt_precision

    model = detector(config.models, config.detector, _model_seed(config))
    outcome = prompt_precision(items, model, phrases=state.phrases)
    for item, hit in zip(items, outcome.per_sample):
        result.per_sample[item.sample_id]["prompt_hit"] = float(hit)
    state.hits.extend(outcome.per_sample)


def _precision_summary(result: Evaluation, state: _RunState) -> None:
    from engine.metrics.detection import wilson_interval

    hits, n = sum(state.hits), len(state.hits)
    low, high = wilson_interval(hits, n)
    result.per_run["prompt_precision"] = Summary(value=hits / n if n else math.nan, ci_low=low, ci_high=high, n=n)


def _kid(items: Sequence[EvalItem], config: EvalConfig, result: Evaluation, state: _RunState, cache: Any) -> None:
    from engine.metrics.kid import KidFeatures

    with_reference = [item for item in items if item.reference is not None]
    state.without_reference += len(items) - len(with_reference)
    if not with_reference:
        return
    if state.kid is None:
        state.kid = KidFeatures(kid_features(config.models, _model_seed(config)), cache=cache)
    state.kid.add(with_reference)


def _kid_summary(config: EvalConfig, result: Evaluation, state: _RunState) -> None:
    count = state.kid.count if state.kid is not None else 0
    if count < 2:
        raise MetricUnavailable(f"KID needs at least 2 samples with a reference image, got {count}")
    outcome = state.kid.result(subsets=config.kid_subsets, subset_size=config.kid_subset_size, seed=config.seed)
    note = "; ".join(outcome.warnings) or None
    if state.without_reference:
        skipped = f"{state.without_reference} sample(s) without a reference left out"
        note = f"{note}; {skipped}" if note else skipped
    result.per_run["kid"] = Summary(value=outcome.mean, std=outcome.std, n=outcome.n, note=note)


_STEPS = {"background": _background, "clip": _clip, "precision": _precision, "kid": _kid}
