"""The help screen: what each area is for, and every key binding of the app."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

GUIDE = """\
# inpaint-tui

**Areas** (keys work everywhere except while typing in a field):

| key | area |
|---|---|
| `d` | Dashboard: active runs with live progress, workers, latest results |
| `s` | Samples: sets and samples, preview with the mask, build a set |
| `n` | New run: techniques, parameters (comma lists make a sweep), submit |
| `r` | Runs: every run; cancel, resume, clone, delete, tags, note |
| `l` | Leaderboard: metrics as mean [95% CI], best per column, compare two runs |
| `w` | Sweeps: a metric against a swept parameter |
| `ctrl+p` | Command palette: jump to a run or sample, open an area |
| `?` | This help |
| `q` | Quit (runs go on in their workers) |

In tables: `enter` opens the row; the footer shows each screen's own keys. On the runs and
leaderboard screens `E` exports the runs shown (CSV, JSON lines or Parquet; see the README)
and `P` writes an HTML + Markdown report on them.

Generation runs in background worker processes (`inpaint-tui worker`), never in this app:
closing it, or losing the SSH connection, stops nothing.
"""


class HelpScreen(ModalScreen):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; height: 90%; border: thick $accent; background: $surface; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(GUIDE)
