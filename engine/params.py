"""Typed technique parameters: one schema drives validation, `-p key=value` parsing, the
CLI's `techniques` listing and (later) the TUI's run form. Torch-free on purpose."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


STEP_ROUNDING_TOLERANCE = 1e-9
"""Slack added before flooring f·N: binary floats put 0.58·50 at 28.999…; a parameter typed
with a few decimals is never this close below a whole number of steps unless it means it."""


def fraction_of_steps(fraction: float, steps: int) -> int:
    """⌊f·N⌋, the number of steps that a fraction f of N steps stands for, clamped to
    [0, N]. The one rule used wherever a fraction becomes a step count (blend_start,
    post_strength, propagate_until), in the loops and in the cost estimates alike, so that
    0.58 of 50 steps is 29 (plain int() truncation gives 28).

    >>> fraction_of_steps(0.58, 50), fraction_of_steps(1 - 0.8, 10), fraction_of_steps(0.29, 100)
    (29, 2, 29)
    """
    return max(0, min(steps, math.floor(fraction * steps + STEP_ROUNDING_TOLERANCE)))


class ParamError(ValueError):
    """A parameter value or name the technique does not accept; the message names it."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Param:
    """One technique parameter.

    `kind` is "int", "float", "bool" or "choice"; `minimum`/`maximum` are inclusive bounds
    (floats may be `math.inf` where infinity is meaningful, e.g. TD-Paint's `t_bg`); `odd`
    (ints only) admits odd values only, for kernel sizes that need a centre pixel.
    """

    name: str
    kind: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    odd: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("int", "float", "bool", "choice"):
            raise ValueError(f"parameter {self.name!r}: unknown kind {self.kind!r}")
        if self.odd and self.kind != "int":
            raise ValueError(f"parameter {self.name!r}: only int parameters can be odd")
        if self.kind == "choice" and self.default not in self.choices:
            raise ValueError(f"parameter {self.name!r}: default {self.default!r} not in choices")
        self.validate(self.default, technique="(schema)")

    def parse(self, text: str, *, technique: str) -> Any:
        """Parse a command-line string into a validated value."""
        raw = text.strip()
        where = f"{technique}: parameter {self.name!r}"
        if self.kind == "bool":
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ParamError(f"{where}: expected true/false, got {text!r}")
        if self.kind == "int":
            try:
                value: Any = int(raw)
            except ValueError:
                raise ParamError(f"{where}: expected an integer, got {text!r}") from None
        elif self.kind == "float":
            try:
                value = float(raw)
            except ValueError:
                raise ParamError(f"{where}: expected a number, got {text!r}") from None
        else:
            value = raw
        return self.validate(value, technique=technique)

    def validate(self, value: Any, *, technique: str) -> Any:
        """Check (and normalise) an already-typed value."""
        where = f"{technique}: parameter {self.name!r}"
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ParamError(f"{where}: expected true/false, got {value!r}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ParamError(f"{where}: {value!r} is not one of {', '.join(self.choices)}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{where}: expected a number, got {value!r}")
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ParamError(f"{where}: expected an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if math.isnan(value):
                raise ParamError(f"{where}: NaN is not allowed")
        if self.minimum is not None and value < self.minimum:
            raise ParamError(f"{where}: {value} is below the minimum {_fmt(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise ParamError(f"{where}: {value} is above the maximum {_fmt(self.maximum)}")
        if self.odd and value % 2 == 0:
            # Rejected rather than rounded: the stored value must be the one used.
            raise ParamError(f"{where}: must be odd, got {value} (use {value - 1} or {value + 1})")
        return value

    def describe_range(self) -> str:
        if self.kind == "choice":
            return "|".join(self.choices)
        if self.kind == "bool":
            return "true|false"
        low = "-inf" if self.minimum is None else _fmt(self.minimum)
        high = "inf" if self.maximum is None else _fmt(self.maximum)
        return f"[{low}, {high}]" + (" odd" if self.odd else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "default": _json_number(self.default),
            "range": self.describe_range(),
            "minimum": _json_number(self.minimum),
            "maximum": _json_number(self.maximum),
            "choices": list(self.choices),
            "odd": self.odd,
            "help": self.help,
        }


def _fmt(number: float) -> str:
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return f"{number:g}"


def _json_number(value: Any) -> Any:
    # JSON has no infinity: spell it as a string so `--json` output stays valid JSON.
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


@dataclass(frozen=True)
class ParamSchema:
    params: tuple[Param, ...]

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate parameter names in {names}")

    def __iter__(self):
        return iter(self.params)

    def get(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def resolve(self, given: Mapping[str, Any] | None = None, *, technique: str) -> dict[str, Any]:
        """Defaults overlaid with `given` (typed values or strings), every value validated."""
        values = self.defaults()
        for name, value in (given or {}).items():
            param = self.get(name)
            if param is None:
                known = ", ".join(p.name for p in self.params) or "none"
                raise ParamError(f"{technique}: unknown parameter {name!r} (known: {known})")
            values[name] = param.parse(value, technique=technique) if isinstance(value, str) else param.validate(
                value, technique=technique
            )
        return values

    def split_assignments(self, assignments: Sequence[str], *, technique: str) -> dict[str, str]:
        """`["key=value", ...]` from the command line to {key: raw value}; a key given twice
        is an error (the last one silently winning would hide a typo)."""
        given: dict[str, str] = {}
        for item in assignments:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ParamError(f"{technique}: expected key=value, got {item!r}")
            if key.strip() in given:
                raise ParamError(f"{technique}: parameter {key.strip()!r} is given twice")
            given[key.strip()] = value
        return given

    def parse_assignments(self, assignments: Sequence[str], *, technique: str) -> dict[str, Any]:
        """`["key=value", ...]` from the command line to validated values (defaults included)."""
        return self.resolve(self.split_assignments(assignments, technique=technique), technique=technique)
