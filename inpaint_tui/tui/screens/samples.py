"""Samples: the sample sets, the samples of the selected one (filtered by name or prompt),
a preview of the highlighted sample (image with its mask tinted, the mask, the reference),
and building a new set from marked samples."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from inpaint_tui.store import ImportReport, SampleInfo, SampleSetInfo, StoreError
from inpaint_tui.tui.base import ImageStrip, LiveScreen, Table, selected_key, sync_table

ALL = "all"  # the sets table's key of "all samples"; a set's key is "set:" + its name
MARK = "●"
THUMBNAIL = 384  # previews are scaled down to this many pixels before they go to the terminal


@dataclass
class SamplesData:
    sets: list[SampleSetInfo]
    total: int  # samples in any set
    set_key: str
    samples: list[SampleInfo] | None  # None: unchanged since the last load shown
    memberships: dict[int, list[str]] = field(default_factory=dict)
    signature: tuple = ()
    version: int = 0
    requested: str = ALL  # the set shown when the load started (set_key differs if the set is gone)


class SamplesScreen(LiveScreen):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    DEFAULT_CSS = """
    SamplesScreen #sets-pane { width: 34; }
    SamplesScreen.-narrow #sets-pane { width: 24; }
    SamplesScreen #samples-pane { width: 1fr; }
    SamplesScreen #sets { height: 1fr; }
    SamplesScreen #filter-row { height: 3; }
    SamplesScreen #filter { width: 1fr; }
    SamplesScreen #marked { width: auto; padding: 1 1 0 1; color: $text-muted; }
    SamplesScreen #samples { height: 1fr; min-height: 6; }
    SamplesScreen #prompt { height: auto; max-height: 3; padding: 0 1; }
    SamplesScreen #preview { height: 1fr; min-height: 8; }
    """
    BINDINGS = [
        Binding("slash", "focus_filter", "Filter", id="samples.filter", tooltip="by name or prompt"),
        Binding("space", "toggle_mark", "Mark", id="samples.mark"),
        Binding("a", "mark_all", "Mark all", id="samples.mark_all", tooltip="every sample shown"),
        Binding("u", "unmark_all", "Unmark all", id="samples.unmark_all", show=False),
        Binding("b", "build_set", "Build set", id="samples.build_set", tooltip="a sample set of the marked samples"),
        Binding("escape", "focus_table", "Back to the table", id="samples.table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.set_key = ALL
        self.marked: dict[int, None] = {}  # sample ids in marking order (a built set keeps it)
        self.samples: list[SampleInfo] = []
        self.memberships: dict[int, list[str]] = {}
        # A full load (the samples, not only the sets) happens when the sets or their counts
        # changed, or when asked for (`_version` bumped) since the last full load shown.
        self._version = 1
        self._shown: tuple[tuple, int] | None = None
        self._wanted: int | None = None  # select_sample's target, until it is on screen
        self._previewed: int | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="sets-pane"):
                yield Label("Sample sets", classes="section-title")
                yield Table(id="sets", cursor_type="row", zebra_stripes=True)
            with Vertical(id="samples-pane"):
                with Horizontal(id="filter-row"):
                    yield Input(placeholder="filter by name or prompt (/)", id="filter", classes="filter")
                    yield Label("0 marked", id="marked")
                yield Table(id="samples", cursor_type="row", zebra_stripes=True)
                yield Static("", id="prompt", markup=False)
                yield ImageStrip(id="preview")
        yield Footer()

    def on_mount(self) -> None:  # LiveScreen.on_mount runs after this one (Textual calls both)
        self.query_one("#sets", DataTable).add_columns("set", "samples")
        self.query_one("#samples", DataTable).add_columns("", "id", "name", "prompt", "size", "sets")
        self.query_one("#samples", DataTable).focus()

    # --- data -----------------------------------------------------------------------------

    def fetch(self) -> SamplesData:
        store = self.app.store
        set_key, version = self.set_key, self._version
        sets = store.sample_sets()
        signature = (tuple((s.name, s.sample_count) for s in sets), set_key)
        memberships: dict[int, list[str]] = {}
        for info in sets:
            for sample_id in store.set_sample_ids(info.name):
                memberships.setdefault(sample_id, []).append(info.name)
        if (signature, version) == self._shown:
            return SamplesData(sets, len(memberships), set_key, None, memberships, requested=set_key)
        requested = set_key
        if set_key != ALL and set_key.removeprefix("set:") not in {s.name for s in sets}:
            set_key = ALL  # the set is gone
        samples = store.samples(None if set_key == ALL else set_key.removeprefix("set:"))
        return SamplesData(sets, len(memberships), set_key, samples, memberships, signature, version, requested)

    def show(self, data: SamplesData) -> None:
        sets_table = self.query_one("#sets", DataTable)
        rows = [(ALL, ("all samples", str(data.total)))]
        rows += [(f"set:{s.name}", (s.name, str(s.sample_count))) for s in data.sets]
        sync_table(sets_table, rows)
        self.memberships = data.memberships
        if data.requested != self.set_key:  # loaded for a set the user has left since: the next load follows
            return
        keys = [key for key, _ in rows]
        if data.set_key in keys and selected_key(sets_table) != data.set_key:
            sets_table.move_cursor(row=keys.index(data.set_key), animate=False)
        if data.samples is not None:
            self.set_key = data.set_key
            self.samples = data.samples
            self._shown = (data.signature, data.version)
        self._render_samples()

    def _visible(self) -> list[SampleInfo]:
        needle = self.query_one("#filter", Input).value.strip().lower()
        return [s for s in self.samples if not needle or needle in s.name.lower() or needle in s.prompt.lower()]

    def _render_samples(self) -> None:
        table = self.query_one("#samples", DataTable)
        visible = self._visible()
        rows = []
        for sample in visible:
            prompt = sample.prompt if len(sample.prompt) <= 60 else sample.prompt[:59] + "…"
            sets = ", ".join(self.memberships.get(sample.id, []))
            rows.append((sample.id, (MARK if sample.id in self.marked else "", str(sample.id), sample.name, prompt,
                                     f"{sample.width}×{sample.height}", sets)))
        sync_table(table, rows)
        self.query_one("#marked", Label).update(f"{len(self.marked)} marked")
        if self._wanted is not None:
            ids = [s.id for s in visible]
            if self._wanted in ids:
                table.move_cursor(row=ids.index(self._wanted), animate=False)
                self._wanted = None
        self._preview_highlighted()

    # --- events ---------------------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#sets")
    def set_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value
        # A stale event (the cursor moved on since) or the set already shown: nothing to do.
        if key is None or key != selected_key(event.data_table) or key == self.set_key:
            return
        self.set_key = key
        self._version += 1
        self.reload()

    @on(DataTable.RowHighlighted, "#samples")
    def sample_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._preview_highlighted()

    @on(Input.Changed, "#filter")
    def filter_changed(self) -> None:
        self._render_samples()

    @on(Input.Submitted, "#filter")
    def filter_submitted(self) -> None:
        self.query_one("#samples", DataTable).focus()

    def highlighted_sample(self) -> SampleInfo | None:
        key = selected_key(self.query_one("#samples", DataTable))
        return next((s for s in self.samples if str(s.id) == key), None)

    def _preview_highlighted(self) -> None:
        sample = self.highlighted_sample()
        if sample is None:
            if self._previewed is not None:
                self._previewed = None
                self.query_one("#prompt", Static).update("")
                self.query_one("#preview", ImageStrip).set_images([])
            return
        if sample.id == self._previewed:
            return
        self._previewed = sample.id
        self.query_one("#prompt", Static).update(f"{sample.name}: {sample.prompt}")
        self._load_preview(sample)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def _load_preview(self, sample: SampleInfo) -> None:
        from inpaint_tui.tui.images import load, with_mask

        def small(image):
            if image is not None:
                image.thumbnail((THUMBNAIL, THUMBNAIL))
            return image

        image = load(sample.image_path)
        items = [("image + mask", small(None if image is None else with_mask(image, sample.mask_path))),
                 ("mask", small(load(sample.mask_path)))]
        if sample.reference_path is not None:
            items.append(("reference", small(load(sample.reference_path))))
        self.app.call_from_thread(self._show_preview, sample.id, items)

    def _show_preview(self, sample_id: int, items) -> None:
        if self.is_attached and sample_id == self._previewed:
            self.query_one("#preview", ImageStrip).set_images(items)

    # --- actions --------------------------------------------------------------------------

    def action_toggle_mark(self) -> None:
        sample = self.highlighted_sample()
        if sample is None:
            return
        if sample.id in self.marked:
            del self.marked[sample.id]
        else:
            self.marked[sample.id] = None
        self._render_samples()

    def action_mark_all(self) -> None:
        for sample in self._visible():
            self.marked.setdefault(sample.id, None)
        self._render_samples()

    def action_unmark_all(self) -> None:
        self.marked.clear()
        self._render_samples()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one("#samples", DataTable).focus()

    def action_build_set(self) -> None:
        if not self.marked:
            self.notify("mark samples with space first (a marks every shown sample)", severity="warning")
            return
        from inpaint_tui.tui.screens.dialogs import TextScreen

        ids = list(self.marked)
        prompt = f"Set name for the {len(ids)} marked sample(s) (an existing set: appended)"

        def built(name: str | None) -> None:
            if name is not None:
                self._build_set(name, ids)

        self.app.push_screen(TextScreen(prompt, placeholder="set name"), built)

    @work(thread=True, exclusive=True, group="build", exit_on_error=False)
    def _build_set(self, name: str, sample_ids: list[int]) -> None:
        try:
            report = self.app.store.create_sample_set(name, sample_ids)
        except StoreError as error:
            self.app.call_from_thread(self.notify, str(error), title="sample set", severity="error")
            return
        self.app.call_from_thread(self._set_built, report)

    def _set_built(self, report: ImportReport) -> None:
        extra = f", {report.already_present} already in it" if report.already_present else ""
        self.notify(f"sample set {report.set_name!r}: {report.added} sample(s) added{extra}, "
                    f"{report.total_in_set} in all", title="sample set")
        self.marked.clear()
        self.set_key = f"set:{report.set_name}"
        self._version += 1
        self.reload()

    def select_sample(self, sample_id: int) -> None:
        """Put the cursor on a sample: in the set shown if it is there (and not filtered
        out), otherwise under "all samples" with the filter cleared."""
        self._wanted = sample_id
        if not self.query("#filter"):
            self.set_key = ALL
            self._version += 1  # applied by the first load
            return
        visible = [s.id for s in self._visible()]
        if sample_id in visible:
            self._render_samples()
            return
        self.query_one("#filter", Input).value = ""
        if sample_id not in [s.id for s in self.samples]:
            self.set_key = ALL
            self._version += 1
            self.reload()
        self.query_one("#samples", DataTable).focus()
