"""The query language for runs: one grammar for every face (the CLI's `--filter` / `--sort`,
the TUI's filter box). Torch-free. This module parses and checks an expression against the
engine's metric catalogue and technique schemas; the store evaluates the result in SQL
(`inpaint_tui/store/query.py`, which also states what a missing value does).

    technique = 'blended' and param.blend_start >= 0.25 and metric.bg_mse < 0.02 and tag = 'paper'

Fields
    run fields   id (alias run), technique, model, status, steps, seed, guidance,
                 set (alias sample_set), sweep (the id of a sweep the run belongs to),
                 created, started, finished (UTC; '2026-11-20' or '2026-11-20 09:30'),
                 device, worker, hash (config_hash), commit (git_commit), error,
                 negative_prompt, samples (how many the run has), done, failed (how many
                 finished / failed), note (empty = missing)
    param.NAME   the run's parameter; a run that does not record it (made by an older
                 version) has its technique's default, so `param.blend_start >= 0.25`
                 matches runs left at a default that matches; missing for a technique
                 without that parameter. Names: any technique's or option's (`techniques`).
    metric.NAME  the run's per-run value as tables show it (stored, or the live mean of a run
                 still going); a catalogue name (prompt_hit means prompt_precision)
    tag          the run's tags: `tag = 'x'` (has x), `tag != 'x'` (has not), `tag in (...)`
                 (has one of them), `tag is null` (has none)

Operators
    = (==)  != (<>)  <  <=  >  >=  in (...)  not in (...)
    ~ or like  (contains the text, ignoring case), !~ or not like
    is null, is not null  (the value is missing: a metric not computed, a parameter the
                 technique does not have, a run without device/note/tags)
    and, or, not, parentheses; `and` binds tighter than `or`; keywords in any case.

Values
    numbers (1, 0.25, 1e-3, inf), quoted text ('blended', "it's"), bare words for text
    (technique = blended), true / false for on/off parameters. A date alone stands for that
    whole day: created = '2026-11-20' is any time that day, created > '2026-11-20' after it.

A comparison on a missing value is false (`!=` included); `not` makes it true. Ordering
operators (< ...) apply to numbers and times only, `~` to text only. A mistake is a
`QueryError` naming the offending token, with the expression and a caret line under it.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from engine.metrics.catalogue import METRICS, ranking_metric
from engine.params import ParamError
from inpaint_tui.store.query import (
    BOOL, FLOAT, INT, NUMERIC, RUN_FIELDS, SETS, SWEEPS, TAGS, TEXT, TIME, And, Comparison, Field, Node, Not, Or,
    SortKey,
)

ALIASES = {"run": "id", "set": "sample_set", "hash": "config_hash", "commit": "git_commit", "tags": "tag",
           "sweep_id": "sweep", "worker_id": "worker", "created_at": "created", "started_at": "started",
           "finished_at": "finished", "sample_count": "samples"}
PARAM_PREFIXES = ("param.", "params.")
METRIC_PREFIXES = ("metric.", "metrics.")
STATUSES = ("queued", "running", "finished", "finished_with_errors", "failed", "cancelled")
KEYWORDS = ("and", "or", "not", "in", "is", "null", "like", "true", "false")


class QueryError(ParamError):
    """A filter or sort that cannot be used: `message` says why, `text` is the expression and
    `start`/`end` the offending characters; str() adds the expression with a caret line."""

    def __init__(self, message: str, text: str, start: int, end: int | None = None, *, option: str = "--filter"):
        self.message, self.text, self.option = message, text, option
        self.start = max(0, min(start, len(text)))
        self.end = max(self.start + 1, end if end is not None else self.start + 1)
        super().__init__(self.describe())

    def describe(self) -> str:
        shown = self.text.replace("\n", " ").replace("\t", " ")
        width = max(1, min(self.end, len(shown) + 1) - self.start)
        return (f"{self.option}: {self.message} (at column {self.start + 1})\n"
                f"  {shown}\n  {' ' * self.start}{'^' * width}")


# --- tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # word, number, string, op, end
    text: str  # as written (a string's value without its quotes)
    start: int
    end: int

    @property
    def keyword(self) -> str | None:
        return self.text.lower() if self.kind == "word" and self.text.lower() in KEYWORDS else None


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_\d.])|[-+]?inf(?![A-Za-z_\d.])",
                     re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_OPERATORS = ("<=", ">=", "!=", "<>", "==", "!~", "=", "<", ">", "~", "(", ")", ",")


def tokenize(text: str, option: str = "--filter") -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char.isspace():
            position += 1
            continue
        if char in "'\"":
            value, end = _string(text, position, option)
            tokens.append(Token("string", value, position, end))
            position = end
            continue
        number = _NUMBER.match(text, position)
        if number and (char not in "+-" or not tokens or tokens[-1].kind == "op"):
            tokens.append(Token("number", number.group(), position, number.end()))
            position = number.end()
            continue
        if char.isdigit() or (char == "." and text[position + 1:position + 2].isdigit()):
            junk = re.compile(r"[^\s()<>=!~,'\"]+").match(text, position)
            raise QueryError(f"not a number: {junk.group()!r}", text, position, junk.end(), option=option)
        word = _WORD.match(text, position)
        if word:
            tokens.append(Token("word", word.group(), position, word.end()))
            position = word.end()
            continue
        operator = next((op for op in _OPERATORS if text.startswith(op, position)), None)
        if operator is None:
            raise QueryError(f"unexpected character {char!r}", text, position, option=option)
        tokens.append(Token("op", operator, position, position + len(operator)))
        position += len(operator)
    tokens.append(Token("end", "", len(text), len(text)))
    return tokens


def _string(text: str, start: int, option: str) -> tuple[str, int]:
    """A quoted string from `start`: the quote doubled ('it''s') or backslashed stands for itself."""
    quote, position, out = text[start], start + 1, []
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text):
            out.append(text[position + 1])
            position += 2
        elif char == quote:
            if text.startswith(quote * 2, position):
                out.append(quote)
                position += 2
            else:
                return "".join(out), position + 1
        else:
            out.append(char)
            position += 1
    raise QueryError("text not closed: a quote is missing", text, start, len(text), option=option)


# --- the vocabulary: what names mean --------------------------------------------------------


@lru_cache(maxsize=1)
def _params() -> dict[str, tuple[str, tuple[tuple[str, Any], ...], tuple[str, ...]]]:
    """{parameter: (value type, (technique, default) per technique having it, choices)} over
    every registered technique's full schema (its own parameters and the shared options)."""
    from engine.techniques import get_technique, technique_names

    kinds: dict[str, set[str]] = {}
    defaults: dict[str, list[tuple[str, Any]]] = {}
    choices: dict[str, list[str]] = {}
    for technique in technique_names():
        for param in get_technique(technique).full_schema:
            kinds.setdefault(param.name, set()).add(param.kind)
            defaults.setdefault(param.name, []).append((technique, param.default))
            choices.setdefault(param.name, [])
            choices[param.name] += [c for c in param.choices if c not in choices[param.name]]
    result = {}
    for name, found in kinds.items():
        if found <= {"int", "float"}:
            kind = INT if found == {"int"} else FLOAT
        elif found == {"bool"}:
            kind = BOOL
        else:
            kind = TEXT
        result[name] = (kind, tuple(defaults[name]), tuple(choices[name]))
    return result


