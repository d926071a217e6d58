"""A varied store for the query language's tests, built through the store's API without torch:
`count` runs with random techniques, parameters (some runs recording only part of them, as an
older version would), settings, statuses, sample outcomes, per-run metrics (stored, stored as
missing, or live per-sample values for runs still going), tags, notes, devices, creation
times and sweeps. Beside the store it returns what it put there as plain Python records, for
tests that evaluate expressions in Python, independently of the SQL."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text

from engine.metrics.catalogue import METRICS
from engine.techniques import get_technique, technique_names
from inpaint_tui.jobs.samples import ensure_demo
from inpaint_tui.store import MetricSummary, NewRun, Store

TAGS = ("paper", "draft", "baseline", "v2", "paper-final")
NOTES = ("", "", "seams visible", "Blurry SEAM at the top", "good", "100% match")
DEVICES = (None, "cuda:0 (float16)", "cpu (float32)")
STATUSES = ("finished", "finished", "finished", "finished_with_errors", "failed", "cancelled", "queued", "running")
RUN_METRICS = [name for name, info in METRICS.items() if not info.summarised_as]  # what a run row stores
START = datetime(2026, 11, 1, tzinfo=timezone.utc)


@dataclass
class Record:
    """One run as the builder made it."""

    id: int
    technique: str
    params: dict[str, Any]  # as stored (perhaps without some parameters)
    model: str
    steps: int
    seed: int
    guidance: float
    sample_set: str
    negative_prompt: str
    git_commit: str | None
    status: str
    tags: list[str]
    note: str
    device: str | None
    created: datetime
    metrics: dict[str, float]  # the per-run values tables show (missing ones absent)
    sweeps: set[int] = field(default_factory=set)
    samples: int = 0
    done: int = 0
    failed: int = 0


def _random_value(rng: random.Random, param):
    if param.kind == "bool":
        return rng.random() < 0.5
    if param.kind == "choice":
        return rng.choice(param.choices)
    if param.kind == "int":
        low, high = int(param.minimum or 0), int(min(param.maximum or 10, (param.minimum or 0) + 20))
        value = rng.randint(low, high)
        if param.odd and value % 2 == 0:
            value = value + 1 if value + 1 <= (param.maximum or value + 1) else value - 1
        return value
    low, high = param.minimum if param.minimum is not None else 0.0, param.maximum
    high = low + 1.0 if high is None or high == float("inf") else high
    return rng.choice([param.default, round(rng.uniform(low, high), 2), round(rng.uniform(low, high), 2)])


def build(db, count: int = 200, seed: int = 0, data_dir=None) -> tuple[Store, list[Record]]:
    rng = random.Random(seed)
    store = Store(db, data_dir=data_dir)
    ensure_demo(store)
    demo_ids = store.set_sample_ids("demo")
    store.create_sample_set("pair", demo_ids[:2])
    seeds_of = {name: dict.fromkeys(store.set_sample_ids(name), 0) for name in ("demo", "pair")}
    records: list[Record] = []
    for index in range(count):
        technique = rng.choice(technique_names())
        schema = get_technique(technique).full_schema
        params = schema.defaults()
        for param in schema:
            if rng.random() < 0.3:
                params[param.name] = _random_value(rng, param)
        if rng.random() < 0.25:  # recorded by an older version: some parameters absent
            for name in rng.sample(sorted(params), k=rng.randint(1, 4)):
                del params[name]
        sample_set = "pair" if rng.random() < 0.25 else "demo"
        spec = NewRun(technique=technique, params=params, model=rng.choice(["tiny", "tiny", "sd15"]),
                      seed=rng.choice([0, 1, 2, 3, 2**62 + index]), steps=rng.choice([4, 10, 20, 50]),
                      guidance=rng.choice([0.0, 5.0, 7.5]), negative_prompt=rng.choice(["", "", "blurry"]),
                      sample_set=sample_set, config_hash=f"hash{index}", versions={"python": "3.11"},
                      git_commit=rng.choice([None, "0123456789abcdef"]), command=None,
                      eval_config={"groups": ["background"], "models": "tiny"})
        run_id = store.create_run(spec, seeds_of[sample_set])
        status = rng.choice(STATUSES)
        samples = len(seeds_of[sample_set])
        outcomes = [rng.choice(["done", "done", "failed", "pending"]) if status != "queued" else "pending"
                    for _ in range(samples)]
        tags = sorted(set(rng.sample(TAGS, k=rng.choice([0, 0, 1, 1, 2, 3]))))
        record = Record(id=run_id, technique=technique, params=params, model=spec.model, steps=spec.steps,
                        seed=spec.seed, guidance=spec.guidance, sample_set=sample_set,
                        negative_prompt=spec.negative_prompt, git_commit=spec.git_commit, status=status, tags=tags,
                        note=rng.choice(NOTES), device=rng.choice(DEVICES),
                        created=START + timedelta(days=rng.randint(0, 29), minutes=rng.randint(0, 1439)),
                        metrics={}, samples=samples, done=outcomes.count("done"), failed=outcomes.count("failed"))
        store.annotate_run(run_id, tags=tags, note=record.note)
        settled = status in ("finished", "finished_with_errors")
        stored: dict[str, MetricSummary] = {}
        for name in rng.sample(RUN_METRICS, k=rng.randint(0, len(RUN_METRICS))):
            if settled or rng.random() < 0.2:  # a run still going rarely has a stored row
                value = None if rng.random() < 0.15 else rng.choice([rng.random(), rng.uniform(10, 40), 20.0])
                stored[name] = MetricSummary(value=value, note=None if value is not None else "model unavailable")
        if stored:
            store.record_run_metrics(run_id, stored)
        record.metrics = {name: s.value for name, s in stored.items() if s.value is not None}
        if not settled:  # live per-sample values, which count where no row is stored
            live: dict[int, dict[str, float | None]] = {}
            names = rng.sample(["bg_mse", "bg_psnr", "seconds", "clip_local"], k=rng.randint(0, 3))
            for sample_id in seeds_of[sample_set]:
                live[sample_id] = {name: (None if rng.random() < 0.2 else round(rng.random(), 6)) for name in names}
            if names:
                store.record_sample_metrics(run_id, live)
            for name in names:
                values = [live[sample_id][name] for sample_id in live if live[sample_id][name] is not None]
                if name not in stored and values:
                    record.metrics[name] = statistics.fmean(values)
        records.append(record)
    with store.engine.begin() as connection:
        for record in records:
            connection.execute(text("UPDATE run SET status = :status, device = :device, created_at = :created "
                                    "WHERE id = :id"),
                               {"status": record.status, "device": record.device, "created": record.created,
                                "id": record.id})
            for position, outcome in enumerate(_outcomes(record)):
                connection.execute(text("UPDATE run_sample SET status = :status WHERE run_id = :id AND "
                                        "position = :position"),
                                   {"status": outcome, "id": record.id, "position": position})
    for sweep in range(3):
        members = rng.sample(records, k=rng.randint(5, 30))
        sweep_id = store.create_sweep(name=f"sweep {sweep}", spec={}, command=None,
                                      members=[(r.id, {}, False) for r in members])
        for member in members:
            member.sweeps.add(sweep_id)
    return store, records


def _outcomes(record: Record) -> list[str]:
    return ["done"] * record.done + ["failed"] * record.failed + ["pending"] * (record.samples - record.done
                                                                                - record.failed)
