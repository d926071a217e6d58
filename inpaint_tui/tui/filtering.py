"""The filter box of the runs screen and the leaderboard: the CLI's `--filter` grammar
(inpaint_tui/read/query.py), evaluated by the store in SQL. Text that is not an expression
and has no operator characters (`blended`, `paper`) is a substring search instead, since
that is what people type first. Called on a screen's fetch thread only: no widgets here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from inpaint_tui.read.present import format_params

PLACEHOLDER = "filter: technique = 'blended' and metric.bg_mse < 0.02 · or a word"  # fits 80 columns
# Characters only an expression has: without them, text that does not parse is a search word.
OPERATOR_CHARACTERS = re.compile(r"[=<>!~()'\",]")


@dataclass(frozen=True)
class BoxError:
    """Why the box's text is not an expression: the parser's one-line `message` (with the
    column) and the offending characters, `text[start:end]` (`start` may be `len(text)`:
    the expression ended too soon). str() is the message alone."""

    message: str
    text: str
    start: int
    end: int

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class FilterResult:
    """What a filter text selects: `where` (an expression's tree), or `needle` (a substring),
    or neither (empty text: everything); `error` why the text does not parse instead."""

    text: str
    where: object = None
    needle: str | None = None
    error: BoxError | None = None

    @property
    def everything(self) -> bool:
        return self.where is None and self.needle is None and self.error is None


def parse_box(text: str) -> FilterResult:
    from inpaint_tui.read.query import QueryError, parse_filter

    stripped = text.strip()
    if not stripped:
        return FilterResult(text)
    try:
        # The text as typed (the tokenizer skips spaces): an error's column is the box's column.
        return FilterResult(text, where=parse_filter(text, option="filter"))
    except QueryError as error:
        if not OPERATOR_CHARACTERS.search(stripped):
            return FilterResult(text, needle=stripped.lower())
        # The first line is the message with its column; the caret line under the expression
        # is drawn by the screen from the span (tui/base.py: show_filter_error).
        return FilterResult(text, error=BoxError(str(error).splitlines()[0], error.text, error.start, error.end))


def haystack(run_id: int, technique: str, params: dict, tags=(), *other: str) -> str:
    """What a search word is looked for in: the run's id, technique, parameters, tags and
    whatever else a screen shows of it (status, set, model, note)."""
    return " ".join([str(run_id), technique, format_params(params), *tags, *other]).lower()


__all__ = ["BoxError", "FilterResult", "PLACEHOLDER", "haystack", "parse_box"]