def _techniques() -> list[str]:
    from engine.techniques import technique_names

    return technique_names()


def param_names() -> list[str]:
    """The names `param.NAME` accepts: every technique's and option's parameters."""
    return list(_params())


def run_field_names() -> list[str]:
    """The names a filter accepts for run fields, as users write them."""
    preferred = {"sample_set": "set", "config_hash": "hash", "git_commit": "commit"}
    return [preferred.get(name, name) for name in RUN_FIELDS]


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f"did you mean {close[0]!r}? " if close else ""


def resolve_field(name: str, *, text: str = "", start: int = 0, option: str = "--filter",
                  allow_sets: bool = True) -> Field:
    """The field a name stands for (`technique`, `set`, `param.blend_start`, `metric.kid`);
    a QueryError listing the known names otherwise."""
    end = start + len(name)
    text = text or name
    lowered = name.lower()
    for prefix in PARAM_PREFIXES:
        if lowered.startswith(prefix):
            param = name[len(prefix):]
            known = _params()
            if param not in known:
                raise QueryError(f"unknown parameter {param!r}: {_suggest(param, list(known))}known: "
                                 f"{', '.join(sorted(known))}", text, start, end, option=option)
            kind, defaults, _ = known[param]
            return Field("param", param, kind, defaults)
    for prefix in METRIC_PREFIXES:
        if lowered.startswith(prefix):
            metric = name[len(prefix):]
            if metric not in METRICS:
                raise QueryError(f"unknown metric {metric!r}: {_suggest(metric, list(METRICS))}known: "
                                 f"{', '.join(METRICS)}", text, start, end, option=option)
            return Field("metric", ranking_metric(metric), FLOAT)
    field = ALIASES.get(lowered, lowered)
    if field not in RUN_FIELDS:
        known = run_field_names()
        raise QueryError(f"unknown field {name!r}: {_suggest(lowered, known)}known: {', '.join(known)}, "
                         "param.NAME, metric.NAME", text, start, end, option=option)
    if not allow_sets and RUN_FIELDS[field] in SETS:
        raise QueryError(f"{name} holds several values per run: it cannot order runs", text, start, end, option=option)
    return Field("run", field, RUN_FIELDS[field])


