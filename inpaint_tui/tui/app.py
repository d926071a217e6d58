"""The app: one mode per area (dashboard, samples, new run, runs, leaderboard, sweeps), each
with its own screen stack (run detail and compare are pushed on top), bindings with ids, a
command palette, and errors shown once as notifications instead of tracebacks."""

from __future__ import annotations

import sys
from typing import Callable

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual import work
from textual.worker import Worker, WorkerState

from inpaint_tui.store import Store

GIL_SWITCH_SECONDS = 0.0002  # while the app runs; see on_mount


def _screen(module: str, name: str) -> Callable[[], Screen]:
    """A mode's screen, imported when first shown (the app starts on the dashboard fast)."""

    def make() -> Screen:
        from importlib import import_module

        return getattr(import_module(f"inpaint_tui.tui.screens.{module}"), name)()

    return make


class InpaintApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "inpaint-tui"
    MODES = {
        "dashboard": _screen("dashboard", "DashboardScreen"),
        "samples": _screen("samples", "SamplesScreen"),
        "new_run": _screen("new_run", "NewRunScreen"),
        "runs": _screen("runs", "RunsScreen"),
        "leaderboard": _screen("leaderboard", "LeaderboardScreen"),
        "sweeps": _screen("sweep_plot", "SweepPlotScreen"),
    }
    DEFAULT_MODE = "dashboard"
    # The area keys open each area's main screen; the footer has room for the screen's own
    # keys only, so these are listed by `?` (their tooltips say what each area is for).
    BINDINGS = [
        Binding("d", "area('dashboard')", "Dashboard", id="go.dashboard", show=False,
                tooltip="active runs with live progress, workers, latest results"),
        Binding("s", "area('samples')", "Samples", id="go.samples", show=False,
                tooltip="sets and samples, preview with the mask, build a set"),
        Binding("n", "area('new_run')", "New run", id="go.new_run", show=False,
                tooltip="techniques, parameters (comma lists make a sweep), submit"),
        Binding("r", "area('runs')", "Runs", id="go.runs", show=False,
                tooltip="every run; cancel, resume, clone, delete, tags, note"),
        Binding("l", "area('leaderboard')", "Leaderboard", id="go.leaderboard", show=False,
                tooltip="metrics as mean [95% CI], best per column, compare two runs"),
        Binding("w", "area('sweeps')", "Sweeps", id="go.sweeps", show=False,
                tooltip="a metric against a swept parameter"),
        Binding("question_mark", "help", "Keys", id="app.help", tooltip="this screen's keys and every area's"),
        Binding("q", "quit", "Quit", id="app.quit", tooltip="runs go on in their workers"),
    ]

    def __init__(
        self,
        store: Store,
        *,
        image_class=None,
        start_screen: str | None = None,
        refresh_seconds: float = 1.0,
        offer_demo: bool = True,
    ) -> None:
        super().__init__()
        from inpaint_tui.tui.commands import InpaintCommands

        self.COMMANDS = App.COMMANDS | {InpaintCommands}
        self.store = store
        if image_class is None:
            from inpaint_tui.tui.images import image_widget_class

            image_class = image_widget_class("auto")
        self.image_class = image_class
        self.start_screen = start_screen
        self.refresh_seconds = refresh_seconds
        self.offer_demo = offer_demo
        from sqlalchemy.engine import make_url

        url = make_url(store.url)
        self.sub_title = url.database.rsplit("/", 1)[-1] if url.get_backend_name() == "sqlite" else url.render_as_string()

    def on_mount(self) -> None:
        # Screens load on threads whose SQLite calls release the GIL at every row; with the
        # default 5 ms switch interval each release waits out a busy event loop (a convoy:
        # 60 leaderboard rows took 0.5 s while the screen was being built, 0.1 s at 0.2 ms).
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        if self.start_screen and self.start_screen != self.DEFAULT_MODE:
            self.switch_mode(self.start_screen)
        if self.offer_demo:
            self._offer_demo_if_empty()

    def on_unmount(self) -> None:
        sys.setswitchinterval(self._switch_interval)

    def _offer_demo_if_empty(self) -> None:
        if self.store.sample_sets():
            return
        from inpaint_tui.tui.screens.dialogs import FirstStartScreen

        self.push_screen(FirstStartScreen())

    async def action_area(self, mode: str) -> None:
        """Show the area's main screen: what was stacked on it in that mode (a run's detail, a
        comparison, a dialog) is closed, so a key always leads to the same place."""
        await self.switch_mode(mode)
        while len(self.screen_stack) > 1:
            await self.pop_screen()

    def open_area(self, mode: str) -> None:
        """`action_area` for code (the palette, clone): scheduled, as a key press would be."""
        self.call_later(self.action_area, mode)

    def action_help(self) -> None:
        from inpaint_tui.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def open_run(self, run_id: int) -> None:
        from inpaint_tui.tui.screens.run_detail import RunDetailScreen

        self.push_screen(RunDetailScreen(run_id))

    def open_compare(self, run_a: int, run_b: int) -> None:
        from inpaint_tui.tui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(run_a, run_b))

    def open_diff(self, run_ids) -> None:
        from inpaint_tui.tui.screens.diff import DiffScreen

        self.push_screen(DiffScreen(run_ids))

    def open_judging(self, run_ids) -> None:
        """A blind judging session over these runs as you (the study over them is resumed or
        created); leaving it refreshes the runs' human scores."""
        self._start_judging(list(run_ids))

    @work(thread=True, group="judging", exit_on_error=False)
    def _start_judging(self, run_ids: list[int]) -> None:
        from inpaint_tui.jobs.judging import check_rater, default_rater, open_study

        rater = check_rater(default_rater())  # refused before a study is made
        study, created = open_study(self.store, run_ids)
        self.call_from_thread(self._push_judging, study, created, rater)

    def _push_judging(self, study, created: bool, rater: str) -> None:
        from inpaint_tui.tui.screens.judge import JudgeScreen

        self.notify(f"{'new' if created else 'resuming'} study {study.id}: {study.trials} trials, judging as {rater}",
                    timeout=4)
        self.push_screen(JudgeScreen(study.id, rater), lambda answers: self._judging_done(study.id))

    @work(thread=True, group="judging", exit_on_error=False)
    def _judging_done(self, study_id: int) -> None:
        from inpaint_tui.jobs.judging import refresh_human_scores

        refresh_human_scores(self.store, study_id)
        self.call_from_thread(self.notify, f"study {study_id}: human scores updated "
                              f"(inpaint-tui judge results {study_id})", timeout=5)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.report_worker_error(event)

    def report_worker_error(self, event: Worker.StateChanged) -> None:
        """A background task that failed is reported once, readably; the app goes on.
        (Worker state messages do not bubble: screens forward theirs here.)"""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(f"{type(error).__name__}: {error}", title="error", severity="error", timeout=8)


