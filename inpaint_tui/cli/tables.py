"""Tables that fit the terminal, for every CLI listing: columns are shown whole or not at all.

Rich, given a table wider than the terminal, shrinks every column and cuts what no longer
fits: numbers become `0…` and one run spreads over a dozen lines. Here a table is described
as columns that know how to get narrower, and `fit` chooses, for the console's width, in
this order until the table fits:

1. headers break after `_`, `.` and spaces (`clip_` / `local`): headers cost lines once, rows
   cost them on every run;
2. free-text columns (`wrap=True`, such as parameters) narrow to the width where every cell
   takes at most `max_lines` lines (words are not cut);
3. every column moves to its next, more compact form (`forms`: an interval on its own line,
   then no interval; a shorter status), all together, so the table stays uniform;
4. columns are dropped, highest `priority` first (0: never dropped), and the caller is told
   which, to say so under the table;
5. what is left (only when even the essential columns are too wide) goes to the free-text
   columns, which then take more lines.

Whatever room is left is shared among the free-text columns by their `ratio`, none past its
natural width.

Numbers and other non-wrapping cells are never cut: a column is as wide as its widest cell.
A `fold` column (paths, hub ids: one long word) may be folded inside its words down to a
dozen characters rather than be held to `max_lines`. Tables are borderless by default (the
listings); `boxed=True` draws Rich's default box, for the detail tables (`runs show`,
`compare`, sweeps, samples, workers, techniques, models) whose rows are read across by `│`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from rich.text import Text

BOX_GAP = 2  # characters between two columns (see `build`): a space of padding and the separator
TEXT_MIN = 12  # the narrowest a folding column gets, so a path stays readable


def overhead(count: int, boxed: bool = False) -> int:
    """The characters a table of `count` columns spends outside its cells: borderless, the gaps
    between columns; boxed, two edges and per column a separator and two spaces of padding."""
    return 3 * count + 1 if boxed and count else BOX_GAP * max(0, count - 1)


@dataclass
class Column:
    """One column. `cells`: plain text per row (a line break makes a second line);
    `forms`: the cells again, each form more compact than the one before; `styles`: a Rich
    style per row (or None); `wrap`: free text that may wrap (never numbers)."""

    key: str
    header: str
    cells: list[str]
    forms: list[list[str]] = field(default_factory=list)
    justify: str = "left"
    wrap: bool = False
    priority: int = 0
    styles: list[str | None] | None = None
    header_style: str | None = None
    group: str | None = None  # columns whose forms change together (all metrics); default: the key
    form_justify: list[str] | None = None  # the justification of each form after the first
    fold: bool = False  # a wrapping column whose words may fold (paths): see the module docstring
    ratio: int = 1  # a wrapping column's share of the room left to free text (see `_grow`)
    # chosen by `fit`
    form: int = 0
    split_header: bool = False
    limit: int | None = None  # the width a wrapping column gets

    @property
    def shown_cells(self) -> list[str]:
        return self.cells if self.form == 0 else self.forms[self.form - 1]

    def content_width(self) -> int:
        return max((_text_width(cell) for cell in self.shown_cells), default=0)

    def header_lines(self, width: int | None = None) -> list[str]:
        if not self.split_header:
            return self.header.split("\n")
        return _break(self.header, max(width or 0, self.content_width() if not self.wrap else 0))

    def width(self) -> int:
        if self.wrap and self.limit is not None:
            body = self.limit
        else:
            body = self.content_width()
        return max(body, max(_text_width(line) for line in self.header_lines(body)))


@dataclass
class Fitted:
    columns: list[Column]
    dropped: list[Column]
    width: int  # the table's width
    boxed: bool = False

    @property
    def dropped_keys(self) -> list[str]:
        return [column.key for column in self.dropped]

    @property
    def dropped_headers(self) -> list[str]:
        return [column.header.replace("\n", " ") for column in self.dropped]


def _text_width(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(line) for line in text.split("\n")), default=0)


def _pieces(header: str) -> list[str]:
    """`clip_local ↓` -> `clip_`, `local `, `↓`: break points after `_`, `.`, `-`, spaces."""
    return [piece for piece in re.findall(r"[^_.\- ]*[_.\- ]+|[^_.\- ]+$", header) if piece]


def _break(header: str, width: int) -> list[str]:
    """The header on as few lines of at most `width` (or its longest piece) as its pieces allow."""
    pieces = _pieces(header) or [header]
    width = max(width, max(len(piece.rstrip()) for piece in pieces))
    lines = [""]
    for piece in pieces:
        if lines[-1] and _text_width((lines[-1] + piece).rstrip()) > width:
            lines.append("")
        lines[-1] += piece
    return [line.rstrip() for line in lines]


def table_width(columns: Sequence[Column], boxed: bool = False) -> int:
    return sum(column.width() for column in columns) + overhead(len(columns), boxed)


def from_rows(columns: Sequence[Column], rows: Sequence[Sequence[object]]) -> list[Column]:
    """The columns with their cells taken from `rows` (one list per row, in column order), for
    callers that build a table row by row."""
    for index, column in enumerate(columns):
        column.cells = [str(row[index]) for row in rows]
    return list(columns)


def _lines(console, text: str, width: int) -> int:
    from rich.text import Text

    return sum(len(Text(part).wrap(console, width, overflow="fold")) or 1 for part in text.split("\n"))


def _longest_word(column: Column) -> int:
    return max((_text_width(word) for cell in column.shown_cells for word in cell.split()), default=1)


def _narrowest(console, column: Column, max_lines: int) -> int:
    """The narrowest width at which every cell of a wrapping column takes at most
    `max_lines` lines without cutting a word (its longest word, at least)."""
    cells = column.shown_cells
    natural = column.content_width()
    if column.fold:  # one long word per cell: folded, not held to `max_lines`
        return max(1, min(natural, TEXT_MIN))
    words = _longest_word(column)
    low, high = max(1, words), max(1, natural)
    if low >= high:
        return high
    while low < high:  # the line count falls as the width grows: binary search
        middle = (low + high) // 2
        if all(_lines(console, cell, middle) <= max_lines for cell in cells):
            high = middle
        else:
            low = middle + 1
    return low


def _grow(shown: list[Column], wrapping: list[Column], width: int, boxed: bool) -> None:
    """Widen the wrapping columns from their current limits into the room the table leaves,
    shared by `ratio` and none past its natural width, so that a short column's surplus goes
    to the others (widening one column to the full before the next leaves the next folded)."""
    natural = {id(column): column.content_width() for column in wrapping}
    growing = [column for column in wrapping if (column.limit or 0) < natural[id(column)]]
    while growing and (spare := width - table_width(shown, boxed)) > 0:
        weight = sum(column.ratio for column in growing)
        grown = False
        for column in growing:
            before = column.limit or 0
            column.limit = min(natural[id(column)], before + max(1, spare * column.ratio // weight))
            while column.limit > before and table_width(shown, boxed) > width:  # past the room: back
                column.limit -= 1
            grown = grown or column.limit > before
        growing = [column for column in growing if column.limit < natural[id(column)]]
        if not grown:
            break


def fit(columns: Sequence[Column], width: int, console, *, max_lines: int = 2, boxed: bool = False) -> Fitted:
    """The columns to show at `width` and how (see the module docstring), and those dropped.

    Found greedily: everything made as compact as it can be, columns dropped (highest
    priority first) until the table fits, dropped columns that fit again taken back (most
    important first), then each kind of compactness undone where the width allows it: the
    richer forms first (per `group`, left to right), then the free-text widths (fewer lines),
    then whole headers."""
    shown = list(columns)
    for column in shown:
        column.form, column.split_header, column.limit = 0, False, None

    def fits() -> bool:
        return table_width(shown, boxed) <= width

    if fits():
        return Fitted(shown, [], table_width(shown, boxed), boxed)
    for column in shown:  # as compact as possible
        column.split_header = True
        column.form = len(column.forms)
        if column.wrap:
            column.limit = _narrowest(console, column, max_lines)
    dropped: list[Column] = []
    for column in sorted((c for c in shown if c.priority > 0), key=lambda c: (-c.priority, -columns.index(c))):
        if fits():
            break
        shown.remove(column)
        dropped.append(column)
    for column in sorted(dropped, key=lambda c: (c.priority, columns.index(c))):  # take back what fits again
        shown.append(column)
        shown.sort(key=columns.index)
        if fits():
            dropped.remove(column)
        else:
            shown.remove(column)
    if not fits():  # only essential columns left, still too wide: the free text takes what remains
        wrapping = [column for column in shown if column.wrap]
        for column in wrapping:  # words whole where the room allows (`euler_ancestral`, not `euler_ances`)
            column.limit = max(1, min(column.content_width(), TEXT_MIN if column.fold else _longest_word(column)))
        if not fits():
            for column in wrapping:
                column.limit = min(column.content_width(), 4)
        _grow(shown, wrapping, width, boxed)
        return Fitted(shown, dropped, table_width(shown, boxed), boxed)
    groups = list(dict.fromkeys(column.group or column.key for column in shown))
    for group in groups:  # richer forms back, a group at a time
        members = [c for c in shown if (c.group or c.key) == group]
        while any(c.form > 0 for c in members):
            before = [c.form for c in members]
            for c in members:
                c.form = max(0, c.form - 1)
                if c.wrap:
                    c.limit = _narrowest(console, c, max_lines)
            if not fits():
                for c, form in zip(members, before):
                    c.form = form
                    if c.wrap:
                        c.limit = _narrowest(console, c, max_lines)
                break
    _grow(shown, [c for c in shown if c.wrap], width, boxed)  # free text as wide as the room left allows
    for column in shown:  # whole headers where there is room
        column.split_header = False
        if not fits():
            column.split_header = True
    return Fitted(shown, dropped, table_width(shown, boxed), boxed)


def build(fitted: Fitted, *, title: str | None = None, caption: str | None = None):
    """The Rich table of fitted columns, every column at the width `fit` chose."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    if fitted.boxed:  # Rich's default box: `│` between cells and at both edges
        table = Table(title=title, caption=caption, caption_justify="left", title_justify="left")
    else:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), title=title,
                      caption=caption, caption_justify="left", title_justify="left")
    for column in fitted.columns:
        width = column.width()
        header = Text("\n".join(column.header_lines(column.limit if column.wrap else None)),
                      style=column.header_style or "")
        justify = column.justify if column.form == 0 or not column.form_justify else \
            column.form_justify[column.form - 1]
        table.add_column(header, justify=justify, width=width, no_wrap=not column.wrap,
                         overflow="fold" if column.wrap else "ellipsis")
    rows = len(fitted.columns[0].cells) if fitted.columns else 0
    for index in range(rows):
        table.add_row(*[Text(column.shown_cells[index], style=(column.styles or [None] * rows)[index] or "")
                        for column in fitted.columns])
    return table