# --- the parser ------------------------------------------------------------------------------

_COMPARATORS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
                "~": "contains", "!~": "not contains"}


class _Parser:
    def __init__(self, text: str, option: str) -> None:
        self.text, self.option = text, option
        self.tokens = tokenize(text, option)
        self.index = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def error(self, message: str, token: Token | None = None, end: int | None = None) -> QueryError:
        token = token or self.token
        return QueryError(message, self.text, token.start, end if end is not None else token.end, option=self.option)

    def describe(self, token: Token) -> str:
        return "the end of the expression" if token.kind == "end" else repr(token.text)

    def parse(self) -> Node:
        if self.token.kind == "end":
            raise self.error("the expression is empty")
        node = self.disjunction()
        if self.token.kind != "end":
            if self.token.text == ")":
                raise self.error("')' without a matching '('")
            raise self.error(f"expected 'and', 'or' or the end, found {self.describe(self.token)}")
        return node

    def disjunction(self) -> Node:
        parts = [self.conjunction()]
        while self.token.keyword == "or":
            self.advance()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def conjunction(self) -> Node:
        parts = [self.negation()]
        while self.token.keyword == "and":
            self.advance()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def negation(self) -> Node:
        if self.token.keyword == "not":
            self.advance()
            return Not(self.negation())
        if self.token.text == "(" and self.token.kind == "op":
            opening = self.advance()
            node = self.disjunction()
            if self.token.text != ")":
                raise self.error(f"expected ')' to close the '(' at column {opening.start + 1}, found "
                                 f"{self.describe(self.token)}")
            self.advance()
            return node
        return self.comparison()

    def comparison(self) -> Node:
        name = self.token
        if name.kind != "word" or name.keyword:
            raise self.error(f"expected a field name (technique, param.NAME, metric.NAME, tag, ...), found "
                             f"{self.describe(name)}")
        self.advance()
        field = resolve_field(name.text, text=self.text, start=name.start, option=self.option)
        operator = self.token
        if operator.keyword == "is":
            self.advance()
            negated = self.token.keyword == "not"
            if negated:
                self.advance()
            if self.token.keyword != "null":
                raise self.error(f"expected 'null' after 'is{' not' if negated else ''}', found "
                                 f"{self.describe(self.token)}")
            self.advance()
            return Comparison(field, "is not null" if negated else "is null")
        negated = operator.keyword == "not"
        if negated:
            self.advance()
            operator = self.token
            if operator.keyword not in ("in", "like"):
                raise self.error(f"expected 'in' or 'like' after 'not', found {self.describe(operator)}")
        if operator.keyword == "in":
            self.advance()
            values = self.value_list(field, name)
            return Comparison(field, "not in" if negated else "in", values)
        if operator.keyword == "like":
            op = "not contains" if negated else "contains"
        elif operator.kind == "op" and operator.text in _COMPARATORS:
            op = _COMPARATORS[operator.text]
        else:
            raise self.error(f"expected an operator (= != < <= > >= in ~ is null) after {name.text}, found "
                             f"{self.describe(operator)}")
        self.advance()
        self.check_operator(field, op, name, operator)
        value_token = self.value_token()
        value = self.convert(field, value_token, name, op)
        if field.type == TIME and isinstance(value, tuple):  # a whole day
            return _day_condition(field, op, *value)
        return Comparison(field, op, value)

    def check_operator(self, field: Field, op: str, name: Token, operator: Token) -> None:
        kind = field.type
        if op in ("<", "<=", ">", ">=") and kind not in (*NUMERIC, TIME, SWEEPS):
            what = "on/off" if kind == BOOL else "text"
            raise self.error(f"{name.text} is {what}: '{operator.text}' orders numbers and times only "
                             "(use =, !=, in" + (", ~" if kind != BOOL else "") + ")", operator)
        if op in ("contains", "not contains") and kind not in (TEXT, TAGS):
            raise self.error(f"'{operator.text}' looks for text; {name.text} is "
                             f"{'a number' if kind in NUMERIC or kind == SWEEPS else 'a time' if kind == TIME else 'on/off'}",
                             operator)

    def value_token(self) -> Token:
        token = self.token
        if token.kind in ("number", "string") or (token.kind == "word" and token.keyword in (None, "true", "false")):
            return self.advance()
        raise self.error(f"expected a value (a number or 'quoted text'), found {self.describe(token)}")

    def value_list(self, field: Field, name: Token) -> tuple:
        opening = self.token
        if opening.text != "(":
            raise self.error(f"expected '(' and a list of values after 'in', found {self.describe(opening)}")
        if field.type == TIME:
            raise self.error(f"{name.text} is a time: compare it with < or >, not a list", opening)
        self.advance()
        values = []
        while True:
            token = self.value_token()
            values.append(self.convert(field, token, name, "in"))
            if self.token.text == ",":
                self.advance()
                continue
            if self.token.text == ")":
                self.advance()
                return tuple(values)
            raise self.error(f"expected ',' or ')' in the list, found {self.describe(self.token)}")

    def convert(self, field: Field, token: Token, name: Token, op: str) -> Any:
        """The token as a value of the field's type, checked where the values are known."""
        kind = field.type
        if kind in (*NUMERIC, SWEEPS):
            number = _number(token)
            if number is None:
                raise self.error(f"{name.text} is a number, not {self.describe(token)}", token)
            if kind in (INT, SWEEPS) and field.source == "run" and math.isfinite(number) and float(number).is_integer():
                return int(number)
            return number
        if kind == BOOL:
            lowered = token.text.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise self.error(f"{name.text} is on/off: use true or false, not {self.describe(token)}", token)
        if kind == TIME:
            return _time(token.text) or self.fail_time(name, token)
        value = token.text
        if op in ("contains", "not contains"):
            return value
        known = self.known_values(field)
        if known and value not in known:
            raise self.error(f"{name.text} {value!r} does not exist: {_suggest(value, list(known))}known: "
                             f"{', '.join(known)}", token)
        return value

    def fail_time(self, name: Token, token: Token):
        raise self.error(f"{name.text} is a time: write it as '2026-11-20' or '2026-11-20 09:30' (UTC), "
                         f"not {self.describe(token)}", token)

    @staticmethod
    def known_values(field: Field) -> tuple[str, ...]:
        if field.source == "param":
            return _params()[field.name][2]
        if field.source == "run" and field.name == "status":
            return STATUSES
        if field.source == "run" and field.name == "technique":
            return tuple(_techniques())
        return ()


