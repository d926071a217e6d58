"""A blind judging session: one sample's input with the mask outlined and two runs' outputs
side by side, keys for left / right / tie / skip / undo, and a progress bar. Nothing on the
screen names a run, a technique or a parameter (tested on the rendered screen); the trial's
runs stay inside jobs.judging.JudgingSession. Store calls run on a thread, one at a time:
keys pressed while an answer is being saved are ignored, so one press is one answer."""

from __future__ import annotations

from dataclasses import dataclass, replace

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, ProgressBar
from textual.worker import Worker

from inpaint_tui.store import JudgementOutcome
from inpaint_tui.tui.base import ImageStrip


@dataclass(frozen=True)
class Screenful:
    """What the next screenful shows (no prompt and no images: nothing left to judge)."""

    question: str
    prompt: str | None
    images: list  # (caption, PIL image or None)
    progress: object  # jobs.judging.JudgingProgress
    message: str = ""


class JudgeScreen(Screen):
    BINDINGS = [
        Binding("left,1", "answer('left')", "Left", id="judge.left", tooltip="the left output is better"),
        Binding("right,2", "answer('right')", "Right", id="judge.right", tooltip="the right output is better"),
        Binding("t,3,down", "answer('tie')", "Tie", id="judge.tie", tooltip="equally good (or equally bad)"),
        Binding("s", "answer('skip')", "Skip", id="judge.skip", tooltip="cannot tell: not asked again"),
        Binding("u,backspace", "undo", "Undo", id="judge.undo", tooltip="take back your last answer"),
        Binding("escape,q", "finish", "Done", id="judge.done", tooltip="stop here; resume any time"),
    ]
    DEFAULT_CSS = """
    JudgeScreen #question { width: 1fr; padding: 0 1; text-style: bold; }
    JudgeScreen #prompt { width: 1fr; padding: 0 1; color: $text-muted; }
    JudgeScreen ImageStrip { height: 1fr; }
    JudgeScreen #progress-row { height: 1; padding: 0 1; }
    JudgeScreen ProgressBar { width: auto; }
    JudgeScreen #counts { width: 1fr; padding: 0 0 0 2; }
    JudgeScreen #message { width: 1fr; padding: 0 1; color: $warning; height: auto; }
    """

    def __init__(self, study_id: int, rater: str, *, on_finish=None) -> None:
        super().__init__()
        self.study_id, self.rater = study_id, rater
        self.on_finish = on_finish  # called with the answers given in this session, when leaving
        self.session = None  # jobs.judging.JudgingSession, built on the thread
        self.busy = True
        self.answered = 0  # answers given on this screen (undos subtract)

    def compose(self) -> ComposeResult:
        from textual.containers import Horizontal

        yield Header()
        yield Label("", id="question")
        yield Label("", id="prompt")
        yield ImageStrip(id="images")
        yield Label("", id="message")
        with Horizontal(id="progress-row"):
            yield ProgressBar(total=1, show_eta=False, id="bar")
            yield Label("", id="counts")
        yield Footer()

    def on_mount(self) -> None:
        self._step(None)

    def action_answer(self, outcome: str) -> None:
        if self.busy or self.session is None or self.session.current is None:
            return
        self._step(outcome)

    def action_undo(self) -> None:
        if self.busy or self.session is None:
            return
        self._step("undo")

    def action_finish(self) -> None:
        if self.on_finish is not None:
            self.on_finish(self.answered)
        else:
            self.dismiss(self.answered)

    def _step(self, what: str | None) -> None:
        self.busy = True
        self._advance(what)

    @work(thread=True, exclusive=True, group="judge", exit_on_error=False)
    def _advance(self, what: str | None) -> None:
        """On a thread: save the answer (or take the last one back), then draw the next trial."""
        from inpaint_tui.jobs.judging import JudgingSession
        from inpaint_tui.tui.images import load, with_mask_outline

        store = self.app.store
        if self.session is None:
            self.session = JudgingSession(store, self.study_id, self.rater)
        message, change = "", 0
        if what == "undo":
            if self.session.undo():
                message, change = "took back your last answer: here it is again", -1
            else:
                message = "nothing to take back"
        elif what is not None:
            self.session.answer(what)
            change = 1
            if what == JudgementOutcome.SKIP:
                message = "skipped: you will not be asked this pair again"
        shown = self.session.next()
        progress = self.session.last_progress
        study = self.session.study
        if shown is None:
            data = Screenful(study.question, None, [], progress, "nothing left for you to judge in this study: thank you "
                         "(escape to leave)")
        else:
            sample = shown.sample
            source = load(sample.image_path)
            images = [("input, mask outlined", None if source is None else with_mask_outline(source, sample.mask_path)),
                      ("left  ← 1", load(shown.left_image)), ("right  2 →", load(shown.right_image))]
            data = Screenful(study.question, sample.prompt, images, progress, message)
        self.app.call_from_thread(self._show, data, change)

    def _show(self, data: Screenful, change: int) -> None:
        if not self.is_attached:
            return
        self.answered += change
        self.query_one("#question", Label).update(data.question)
        self.query_one("#prompt", Label).update("" if data.prompt is None else f"prompt: {data.prompt}")
        self.query_one("#message", Label).update(data.message)
        self.query_one(ImageStrip).set_images(data.images)
        progress = data.progress
        bar = self.query_one("#bar", ProgressBar)
        bar.update(total=max(1, progress.needed), progress=progress.answered)
        self.query_one("#counts", Label).update(
            f"yours {progress.mine} · left for you {progress.left_for_me} · study {progress.answered}/{progress.needed}")
        if self.session is not None and self.session.current is not None:
            # The rater's clock starts when the pair is on the screen, not when it was read.
            self.session.current = replace(self.session.current, shown_at=self.session.clock())
        self.busy = False

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.is_finished and event.worker.error is not None:
            self.busy = False  # an answer that failed to save can be given again
        self.app.report_worker_error(event)
