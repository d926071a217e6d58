"""Sweeps: a grid over techniques, parameter values, steps, guidance and seeds, queued as
runs of one sweep (torch-free).

A grid point whose configuration (hash, evaluation settings and exact samples) matches a run
that finished cleanly or is still queued or running reuses that run instead of computing it
again, unless forced.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from engine.params import ParamError
from engine.spec import EvalConfig, RunSpec
from engine.techniques import get_technique, technique_names
from inpaint_tui.jobs.runs import prepare_run
from inpaint_tui.store import Store


@dataclass(frozen=True)
class SweepPoint:
    technique: str
    params: dict[str, Any]
    seed: int
    steps: int
    guidance: float | None  # None: the model's default for the technique (engine.spec.default_guidance)
    swept: dict[str, Any] = field(default_factory=dict)  # the values that vary across the grid

    def spec(self, *, model: str, negative_prompt: str = "",
             evaluation: EvalConfig | Mapping[str, Any] | None = None) -> RunSpec:
        """The point's run specification, with what every point of the sweep shares."""
        return RunSpec.build(self.technique, self.params, model=model, steps=self.steps, guidance=self.guidance,
                             seed=self.seed, negative_prompt=negative_prompt, evaluation=evaluation)


@dataclass(frozen=True)
class QueuedSweep:
    sweep_id: int
    run_ids: list[int]  # one per distinct grid point, in grid order
    new: list[int]
    reused: list[int]
    swept: dict[int, dict[str, Any]]  # run id -> its swept values


def split_values(text: str, *, what: str) -> list[str]:
    """`a,b,c` -> ["a", "b", "c"]; empty items are an error naming `what`."""
    values = [value.strip() for value in text.split(",")]
    if not values or any(not value for value in values):
        raise ParamError(f"{what}: empty value in {text!r} (use comma-separated values, e.g. 0,1,2)")
    return values


def parse_grid(assignments: Sequence[str]) -> dict[str, list[str]]:
    """`-p name=v1,v2` options to {name: [raw values]}, in the order given."""
    grid: dict[str, list[str]] = {}
    for assignment in assignments:
        name, sep, values = assignment.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParamError(f"parameter {assignment!r} is not name=value[,value...]")
        if name in grid:
            raise ParamError(f"parameter {name!r} is given twice; list its values once: {name}=a,b")
        grid[name] = split_values(values, what=f"parameter {name}")
    return grid


def expand_techniques(names: Sequence[str], model: str | None = None) -> list[str]:
    """Technique names, with `all` meaning every registered technique (that applies to
    `model`'s family, when given); duplicates dropped."""
    result: list[str] = []
    from engine.models import resolve_preset

    every = technique_names(None if model is None else resolve_preset(model).family)
    for name in names:
        for value in split_values(name, what="technique"):
            for resolved in (every if value == "all" else [value]):
                get_technique(resolved)  # unknown names fail here with the list of known ones
                if resolved not in result:
                    result.append(resolved)
    if not result:
        raise ParamError("a sweep needs at least one technique (-t NAME, or -t all)")
    return result


def expand_grid(
    techniques: Sequence[str],
    grid: Mapping[str, Sequence[str]],
    *,
    seeds: Sequence[int],
    steps: Sequence[int],
    guidance: Sequence[float | None],
) -> list[SweepPoint]:
    """Every combination, technique-major and seed-minor. Each parameter must belong to
    every technique swept (a parameter one technique lacks is an error naming it). A
    guidance of None is each run's model default."""
    points: list[SweepPoint] = []
    names = list(grid)
    for technique in techniques:
        schema = get_technique(technique).full_schema
        missing = [name for name in names if schema.get(name) is None]
        if missing:
            raise ParamError(f"technique {technique!r} has no parameter {', '.join(map(repr, missing))} "
                             f"(see `inpaint-tui techniques`)")
        parsed = [[schema.get(name).parse(value, technique=technique) for value in grid[name]] for name in names]
        for step_count, scale, values, seed in itertools.product(steps, guidance, itertools.product(*parsed), seeds):
            params = dict(zip(names, values))
            swept = {}
            if len(techniques) > 1:
                swept["technique"] = technique
            swept.update({name: value for name, value in params.items() if len(grid[name]) > 1})
            if len(steps) > 1:
                swept["steps"] = step_count
            if len(guidance) > 1:
                swept["guidance"] = scale
            if len(seeds) > 1:
                swept["seed"] = seed
            points.append(SweepPoint(technique, params, seed, step_count, scale, swept))
    return points