def print_table(console, columns: Sequence[Column], *, title: "str | Text | None" = None,
                caption: "str | Callable[[Fitted], str] | None" = None,
                wide: bool = False, max_lines: int = 2, what: str = "them", boxed: bool = False,
                say_dropped: bool = True) -> Fitted:
    """Fit the columns to the console (or, `wide`, show them all at their full width, for a
    pager) and print the table, saying under it which columns did not fit (unless
    `say_dropped` is false: the caller says where their content went). `caption` may be a
    function of the fitted table (to say what a compact form left out); `title` may be Rich
    Text (for markup)."""
    if wide:
        for column in columns:
            column.form, column.split_header, column.limit = 0, False, None
        fitted = Fitted(list(columns), [], table_width(columns, boxed), boxed)
        width = max(console.width, fitted.width)
    else:
        fitted = fit(columns, console.width, console, max_lines=max_lines, boxed=boxed)
        width = console.width
    text = caption(fitted) if callable(caption) else caption
    notes = [text] if text else []
    if fitted.dropped and say_dropped:
        notes.append(f"hidden at {console.width} columns: {', '.join(fitted.dropped_headers)} (--wide shows {what})")
    from rich.text import Text

    # Title and notes are printed apart from the table: a narrow table would wrap them to its width.
    table = build(fitted)
    if title:
        console.print(title if isinstance(title, Text) else Text(title), highlight=False)
    terminal_width = console.width
    console.width = width  # Rich never prints wider than its console: --wide widens it for this table
    try:
        console.print(table, crop=False)
    finally:
        console.width = terminal_width
    for note in notes:
        console.print(Text(note), highlight=False)
    return fitted


__all__ = ["Column", "Fitted", "build", "fit", "from_rows", "overhead", "print_table", "table_width"]
