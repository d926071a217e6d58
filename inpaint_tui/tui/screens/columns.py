"""The column chooser of the runs screen: which columns the table shows, in which order,
named as `runs list --columns` names them (inpaint_tui/read/listing.py owns the vocabulary)."""

from __future__ import annotations

from typing import Sequence

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Label, SelectionList
from textual.widgets.selection_list import Selection

from inpaint_tui.tui.screens.dialogs import _Dialog

HINT = "space/enter: show or hide · K/J or shift+↑/↓: move · r: defaults · a: apply · escape: cancel"


class ColumnsScreen(_Dialog):
    """Every column the runs can fill, the shown ones checked and first, in their order.
    Dismisses with the chosen column keys in order, or None when cancelled."""

    DEFAULT_CSS = """
    ColumnsScreen > Vertical { height: 90%; }
    ColumnsScreen .hint { width: 1fr; }
    ColumnsScreen SelectionList { height: 1fr; }
    """
    BINDINGS = [
        Binding("K,shift+up", "move(-1)", "Move up", id="columns.up",
                tooltip="the highlighted column one place earlier (further left in the table)"),
        Binding("J,shift+down", "move(1)", "Move down", id="columns.down",
                tooltip="the highlighted column one place later (further right)"),
        Binding("r", "restore", "Defaults", id="columns.defaults", tooltip="the screen's own columns again"),
        Binding("a", "apply", "Apply", id="columns.apply", tooltip="show the checked columns, in this order"),
    ]

    def __init__(self, chosen: Sequence[str], available: Sequence[str], defaults: Sequence[str]) -> None:
        super().__init__()
        self.available, self.defaults = list(available), list(defaults)
        self.order = self._ordered(chosen)  # every key, as listed
        self.initial = list(chosen)

    def _ordered(self, first: Sequence[str]) -> list[str]:
        return list(dict.fromkeys([*first, *self.available]))

    def compose(self) -> ComposeResult:
        with Vertical() as dialog:
            dialog.border_title = "Columns of the runs table"  # in the border: a row more for the list at 24 rows
            yield Label(HINT, classes="hint")
            yield SelectionList[str](*self._selections(set(self.initial)), id="columns")
            with Horizontal():
                yield Button("Defaults", id="defaults")
                yield Button("Cancel", id="cancel")
                yield Button("Apply", id="apply", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#columns", SelectionList).focus()

    def _selections(self, checked: set[str]) -> list[Selection[str]]:
        return [Selection(key, key, key in checked) for key in self.order]

    def _show(self, checked: set[str], highlighted: int | None) -> None:
        listing = self.query_one("#columns", SelectionList)
        listing.clear_options()
        listing.add_options(self._selections(checked))
        listing.highlighted = highlighted

    @property
    def chosen(self) -> list[str]:
        """The checked keys, in the listed order (SelectionList.selected is in order of checking)."""
        checked = set(self.query_one("#columns", SelectionList).selected)
        return [key for key in self.order if key in checked]

    def action_move(self, step: int) -> None:
        listing = self.query_one("#columns", SelectionList)
        index = listing.highlighted
        if index is None or not 0 <= index + step < len(self.order):
            return
        self.order[index], self.order[index + step] = self.order[index + step], self.order[index]
        self._show(set(listing.selected), index + step)

    @on(Button.Pressed, "#defaults")
    def action_restore(self) -> None:
        self.order = self._ordered(self.defaults)
        self._show(set(self.defaults), 0)

    @on(Button.Pressed, "#apply")
    def action_apply(self) -> None:
        if not self.chosen:
            self.notify("check at least one column", severity="warning")
            return
        self.dismiss(self.chosen)

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        self.dismiss(None)