@dataclass(frozen=True)
class PlannedPoint:
    """What queueing a grid point would do: reuse an identical run (`reuse`), repeat an
    earlier point of the same grid (`same_as`, its index), or compute it; and its cost in
    UNet calls as the technique estimates it (engine.techniques.estimate_unet_calls)."""

    point: SweepPoint
    new_run: Any  # the store's NewRun
    seeds: dict[int, int]
    reuse: int | None
    same_as: int | None
    unet_calls_per_image: int
    exact: bool  # whether the technique's estimate is exact

    @property
    def computed(self) -> bool:
        return self.reuse is None and self.same_as is None


def plan_sweep(
    store: Store,
    points: Sequence[SweepPoint],
    *,
    model: str,
    sample_set: str,
    negative_prompt: str = "",
    evaluation: EvalConfig | Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    command: str | None = None,
    force: bool = False,
) -> list[PlannedPoint]:
    """Validate every point and say what queueing it would do, writing nothing (the dry
    run; `queue_sweep` validates through it too)."""
    from engine.techniques import estimate_unet_calls

    sample_ids = store.set_sample_ids(sample_set)
    planned: list[PlannedPoint] = []
    first_of: dict[tuple[str, str], int] = {}
    for index, point in enumerate(points):
        new_run, seeds = prepare_run(store, point.spec(model=model, negative_prompt=negative_prompt,
                                                       evaluation=evaluation),
                                     sample_set=sample_set, command=command, options=options)
        key = (new_run.config_hash, json.dumps(new_run.eval_config, sort_keys=True, default=str))
        same_as = None if force else first_of.get(key)
        first_of.setdefault(key, index)
        reuse = None if force or same_as is not None else store.find_identical_run(
            new_run.config_hash, sample_set, new_run.eval_config, sample_ids)
        calls, exact = estimate_unet_calls(point.technique, point.params, point.steps)
        planned.append(PlannedPoint(point, new_run, seeds, reuse, same_as, calls, exact))
    return planned


def queue_sweep(
    store: Store,
    points: Sequence[SweepPoint],
    *,
    model: str,
    sample_set: str,
    negative_prompt: str = "",
    evaluation: EvalConfig | Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    command: str | None = None,
    name: str | None = None,
    spec: Mapping[str, Any] | None = None,
    force: bool = False,
) -> QueuedSweep:
    """Validate every point first (nothing is queued if one is invalid), then queue the new
    ones and record the sweep."""
    planned = plan_sweep(store, points, model=model, sample_set=sample_set, negative_prompt=negative_prompt,
                         evaluation=evaluation, options=options, command=command, force=force)
    sample_ids = store.set_sample_ids(sample_set)
    members, new, reused = [], [], []
    for entry in planned:
        point, new_run = entry.point, entry.new_run
        # Looked up again at creation: an earlier point of this grid may be the identical run.
        existing = None if force else store.find_identical_run(new_run.config_hash, sample_set, new_run.eval_config,
                                                               sample_ids)
        if existing is not None:
            members.append((existing, point.swept, True))
            if existing not in reused:
                reused.append(existing)
            continue
        run_id = store.create_run(new_run, entry.seeds)
        members.append((run_id, point.swept, False))
        new.append(run_id)
    sweep_id = store.create_sweep(name=name, spec=dict(spec or {}), command=command, members=members)
    run_ids = list(dict.fromkeys(run_id for run_id, _, _ in members))
    swept = {run_id: point for run_id, point, _ in reversed(members)}
    return QueuedSweep(sweep_id=sweep_id, run_ids=run_ids, new=new, reused=reused, swept=swept)