class JudgeApp(App):
    """`inpaint-tui judge`: one judging session and nothing else, so a rater cannot wander to
    a leaderboard that names the runs. Exits with the number of answers given."""

    CSS_PATH = "app.tcss"
    TITLE = "inpaint-tui judge"
    ENABLE_COMMAND_PALETTE = False  # it would reach runs by name
    HELP_GUIDE = """\
Choose the output that answers the question better; t when they are equally good (or equally
bad), s when you cannot tell. Every answer is saved as you give it: leave with escape and come
back any time, the session goes on where you left it.
"""
    BINDINGS = [Binding("question_mark", "help", "Keys", id="app.help", tooltip="what each key does")]

    def __init__(self, store: Store, study_id: int, rater: str, *, image_class=None) -> None:
        super().__init__()
        self.store = store
        if image_class is None:
            from inpaint_tui.tui.images import image_widget_class

            image_class = image_widget_class("auto")
        self.image_class = image_class
        self.study_id, self.rater = study_id, rater
        self.answers = 0
        self.sub_title = f"study {study_id} · rater {rater}"

    def on_mount(self) -> None:
        from inpaint_tui.tui.screens.judge import JudgeScreen

        self.push_screen(JudgeScreen(self.study_id, self.rater, on_finish=self._finish))

    def _finish(self, answers: int) -> None:
        self.answers = answers
        self.exit(0)

    def action_help(self) -> None:
        from inpaint_tui.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def report_worker_error(self, event: Worker.StateChanged) -> None:
        InpaintApp.report_worker_error(self, event)
