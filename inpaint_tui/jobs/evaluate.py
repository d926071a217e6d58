"""Evaluating a stored run: the model-based metrics at the end of a run, recomputation on
demand, and the per-run aggregates of every per-sample metric (mean and bootstrap interval).

Everything is computed from the stored files (the saved output, the imported sample), so a
recomputation sees exactly what a reader of the database sees.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PIL import Image

from engine.evaluate import GROUP_METRICS, EvalConfig, Summary, evaluate, group_of, summarize
from engine.metrics.base import EvalItem
from engine.models import resolve_preset
from engine.samples import prepare
from inpaint_tui.jobs.samples import to_engine_sample
from inpaint_tui.store import MetricSummary, SampleStatus, Store


def eval_items(store: Store, run_id: int) -> tuple[list[EvalItem], dict[str, int], dict[str, str]]:
    """EvalItems of the run's finished samples (input, mask and reference resized to the
    output's size, as the runner did), their store ids, and explicit object phrases."""
    detail = store.run_detail(run_id)
    resolution = resolve_preset(detail.run.model).resolution
    policy = detail.run.params.get("resize", "fit")
    infos = {info.id: info for info in store.samples(detail.run.sample_set)}
    items, ids, phrases = [], {}, {}
    for outcome in detail.samples:
        if outcome.status != SampleStatus.DONE or outcome.image_path is None:
            continue
        info = infos[outcome.sample_id]
        with Image.open(outcome.image_path) as opened:
            output = np.asarray(opened.convert("RGB"))
        working = prepare(to_engine_sample(info), resolution, policy)
        if working.size != (output.shape[1], output.shape[0]):  # resize_to keeps sizes exact: a mismatch is a bug
            raise ValueError(f"run {run_id}: output of {info.name} is {output.shape[1]}x{output.shape[0]}, "
                             f"expected {working.size[0]}x{working.size[1]}")
        items.append(
            EvalItem(
                sample_id=info.key,
                output=output,
                source=np.asarray(working.image),
                mask=working.binary_mask,
                prompt=working.prompt,
                reference=None if working.reference is None else np.asarray(working.reference),
            )
        )
        ids[info.key] = info.id
        if "object_phrase" in info.meta:
            phrases[info.key] = str(info.meta["object_phrase"])
    return items, ids, phrases


def evaluate_run(
    store: Store,
    run_id: int,
    *,
    metrics: Sequence[str] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> list[str]:
    """Compute metrics of a run and store them, replacing only those metrics' values.

    `metrics`: metric or group names (default: the run's configured groups). The runner
    already measured the background of each sample as it finished (for live progress); this
    recomputes it from the stored files with the run's settings (e.g. its ring width), so
    the stored values are always those of the files. Afterwards every per-sample metric of
    the run gets its per-run mean and interval. Returns the messages about skipped metrics."""
    run = store.run(run_id)
    config = EvalConfig.from_dict(run.eval_config)
    if metrics is None:
        groups = list(config.groups)
    else:
        groups = list(dict.fromkeys(group_of(name) for name in metrics))
    items, ids, phrases = eval_items(store, run_id)
    from engine.metrics.kid import DirectoryReferenceCache

    evaluation = evaluate(
        items, config, groups=groups, kid_cache=DirectoryReferenceCache(store.data_dir / "cache" / "kid"),
        on_message=on_message, phrases=phrases,
    )
    per_sample = {ids[key]: values for key, values in evaluation.per_sample.items() if values}
    if per_sample:
        store.record_sample_metrics(run_id, per_sample)
    summaries = {name: _as_view(summary) for name, summary in evaluation.per_run.items()}
    # A group that produced nothing leaves a stale value behind unless it is cleared too.
    for group in groups:
        for name in GROUP_METRICS[group]:
            summaries.setdefault(name, MetricSummary(value=None, note="not computed: no finished sample"))
    store.record_run_metrics(run_id, summaries)
    summarize_samples(store, run_id, skip=set(evaluation.per_run), seed=config.seed)
    return evaluation.messages


def summarize_samples(store: Store, run_id: int, *, skip: set[str] = frozenset(), seed: int = 0) -> None:
    """Store each per-sample metric's per-run mean and bootstrap interval (except `skip`)."""
    summaries = {
        name: _as_view(summarize(list(values.values()), seed=seed))
        for name, values in store.sample_metric_values(run_id).items()
        if name not in skip
    }
    if summaries:
        store.record_run_metrics(run_id, summaries)


def _as_view(summary: Summary) -> MetricSummary:
    return MetricSummary(value=summary.value, std=summary.std, ci_low=summary.ci_low, ci_high=summary.ci_high,
                         n=summary.n, note=summary.note)
