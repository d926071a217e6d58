"""The options that choose runs, shared by the listing commands (`runs list`, `leaderboard`,
`export`, `report`): `--filter EXPR`, `--sort KEYS`, `--limit N`, in the query language of
inpaint_tui/read/query.py."""

from __future__ import annotations

from dataclasses import dataclass, field

FILTER_HELP = ("Only runs matching EXPR, e.g. \"technique = 'blended' and param.blend_start >= 0.25 and "
               "metric.bg_mse < 0.02 and tag = 'paper'\" (fields: run fields, param.NAME, metric.NAME, tag; "
               "operators = != < <= > >= in, not in, ~ (contains), is null; and, or, not, parentheses).")
SORT_HELP = "Order by comma-separated keys, '-' for descending: -metric.kid,id (runs without the value last)."
LIMIT_HELP = "At most N runs (after filtering and sorting)."


@dataclass(frozen=True)
class Selection:
    """A parsed --filter / --sort / --limit."""

    where: object = None
    order: list = field(default_factory=list)
    limit: int | None = None

    @property
    def narrows(self) -> bool:
        return self.where is not None or self.limit is not None


def selection(filter_text: str | None, sort_text: str | None, limit: int | None) -> Selection:
    """The options parsed; a QueryError (a ParamError: exit 2 under user_errors) names the
    offending token."""
    from inpaint_tui.read.query import parse_filter, parse_sort

    return Selection(parse_filter(filter_text), parse_sort(sort_text), limit)


__all__ = ["FILTER_HELP", "LIMIT_HELP", "SORT_HELP", "Selection", "selection"]
