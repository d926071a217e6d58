"""Kept in one file: one form screen, its widgets and their handlers (the grid is expanded in jobs.sweeps).

New run: pick techniques, fill the forms generated from their parameter schemas, and
queue. A comma list in any field (a parameter, seeds, steps, guidance) makes a sweep, whose
grid points identical to runs already finished or queued reuse them. A background worker is
started when none serves the database; the app never generates anything itself."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Footer, Header, Label, Select, SelectionList, Static

from engine.metrics.catalogue import DEFAULT_GROUPS, GROUPS
from engine.options import parse_batch_size
from engine.models import PRESETS
from engine.params import ParamError
from engine.preview import ANIMATION_FORMATS
from engine.spec import DEFAULTS, EvalConfig
from engine.techniques import estimate_unet_calls, get_technique, technique_names
from inpaint_tui.store import RunInfo
from inpaint_tui.tui.base import LiveScreen
from inpaint_tui.tui.forms import (
    LABEL_WIDTH,
    Field,
    ParamField,
    TechniqueForm,
    choice_parser,
    float_parser,
    format_value,
    int_parser,
)

COMMAND = "inpaint-tui (new run form)"
ANIMATIONS = ("none", *ANIMATION_FORMATS)


@dataclass
class Plan:
    """A validated submission: the grid points and everything they share."""

    points: list  # of inpaint_tui.jobs.sweeps.SweepPoint
    model: str
    sample_set: str
    negative_prompt: str
    evaluation: EvalConfig
    options: dict[str, Any]
    spec: dict[str, Any]
    sample_count: int
    unet_calls: int
    exact: bool

    def summary(self) -> str:
        runs = len(self.points)
        calls = f"{self.unet_calls:,} UNet calls"
        calls = f"about {calls}" if self.exact else f"≈ {calls} (estimated)"
        sweep = "; a sweep (identical finished or queued runs are reused)" if runs > 1 else ""
        return (f"{runs} run{'s' if runs != 1 else ''} × {self.sample_count} sample"
                f"{'s' if self.sample_count != 1 else ''}, {calls}{sweep}")


class NewRunScreen(LiveScreen):
    live = False
    # Below 100 columns the technique list narrows and every field puts its label above its
    # input, so inputs keep the form's whole width (at 80 columns: 50 cells).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    DEFAULT_CSS = f"""
    NewRunScreen #body {{ height: 1fr; }}
    NewRunScreen #techniques-pane {{ width: 30; }}
    NewRunScreen.-narrow #techniques-pane {{ width: 22; }}
    NewRunScreen #techniques {{ height: auto; max-height: 12; }}
    NewRunScreen #technique-info {{ height: 1fr; padding: 1 1; color: $text-muted; }}
    NewRunScreen #technique-forms {{ height: auto; }}
    NewRunScreen #form {{ width: 1fr; }}
    NewRunScreen .section-title {{ width: 1fr; }}
    NewRunScreen .select-row {{ height: auto; }}
    NewRunScreen .select-row Label {{ width: {LABEL_WIDTH}; padding-left: 1; }}
    NewRunScreen .select-row Select {{ width: 1fr; }}
    NewRunScreen .select-row .field-range {{ width: auto; color: $text-muted; padding: 0 1; }}
    NewRunScreen.-narrow .field-row, NewRunScreen.-narrow .select-row {{ layout: vertical; }}
    NewRunScreen.-narrow .field-label, NewRunScreen.-narrow .select-row Label {{ width: 1fr; }}
    NewRunScreen.-narrow .field-row Input, NewRunScreen.-narrow .select-row Select {{ margin-left: 1; }}
    NewRunScreen.-narrow .field-hint, NewRunScreen.-narrow .field-error {{ padding-left: 1; }}
    NewRunScreen.-narrow .select-row .field-range {{ padding-left: 1; }}
    NewRunScreen #submit-row {{ height: 3; }}
    NewRunScreen #summary {{ width: 1fr; padding: 1 1 0 1; }}
    NewRunScreen #summary.-invalid {{ color: $error; }}
    NewRunScreen #submit {{ margin-right: 1; }}
    """
    BINDINGS = [
        Binding("ctrl+s", "submit", "Submit", id="new_run.submit", priority=True),
        Binding("ctrl+r", "reset", "Reset form", id="new_run.reset"),
        Binding("escape", "leave_field", "Leave field", id="new_run.leave_field", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.set_counts: dict[str, int] = {}
        self._pending_prefill: RunInfo | None = None
        self._wanted_set: str | None = None
        self._set_names: list[str] = []
        self._model_names: list[str] = list(PRESETS)
        self._initial_params: dict[str, dict[str, Any]] = {}  # prefilled values of forms not made yet
        self._forms: dict[str, TechniqueForm] = {}
        self._fields: dict[str, Field] = {}
        self.plan: Plan | None = None
        self._summary_text = self._count_text = ""
        self.error: str | None = None

    # --- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        names = technique_names()
        yield Header()
        with Horizontal(id="body"):
            with Vertical(id="techniques-pane"):
                yield Label("Techniques (space toggles)", classes="section-title")
                yield SelectionList[str](*[(name, name) for name in names], id="techniques")
                yield Static("", id="technique-info")
            with VerticalScroll(id="form"):
                yield Label("Run settings (a comma list in a field makes a sweep)", classes="section-title")
                with Horizontal(classes="select-row"):
                    yield Label("model")
                    yield Select(_model_options(self._model_names), value=DEFAULTS.model, allow_blank=False,
                                 id="model", compact=True,
                                 tooltip="\n".join(f"{p.name}: {p.description}" for p in PRESETS.values()))
                    yield Label("preset", classes="field-range")
                with Horizontal(classes="select-row"):
                    yield Label("sample set")
                    yield Select([], prompt="(no sample sets: import one)", id="sample_set", compact=True)
                    yield Label("", id="set-count", classes="field-range")
                yield Field("seeds", str(DEFAULTS.seed), input_id="seeds", parse=int_parser("seeds"), range_text="integers",
                            hint="run seeds; each sample's seed derives from it and the sample")
                yield Field("steps", str(DEFAULTS.steps), input_id="steps", parse=int_parser("steps", minimum=1),
                            range_text="[1, inf)", hint="denoising steps")
                yield Field("guidance", "", input_id="guidance", parse=float_parser("guidance", minimum=0.0),
                            range_text="[0, inf)", valid_empty=True,
                            hint=f"empty: the model's ({DEFAULTS.guidance:g}; FLUX {DEFAULTS.flux_fill_guidance:g} "
                                 f"vanilla, {DEFAULTS.flux_guidance:g} others)")
                yield Field("negative prompt", "", input_id="negative_prompt", hint="negative prompt for CFG")
                yield Field("metrics", ",".join(DEFAULT_GROUPS), input_id="metrics",
                            parse=choice_parser("metrics", GROUPS), range_text="groups", valid_empty=True,
                            suggestions=GROUPS,
                            hint=f"metric groups computed for each run: {', '.join(GROUPS)} (comma-separated; "
                                 f"empty: none)")
                yield Field("preview every", "0", input_id="preview_every", lists=False,
                            parse=int_parser("preview every", minimum=0), range_text="steps, 0 = off",
                            hint="decode the predicted clean image every K steps for the live preview")
                yield Field("batch size", "1", input_id="batch_size", lists=False, parse=parse_batch_size,
                            range_text="N or auto",
                            hint="samples sharing each model call (auto: from GPU memory)")
                with Horizontal(classes="select-row"):
                    yield Label("animation")
                    yield Select([(name, name) for name in ANIMATIONS], value="none", allow_blank=False,
                                 id="animation", compact=True)
                    yield Label("per sample", classes="field-range")
                yield Vertical(id="technique-forms")  # a form per selected technique, made on first selection
        with Horizontal(id="submit-row"):
            yield Static("pick one or more techniques", id="summary", markup=False)
            yield Button("Submit (ctrl+s)", id="submit", variant="primary")
        yield Footer()

    def on_mount(self) -> None:  # LiveScreen.on_mount (the first load) runs after this one
        self.query_one("#techniques", SelectionList).focus()
        if self._pending_prefill is not None:
            run, self._pending_prefill = self._pending_prefill, None
            self.prefill(run)
        self.update_summary()

    # --- data -----------------------------------------------------------------------------

    def fetch(self) -> dict[str, int]:
        return {info.name: info.sample_count for info in self.app.store.sample_sets()}

    def show(self, counts: dict[str, int]) -> None:
        self.set_counts = counts
        current = self._wanted_set if self._wanted_set is not None else self.set_name()
        names = list(counts)
        if current is not None and current not in names:
            names.append(current)  # a prefilled set that is gone: submitting names it in the error
        self._set_options(names, current if current in names else ("demo" if "demo" in names else None))
        self._wanted_set = None
        self.update_summary()

    def _set_options(self, names: list[str], value: str | None) -> None:
        select = self.query_one("#sample_set", Select)
        if names != self._set_names:
            self._set_names = list(names)
            select.set_options([(name, name) for name in names])
        if value is None and names and self.set_name() is None:
            value = names[0]
        if value is not None:
            select.value = value

    # --- the form -------------------------------------------------------------------------

    def selected_techniques(self) -> list[str]:
        chosen = set(self.query_one("#techniques", SelectionList).selected)
        return [name for name in technique_names() if name in chosen]

    def form(self, technique: str) -> TechniqueForm | None:
        """The technique's form, once it was first selected (its fields appear when mounted)."""
        return self._forms.get(technique)

    def technique_fields(self, technique: str) -> list:
        form = self.form(technique)
        return form.fields() if form is not None else []

    def field(self, name: str) -> Field:
        """A common field by its input's id (seeds, steps, guidance, negative_prompt, metrics,
        preview_every)."""
        if name not in self._fields:
            self._fields = {f.input_id: f for f in self.query(Field) if not isinstance(f, ParamField)}
        return self._fields[name]

    def set_name(self) -> str | None:
        return _value(self.query_one("#sample_set", Select))

    @on(SelectionList.SelectionHighlighted, "#techniques")
    def technique_highlighted(self, event: SelectionList.SelectionHighlighted) -> None:
        technique = get_technique(event.selection.value)
        info = f"[b]{technique.name}[/b] ({technique.unet} UNet)\n{technique.summary}"
        if technique.reference:
            info += f"\n\n[i]{technique.reference}[/i]"
        self.query_one("#technique-info", Static).update(info)

    @on(SelectionList.SelectedChanged, "#techniques")
    async def techniques_changed(self) -> None:
        """Show the forms of the selected techniques (in registry order), hide the others
        (they keep their values)."""
        chosen = self.selected_techniques()
        container = self.query_one("#technique-forms", Vertical)
        names = technique_names()
        for name in chosen:
            if self.form(name) is None:
                later = [form for other, form in self._forms.items() if names.index(other) > names.index(name)]
                form = TechniqueForm(get_technique(name), self._initial_params.pop(name, None))
                self._forms[name] = form
                await container.mount(form, before=min(later, key=lambda f: names.index(f.technique.name))
                                      if later else None)
        for name, form in self._forms.items():
            form.display = name in chosen
        self.update_summary()

    @on(Select.Changed)
    def select_changed(self) -> None:
        self.update_summary()

    def on_input_changed(self) -> None:  # after the field's own check (the message bubbles up)
        self.update_summary()

    def update_summary(self) -> None:
        """The live line under the form: runs × samples and the UNet calls, or the first problem."""
        summary = self.query_one("#summary", Static)
        try:
            self.plan, self.error = self.build_plan(), None
            text = self.plan.summary()
        except ParamError as error:
            self.plan, self.error = None, str(error)
            text = self.error
        if text != self._summary_text:  # widgets change only when the text does (this runs per keystroke)
            self._summary_text = text
            summary.update(text)
            summary.set_class(self.error is not None, "-invalid")
        count = self.set_counts.get(self.set_name())
        count_text = "" if count is None else f"{count} samples"
        if count_text != self._count_text:
            self._count_text = count_text
            self.query_one("#set-count", Label).update(count_text)

    def build_plan(self) -> Plan:
        """Validate the whole form into a plan; raises ParamError with the first problem."""
        from inpaint_tui.jobs.runs import validate_options
        from inpaint_tui.jobs.sweeps import expand_grid

        fields = {name: self.field(name) for name in ("seeds", "steps", "guidance", "negative_prompt", "metrics",
                                                       "preview_every", "batch_size")}
        techniques = self.selected_techniques()
        checked = [f for f in fields.values()] + [f for t in techniques for f in self.technique_fields(t)]
        messages = [message for message in (f.check() for f in checked) if message]
        if not techniques:
            raise ParamError("pick one or more techniques")
        if messages:
            raise ParamError(messages[0])
        sample_set = self.set_name()
        if sample_set is None:
            raise ParamError("pick a sample set (import one first: inpaint-tui samples import demo)")
        model = _value(self.query_one("#model", Select)) or DEFAULTS.model
        seeds = [int(v) for v in fields["seeds"].values()]
        steps = [int(v) for v in fields["steps"].values()]
        guidance = [float(v) for v in fields["guidance"].values() if v] or [None]  # None: the model's default
        points, grids = [], {}
        for technique in techniques:
            form = self.form(technique)
            grid = form.grid() if form is not None else {}
            grids[technique] = grid
            expanded = expand_grid([technique], grid, seeds=seeds, steps=steps, guidance=guidance)
            if len(techniques) > 1:
                expanded = [dataclasses.replace(p, swept={"technique": technique, **p.swept}) for p in expanded]
            points.extend(expanded)
        evaluation = EvalConfig.for_model(model, metrics=",".join(v for v in fields["metrics"].values() if v))
        for point in points:  # what queueing would refuse (a technique the model's family lacks, ...), said now
            point.spec(model=model, negative_prompt=fields["negative_prompt"].value, evaluation=evaluation)
        animation = _value(self.query_one("#animation", Select)) or "none"
        options = validate_options({"preview_every": int(fields["preview_every"].value.strip()) or None,
                                    "animation": None if animation == "none" else animation,
                                    "batch_size": fields["batch_size"].value.strip()})
        samples = self.set_counts.get(sample_set, 0)
        calls, exact = 0, True
        for point in points:
            per_image, point_exact = estimate_unet_calls(point.technique, point.params, point.steps)  # the technique's own
            calls += per_image * samples
            exact = exact and point_exact
        flat = grids[techniques[0]] if len(techniques) == 1 else {
            f"{t}.{name}": values for t, grid in grids.items() for name, values in grid.items()}
        spec = dict(techniques=techniques, grid=flat, seeds=seeds, steps=steps, guidance=guidance, model=model,
                    sample_set=sample_set)
        return Plan(points=points, model=model, sample_set=sample_set,
                    negative_prompt=fields["negative_prompt"].value, evaluation=evaluation, options=options,
                    spec=spec, sample_count=samples, unet_calls=calls, exact=exact)

    # --- submit ---------------------------------------------------------------------------

    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        self.update_summary()
        if self.plan is None:
            self.notify(self.error or "the form is incomplete", title="cannot submit", severity="error")
            return
        self.query_one("#submit", Button).disabled = True
        self._submit(self.plan)

    @work(thread=True, exclusive=True, group="submit", exit_on_error=False)
    def _submit(self, plan: Plan) -> None:
        from inpaint_tui.jobs.launch import ensure_worker, require_model
        from inpaint_tui.jobs.runs import queue_run
        from inpaint_tui.jobs.sweeps import queue_sweep
        from inpaint_tui.store import StoreError

        store = self.app.store
        try:
            require_model(store, plan.model, detach=True)  # before anything is queued, as the CLI does
            if len(plan.points) == 1:
                spec = plan.points[0].spec(model=plan.model, negative_prompt=plan.negative_prompt,
                                           evaluation=plan.evaluation)
                run_id = queue_run(store, spec, sample_set=plan.sample_set, options=plan.options, command=COMMAND)
                new, text = [run_id], f"queued run {run_id}"
            else:
                queued = queue_sweep(store, plan.points, spec=plan.spec, model=plan.model, sample_set=plan.sample_set,
                                     negative_prompt=plan.negative_prompt, evaluation=plan.evaluation,
                                     options=plan.options, command=COMMAND)
                new = queued.new
                text = f"sweep {queued.sweep_id}: queued {_ids('run', new) if new else 'no new runs'}"
                if queued.reused:
                    reused = sorted(queued.reused)
                    text += (f"; reused {len(reused)} identical run{'s' if len(reused) > 1 else ''} already "
                             f"finished, running or queued ({', '.join(map(str, reused))}), not computed again")
            if new:
                worker_id, started = ensure_worker(store)
                text += f"; worker {worker_id} " + ("started" if started else "serves them")
        except (ParamError, StoreError) as error:
            self.app.call_from_thread(self._submit_failed, str(error))
            return
        except Exception as error:  # e.g. ModelUnavailable: shown, and the form stays as it is
            self.app.call_from_thread(self._submit_failed, f"{type(error).__name__}: {error}")
            return
        self.app.call_from_thread(self._submitted, text)

    def _submit_failed(self, message: str) -> None:
        self.query_one("#submit", Button).disabled = False
        self.notify(message, title="not queued", severity="error", timeout=8)

    def _submitted(self, text: str) -> None:
        self.query_one("#submit", Button).disabled = False
        self.app.notify(text, title="queued", timeout=8)
        self.app.switch_mode("dashboard")

    def action_leave_field(self) -> None:
        """Back to the technique list, so the app's one-key shortcuts work again."""
        self.query_one("#techniques", SelectionList).focus()

    # --- filling --------------------------------------------------------------------------

    def action_reset(self) -> None:
        for name, value in (("seeds", str(DEFAULTS.seed)), ("steps", str(DEFAULTS.steps)),
                            ("guidance", ""), ("negative_prompt", ""),
                            ("metrics", ",".join(DEFAULT_GROUPS)), ("preview_every", "0")):
            self.field(name).value = value
        self.query_one("#model", Select).value = DEFAULTS.model
        self.query_one("#animation", Select).value = "none"
        for form in self._forms.values():
            form.set_params({})
        self.query_one("#techniques", SelectionList).deselect_all()

    def prefill(self, run: RunInfo) -> None:
        """Fill the form from an existing run (clone with edits): its technique and
        parameters, model, sample set, seed, steps, guidance, metrics and options."""
        if not self.query("#techniques"):
            self._pending_prefill = run  # applied once the form exists
            return
        techniques = self.query_one("#techniques", SelectionList)
        techniques.deselect_all()
        if run.technique in technique_names():
            form = self.form(run.technique)
            if form is not None:
                form.set_params(run.params)
            else:  # made when the selection below is handled
                self._initial_params[run.technique] = dict(run.params)
            techniques.select(run.technique)
        else:
            self.notify(f"run {run.id}'s technique {run.technique!r} is no longer registered", severity="warning")
        model = self.query_one("#model", Select)
        if run.model not in self._model_names:  # a local pipeline folder
            self._model_names.append(run.model)
            model.set_options(_model_options(self._model_names))
        model.value = run.model
        names = self._set_names if run.sample_set in self._set_names else [*self._set_names, run.sample_set]
        self._set_options(names, run.sample_set)
        self._wanted_set = run.sample_set  # survives a load that finishes after this
        self.field("seeds").value = str(run.seed)
        self.field("steps").value = str(run.steps)
        self.field("guidance").value = format_value(float(run.guidance))
        self.field("negative_prompt").value = run.negative_prompt
        groups = run.eval_config.get("groups", list(DEFAULT_GROUPS))
        self.field("metrics").value = ",".join(groups)
        self.field("preview_every").value = str(run.options.get("preview_every") or 0)
        self.field("batch_size").value = str(run.options.get("batch_size") or 1)
        self.query_one("#animation", Select).value = run.options.get("animation") or "none"
        self.update_summary()


def _value(select: Select) -> str | None:
    """A Select's value, None when nothing is selected."""
    value = select.value
    return value if isinstance(value, str) else None


def _ids(what: str, ids: list[int]) -> str:
    """"runs 4–7" for consecutive ids, "runs 4, 6" otherwise, "run 4" for one."""
    if len(ids) == 1:
        return f"{what} {ids[0]}"
    if ids == list(range(ids[0], ids[0] + len(ids))):
        return f"{what}s {ids[0]}–{ids[-1]}"
    return f"{what}s {', '.join(map(str, ids))}"


def _model_options(names: list[str]) -> list[tuple[str, str]]:
    """The model select's (label, value) pairs: a random-weight preset says so in its label,
    since its images are noise."""
    return [(f"{name} (random weights)" if name in PRESETS and PRESETS[name].random_weights else name, name)
            for name in names]
