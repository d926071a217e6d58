"""Evaluating a stored run: the model-based metrics at the end of a run, recomputation on
demand, and the per-run aggregates of every per-sample metric (mean and bootstrap interval).

Everything is computed from the stored files (the saved output, the imported sample), so a
recomputation sees exactly what a reader of the database sees.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from engine.evaluate import Summary, evaluate, final_groups, summarize_per_sample
from engine.metrics.base import EvalItem
from engine.metrics.catalogue import GROUP_METRICS, METRICS, RUN, group_of
from engine.models import resolve_preset
from engine.samples import prepare
from engine.spec import EvalConfig
from inpaint_tui.jobs.samples import to_engine_sample
from inpaint_tui.store import MetricSummary, SampleStatus, Store


def eval_items(store: Store, run_id: int) -> tuple[list[EvalItem], dict[str, int], dict[str, str]]:
    """EvalItems of the run's finished samples (input, mask and reference resized to the
    output's size, as the runner did), their store ids, and explicit object phrases."""
    items, ids, phrases = eval_inputs(store, run_id)
    return list(items), ids, phrases


def eval_inputs(store: Store, run_id: int) -> tuple[Iterator[EvalItem], dict[str, int], dict[str, str]]:
    """As eval_items, the items read one at a time as they are consumed: a run's images
    are never all in memory (a 752-sample run at 512 px would hold about 2 GB)."""
    detail = store.run_detail(run_id)
    preset = resolve_preset(detail.run.model)
    policy = detail.run.params.get("resize", "fit")
    infos = {info.id: info for info in store.samples(detail.run.sample_set)}
    finished = [(outcome, infos[outcome.sample_id]) for outcome in detail.samples
                if outcome.status == SampleStatus.DONE and outcome.image_path is not None]
    ids = {info.key: info.id for _, info in finished}
    phrases = {info.key: str(info.meta["object_phrase"]) for _, info in finished if "object_phrase" in info.meta}

    def read() -> Iterator[EvalItem]:
        for outcome, info in finished:
            with Image.open(outcome.image_path) as opened:
                output = np.asarray(opened.convert("RGB"))
            working = prepare(to_engine_sample(info), preset.resolution, policy, preset.size_multiple)
            if working.size != (output.shape[1], output.shape[0]):  # resize_to keeps sizes exact: a mismatch is a bug
                raise ValueError(f"run {run_id}: output of {info.name} is {output.shape[1]}x{output.shape[0]}, "
                                 f"expected {working.size[0]}x{working.size[1]}")
            yield EvalItem(
                sample_id=info.key,
                output=output,
                source=np.asarray(working.image),
                mask=working.binary_mask,
                prompt=working.prompt,
                reference=None if working.reference is None else np.asarray(working.reference),
            )

    return read(), ids, phrases


def evaluate_run(
    store: Store,
    run_id: int,
    *,
    metrics: Sequence[str] | None = None,
    at_end: bool = False,
    on_message: Callable[[str], None] | None = None,
) -> list[str]:
    """Compute metrics of a run from its stored files and store them, replacing only those
    metrics' values; then every per-sample metric of the run gets its per-run summary.

    `metrics`: metric or group names to (re)compute (default: the run's configured groups).
    `at_end`: the worker's call when a run's samples are done: only the groups computed once
    per run (the generation-time groups were computed, with the run's settings, as each sample
    finished: engine.evaluate.generation_groups). Returns the messages about skipped metrics."""
    run = store.run(run_id)
    config = EvalConfig.from_dict(run.eval_config)
    if metrics is not None:
        groups = list(dict.fromkeys(group_of(name) for name in metrics))
    else:
        groups = list(final_groups(config) if at_end else config.groups)
    evaluation_messages: list[str] = []
    skip: set[str] = set()
    if groups:
        items, ids, phrases = eval_inputs(store, run_id)
        from engine.metrics.kid import DirectoryReferenceCache

        evaluation = evaluate(
            items, config, groups=groups, kid_cache=DirectoryReferenceCache(store.files.local_path("cache/kid")),
            on_message=on_message, phrases=phrases,
        )
        per_sample = {ids[key]: values for key, values in evaluation.per_sample.items() if values}
        if per_sample:
            store.record_sample_metrics(run_id, per_sample)
        summaries = {name: _as_view(summary) for name, summary in evaluation.per_run.items()}
        # A per-run metric whose group produced nothing leaves a stale value behind unless it is
        # cleared too (per-sample metrics get their summaries from summarize_samples below).
        for group in groups:
            for name in GROUP_METRICS[group]:
                if METRICS[name].level == RUN:
                    summaries.setdefault(name, MetricSummary(value=None, note="not computed: no finished sample"))
        store.record_run_metrics(run_id, summaries)
        evaluation_messages, skip = evaluation.messages, set(evaluation.per_run)
    summarize_samples(store, run_id, skip=skip, seed=config.seed)
    return evaluation_messages


def summarize_samples(store: Store, run_id: int, *, skip: set[str] = frozenset(), seed: int = 0) -> None:
    """Store each per-sample metric's per-run summary (except `skip`): see
    engine.evaluate.summarize_per_sample."""
    values = {name: by_sample for name, by_sample in store.sample_metric_values(run_id).items() if name not in skip}
    summaries = {name: _as_view(summary) for name, summary in summarize_per_sample(values, seed=seed).items()}
    if summaries:
        store.record_run_metrics(run_id, summaries)


def _as_view(summary: Summary) -> MetricSummary:
    return MetricSummary(value=summary.value, std=summary.std, ci_low=summary.ci_low, ci_high=summary.ci_high,
                         n=summary.n, note=summary.note)
