"""CLI tables that fit the terminal: numbers, ids and statuses are never cut to `…`; free
text (prompts, paths, help) wraps; when even that does not fit, optional columns are
dropped, the least important first, and the caller says where their content went.

One small rule set for `runs show`, `compare`, the sweep tables, `samples list`, `workers`,
`techniques` and `models` (`runs list` and `leaderboard` have their own, in progress
elsewhere: the two are meant to become one). Torch-free; imports Rich only when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

# A Rich table with the default box: one border, then per column 1 + padding 2.
_BORDER, _PER_COLUMN = 1, 3
_TEXT_MIN = 12  # the narrowest a wrapping column gets, so words stay readable


@dataclass(frozen=True)
class Col:
    """A column: `keep` cells (numbers, ids, names, statuses) are never wrapped or cut; other
    cells wrap at spaces, and a word longer than the column (a path) folds. `drop` > 0 marks a
    column that may be left out when the table is too wide, the highest first."""

    header: str
    keep: bool = True
    justify: str = "left"
    drop: float = 0
    ratio: int = 1  # a wrapping column's share of the room left


def _width(cell: Any) -> int:
    from rich.text import Text

    text = cell if isinstance(cell, Text) else Text.from_markup(cell) if "[" in str(cell) else Text(str(cell))
    return max((len(line) for line in text.plain.split("\n")), default=0)


def _header(header: str, room: int) -> str:
    """A header no wider than its cells need, broken after underscores (`unet_` over
    `calls`) rather than cut; never narrower than its longest part."""
    if len(header) <= room or "_" not in header:
        return header
    lines, line = [], ""
    for part in header.replace("_", "_\0").split("\0"):
        if line and len(line) + len(part) > room:
            lines.append(line)
            line = ""
        line += part
    return "\n".join(lines + [line])


def fit_table(columns: Sequence[Col], rows: Sequence[Sequence[Any]], *, width: int, **table_options):
    """A Rich Table of `rows` for a console `width` wide, and the headers of the columns
    left out. Cells are strings (Rich markup allowed) or Rich Text."""
    from rich.table import Table

    def need(index: int, break_header: bool) -> tuple[int, int, str]:
        """(width the column needs, its natural width, its header as shown)."""
        column = columns[index]
        cells = max((_width(row[index]) for row in rows), default=0)
        header = _header(column.header, max(cells, 1)) if break_header else column.header
        head = max(len(line) for line in header.split("\n"))
        natural = max(cells, head)
        return (natural if column.keep else min(natural, max(_TEXT_MIN, head))), natural, header

    def total(shown: list[int]) -> int:
        return _BORDER + sum(sizes[i][0] + _PER_COLUMN for i in shown)

    shown = list(range(len(columns)))
    sizes = [need(i, False) for i in shown]
    if total(shown) > width:  # two-line headers before anything is left out
        sizes = [need(i, True) for i in shown]
    for candidate in sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: -columns[i].drop):
        if total(shown) <= width:
            break
        shown.remove(candidate)
    widths = {i: sizes[i][0] for i in shown}
    # The room left goes to the wrapping columns, in proportion to their `ratio`, none past its
    # natural width (Rich alone would stop at their longest word, a path or a hub id).
    spare = width - total(shown)
    growing = [i for i in shown if not columns[i].keep and widths[i] < sizes[i][1]]
    while spare > 0 and growing:
        weight = sum(columns[i].ratio for i in growing)
        given = 0
        for i in growing:
            extra = min(max(1, spare * columns[i].ratio // weight), sizes[i][1] - widths[i], spare - given)
            widths[i] += extra
            given += extra
        spare -= given
        growing = [i for i in growing if widths[i] < sizes[i][1]]
        if not given:
            break
    table = Table(**table_options)
    for i in shown:
        column = columns[i]
        if column.keep:
            table.add_column(sizes[i][2], justify=column.justify, no_wrap=True, min_width=widths[i])
        else:
            table.add_column(sizes[i][2], justify=column.justify, overflow="fold", width=widths[i])
    for row in rows:
        table.add_row(*[row[i] for i in shown])
    return table, [columns[i].header for i in range(len(columns)) if i not in shown]
