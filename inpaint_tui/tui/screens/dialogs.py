"""Small modal dialogs: confirm, ask for a line of text, choose from a list, and the first-start offer."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static


class _Dialog(ModalScreen):
    DEFAULT_CSS = """
    _Dialog { align: center middle; }
    _Dialog > Vertical { width: 90%; max-width: 100; height: auto; border: thick $accent; background: $surface;
                         padding: 1 2; }
    _Dialog Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    _Dialog Button { margin-left: 1; }
    """
    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="dialog.cancel")]

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class ConfirmScreen(_Dialog):
    """Asks a yes/no question; dismisses with True or False."""

    def __init__(self, question: str, confirm: str = "Yes") -> None:
        super().__init__()
        self.question, self.confirm = question, confirm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question)
            with Horizontal():
                yield Button("Cancel", id="no")
                yield Button(self.confirm, id="yes", variant="error")

    @on(Button.Pressed)
    def answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class TextScreen(_Dialog):
    """Asks for one line of text; dismisses with the text, or None when cancelled."""

    def __init__(self, title: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text, self.value, self.placeholder = title, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            yield Input(self.value, placeholder=self.placeholder, id="text")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("OK", id="ok", variant="primary")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def submit(self) -> None:
        self.dismiss(self.query_one("#text", Input).value)

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        self.dismiss(None)


class ChoiceScreen(_Dialog):
    """Asks to choose one of a list (arrows, enter; escape cancels); dismisses with the index
    of the chosen option, or None when cancelled (an option may itself mean "none")."""

    DEFAULT_CSS = """
    ChoiceScreen OptionList { height: auto; max-height: 16; margin-top: 1; }
    """

    def __init__(self, title: str, options: list[str], current: int | None = None) -> None:
        super().__init__()
        self.title_text, self.options, self.current = title, options, current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            yield OptionList(*self.options, id="choices")

    def on_mount(self) -> None:
        choices = self.query_one("#choices", OptionList)
        choices.highlighted = self.current if self.current is not None else 0
        choices.focus()

    @on(OptionList.OptionSelected, "#choices")
    def choose(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option_index)


class FirstStartScreen(_Dialog):
    """On an empty database: import the demo set and run every technique on it (tiny model,
    in a background worker), or start empty."""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("[b]This database has no samples yet.[/b]\n\nImport the bundled demo set (6 photos with masks "
                         "and prompts) and run every technique on it with the offline [i]tiny[/i] model? The runs go "
                         "to a background worker; follow them on the dashboard.")
            with Horizontal():
                yield Button("Start empty", id="empty")
                yield Button("Import and run the demo", id="demo", variant="primary")

    def on_worker_state_changed(self, event) -> None:
        self.app.report_worker_error(event)

    @on(Button.Pressed, "#empty")
    def empty(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#demo")
    def demo(self) -> None:
        self.query_one("#demo", Button).disabled = True
        self.start_demo()

    @work(thread=True, exclusive=True, group="demo", exit_on_error=False)
    def start_demo(self) -> None:
        from engine.spec import DEFAULTS, EvalConfig
        from inpaint_tui.jobs.launch import ensure_worker
        from inpaint_tui.jobs.runs import queue_demo_runs
        from inpaint_tui.jobs.samples import ensure_demo

        store = self.app.store
        ensure_demo(store)
        run_ids = queue_demo_runs(store, model=DEFAULTS.model, steps=DEFAULTS.demo_steps, seed=DEFAULTS.seed,
                                  evaluation=EvalConfig.for_model(DEFAULTS.model), command="inpaint-tui (demo)")
        worker_id, started = ensure_worker(store)
        self.app.call_from_thread(self.app.notify, f"queued demo runs {run_ids[0]}–{run_ids[-1]}; worker {worker_id} "
                                  + ("started" if started else "serves them"))
        self.app.call_from_thread(self.dismiss, True)