def _number(token: Token) -> float | int | None:
    if token.kind == "word" and token.keyword in ("true", "false"):
        return None
    if re.fullmatch(r"[-+]?\d+", token.text):
        return int(token.text)  # exactly: seeds go up to 2^63-1, beyond a float's 53 bits
    try:
        value = float(token.text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _time(text: str) -> datetime | tuple[datetime, datetime] | None:
    """A datetime (UTC unless the text gives an offset), or (start, end) of a day for a date."""
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError:
            return None
        return day, day + timedelta(days=1)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _day_condition(field: Field, op: str, start: datetime, end: datetime) -> Node:
    """A comparison with a whole day [start, end)."""
    if op == "=":
        return And((Comparison(field, ">=", start), Comparison(field, "<", end)))
    if op == "!=":
        return Or((Comparison(field, "<", start), Comparison(field, ">=", end)))
    return Comparison(field, {"<": "<", "<=": "<", ">": ">=", ">=": ">="}[op], start if op in ("<", ">=") else end)


def parse_filter(text: str | None, *, option: str = "--filter") -> Node | None:
    """The filter tree of an expression (None for no expression); QueryError if it is wrong."""
    if text is None or not text.strip():
        return None
    return _Parser(text, option).parse()


def parse_sort(text: str | None, *, option: str = "--sort") -> list[SortKey]:
    """Comma-separated sort keys, `-` before one for descending: `-metric.kid,id`. Runs
    without a key's value come last, whichever the direction; ties end in run id order."""
    if text is None or not text.strip():
        return []
    keys, position = [], 0
    for part in text.split(","):
        stripped = part.strip()
        start = position + len(part) - len(part.lstrip())
        position += len(part) + 1
        if not stripped:
            raise QueryError("empty sort key (two commas, or one at an end)", text, start, option=option)
        descending = stripped.startswith("-")
        name = stripped.lstrip("-+").strip()
        offset = start + len(stripped) - len(stripped.lstrip("-+").lstrip())
        if not _WORD.fullmatch(name):
            raise QueryError(f"not a field name: {name!r}", text, offset, offset + len(name), option=option)
        keys.append(SortKey(resolve_field(name, text=text, start=offset, option=option, allow_sets=False), descending))
    return keys


__all__ = ["QueryError", "param_names", "parse_filter", "parse_sort", "resolve_field", "run_field_names",
           "tokenize"]
