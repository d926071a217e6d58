"""What differs between runs' configurations (`runs diff`, and the TUI's diff screen). Torch-free.

A run's configuration, flattened to one value per field: technique, model, steps, seed,
guidance, negative prompt, sample set and its size; `param.NAME` for every parameter the run
used (its technique's default where the run records none, so a run of an older version
compares as it ran); `option.NAME` (how it was executed: device, dtype, threads, ...),
`eval.NAME` (the evaluation settings, defaults filled in the same way), `version.NAME` (the
libraries it ran with), the git commit and the device it ran on. A field a run does not
have (a parameter of another technique) is None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from engine.spec import EvalConfig, recorded_params


@dataclass(frozen=True)
class Difference:
    """One field whose values are not all the same: `values` in the order of the runs."""

    field: str
    values: tuple[Any, ...]

    def to_dict(self, run_ids: Sequence[int]) -> dict[str, Any]:
        return {"field": self.field, "values": {str(run_id): value for run_id, value in zip(run_ids, self.values)}}


def configuration(run) -> dict[str, Any]:
    """A run's configuration (a RunInfo), one value per field (see the module docstring)."""
    fields: dict[str, Any] = {
        "technique": run.technique, "model": run.model, "steps": run.steps, "seed": run.seed,
        "guidance": run.guidance, "negative_prompt": run.negative_prompt, "sample_set": run.sample_set,
        "samples": run.sample_count,
    }
    fields.update({f"param.{name}": value for name, value in recorded_params(run.technique, run.params).items()})
    fields.update({f"option.{name}": value for name, value in sorted(run.options.items())})
    evaluation = {**EvalConfig().to_dict(), **dict(run.eval_config)}
    fields.update({f"eval.{name}": value for name, value in evaluation.items()})
    fields.update({f"version.{name}": value for name, value in sorted(run.versions.items())})
    fields["git_commit"] = run.git_commit
    fields["device"] = run.device
    return fields


def config_diff(runs: Sequence[Any]) -> list[Difference]:
    """The fields whose values differ between the runs (two or more), in a stable order:
    the run's settings, parameters, options, evaluation, versions, commit, device."""
    configs = [configuration(run) for run in runs]
    names = list(dict.fromkeys(name for config in configs for name in config))
    differences = []
    for name in names:
        values = tuple(config.get(name) for config in configs)
        if any(not _same(values[0], value) for value in values[1:]):
            differences.append(Difference(name, values))
    return differences


def format_value(value: Any) -> str:
    """A configuration value as the diff tables show it (CLI and TUI): `-` for missing."""
    from inpaint_tui.read.present import printable

    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    return printable(str(value)) or '""'


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


__all__ = ["Difference", "config_diff", "configuration", "format_value"]
