"""The help screen: the keys of the screen it was opened over, its tables' keys and the keys
that work everywhere (the areas), read from the bindings themselves (their ids, descriptions
and tooltips), so the list never drifts from what the keys do."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.console import Group
from rich.table import Table as RichTable
from rich.text import Text

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

GUIDE = """\
Keys work everywhere except while typing in a field (escape leaves it). In tables, enter
opens the row. Generation runs in background worker processes (inpaint-tui worker), never in
this app: closing it, or losing the SSH connection, stops nothing.
"""


@dataclass(frozen=True)
class KeyRow:
    keys: str  # as the footer shows them, several joined by " / "
    description: str
    tooltip: str
    id: str


def _rows(node: DOMNode) -> list[KeyRow]:
    """The node's bindings that have an id (the app's own; Textual's built-in ones have none)
    plus the command palette's, one row per id in declaration order."""
    by_id: dict[str, list[Binding]] = {}
    for _key, binding in node._bindings:
        if binding.id is None and binding.action in ("command_palette", "app.command_palette"):
            binding = Binding(binding.key, binding.action, "Command palette", id="app.palette",
                              tooltip="jump to a run or a sample, open an area")
        if binding.id is not None:
            by_id.setdefault(binding.id, []).append(binding)
    app = node.app
    return [KeyRow(" / ".join(dict.fromkeys(app.get_key_display(b) for b in bindings)), bindings[0].description,
                   bindings[0].tooltip, binding_id) for binding_id, bindings in by_id.items()]


def screen_title(screen: Screen) -> str:
    """"RunDetailScreen" -> "Run detail"."""
    words = re.findall(r"[A-Z][a-z]*", type(screen).__name__.removesuffix("Screen"))
    return " ".join(words).capitalize() or "This screen"


def key_sections(screen: Screen) -> list[tuple[str, list[KeyRow]]]:
    """(title, rows) for the screen, the kinds of widget on it that have keys of their own
    (its tables), and the app."""
    sections = [(f"{screen_title(screen)} screen", _rows(screen))]
    seen: set[type] = set()
    for widget in screen.query("*"):
        kind = type(widget)
        if kind in seen or kind.__module__.startswith("textual."):
            continue
        seen.add(kind)
        rows = _rows(widget)
        if rows:
            sections.append((f"In {kind.__name__.lower()}s", rows))
    sections.append(("Everywhere", _rows(screen.app)))
    return [(title, rows) for title, rows in sections if rows]


def help_text(screen: Screen) -> Group:
    """The sections as Rich tables (one line per key where the width allows; long
    descriptions wrap), then the guide."""
    parts: list = [Text("inpaint-tui: keys", style="bold")]
    for title, rows in key_sections(screen):
        table = RichTable(box=None, show_header=False, padding=(0, 1), expand=True)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("does", ratio=1)
        table.add_column("id", style="dim", no_wrap=True)
        for row in rows:
            table.add_row(row.keys, row.description + (f": {row.tooltip}" if row.tooltip else ""), row.id)
        parts += [Text(""), Text(title, style="bold underline"), table]
    guide = getattr(screen.app, "HELP_GUIDE", GUIDE)  # an app of its own (judging) says what matters there
    parts += [Text(""), Text(" ".join(guide.split()))]
    return Group(*parts)


class HelpScreen(ModalScreen):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; max-width: 110; height: 90%; border: thick $accent;
                                  background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def __init__(self, over: Screen) -> None:
        super().__init__()
        self.sections = key_sections(over)
        self.content = help_text(over)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.content, id="keys")
