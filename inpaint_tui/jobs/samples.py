"""Between engine samples and stored samples, and importing sources (torch-free)."""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from engine.samples import Sample, make_sample, png_bytes
from engine.sources import ImportPlan
from inpaint_tui.store import ImportReport, NewSample, SampleInfo, Store, StoreError

PIPE_REPO = "paint-by-inpaint/PIPE"


def to_new_sample(sample: Sample, source: str) -> NewSample:
    return NewSample(
        key=sample.content_hash,
        name=sample.id,
        prompt=sample.prompt,
        image_png=png_bytes(sample.image),
        mask_png=png_bytes(sample.mask_image()),
        reference_png=None if sample.reference is None else png_bytes(sample.reference),
        width=sample.size[0],
        height=sample.size[1],
        source=source,
        meta=sample.metadata,
    )


@dataclass(frozen=True)
class ImportOptions:
    """How to read a source; options that do not apply to a source are ignored by it."""

    set_name: str | None = None
    split: str = "test"
    limit: int | None = None
    prompt_column: str | None = None
    prompt_template: str | None = None
    image_column: str | None = None
    mask_column: str | None = None
    reference_column: str | None = None
    invert_masks: bool = False
    resize_mismatched: bool = False
    follow_links: bool = False  # folders: read files behind links that point outside the folder


@dataclass(frozen=True)
class Planned:
    """What a dry run lists of an importable sample (its pixels are not kept)."""

    name: str
    size: tuple[int, int]
    prompt: str


@dataclass
class ImportOutcome:
    set_name: str
    source: str
    plan: ImportPlan
    report: ImportReport | None = None  # None for a dry run
    importable: list[Planned] = field(default_factory=list)  # in source order, after merging
    problems: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    merged: list[tuple[str, str]] = field(default_factory=list)  # (name, name of the same content kept)
    present: dict[str, str] = field(default_factory=dict)  # planned name -> stored name, content already stored

    @property
    def new_count(self) -> int:
        """Samples the import adds (or would add): the importable less those already stored."""
        return len(self.importable) - len(self.present)


def plan_source(source: str, options: ImportOptions = ImportOptions()) -> tuple[ImportPlan, str, str]:
    """(plan, default set name, source label) for `demo`, `hf:OWNER/NAME` or a folder."""
    if source == "demo":
        from engine.demo import DEMO_SET_NAME, DEMO_SPECS, each_demo_sample

        return ImportPlan(each_demo_sample(), expected=len(DEMO_SPECS)), DEMO_SET_NAME, "demo"
    if source.startswith("hf:"):
        from engine.params import ParamError
        from engine.sources.hf import SourceUnavailable

        try:
            return _plan_hf(source[3:], options)
        except SourceUnavailable as error:
            raise StoreError(str(error)) from None
        except ValueError as error:  # bad column, template or option
            raise ParamError(f"{source}: {error}") from None
    path = Path(source).expanduser()
    if path.is_dir():
        from engine.sources.folder import plan_folder

        try:
            plan = plan_folder(path, invert_masks=options.invert_masks, follow_links=options.follow_links)
        except (ValueError, OSError) as error:  # nothing recognisable, unreadable folder
            raise StoreError(str(error)) from None
        return plan, path.resolve().name, f"folder:{path.resolve()}"
    raise StoreError(
        f"unknown sample source {source!r}: use demo, hf:OWNER/NAME (e.g. hf:{PIPE_REPO}) or an existing folder"
    )


def _plan_hf(repo: str, options: ImportOptions) -> tuple[ImportPlan, str, str]:
    mismatched = "resize" if options.resize_mismatched else "skip"
    if repo == PIPE_REPO:
        from engine.sources.hf import plan_pipe

        plan = plan_pipe(
            split=options.split, limit=options.limit, prompt_column=options.prompt_column or "Instruction_Class",
            prompt_template=options.prompt_template, mismatched=mismatched, invert_masks=options.invert_masks,
        )
    else:
        from engine.sources.hf import plan_hf

        missing = [flag for flag, value in (("--image-column", options.image_column),
                                            ("--mask-column", options.mask_column),
                                            ("--prompt-column", options.prompt_column)) if not value]
        if missing:
            raise ValueError(f"needs {', '.join(missing)}")
        plan = plan_hf(
            repo, split=options.split, image_column=options.image_column, mask_column=options.mask_column,
            prompt_column=options.prompt_column, reference_column=options.reference_column, limit=options.limit,
            prompt_template=options.prompt_template, mismatched=mismatched, invert_masks=options.invert_masks,
        )
    return plan, f"{repo.split('/')[-1]}-{options.split}", f"hf:{repo}"


PRESENT_CHUNK = 500  # content keys asked at once (below SQLite's bound-parameter limit)


def import_source(
    store: Store,
    source: str,
    options: ImportOptions | None = None,
    *,
    dry_run: bool = False,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> ImportOutcome:
    """Plan a source and, unless `dry_run`, import what it can in one transaction.

    Streams: each sample is built, checked and written before the next is read, so memory
    stays flat in the number of samples (the transaction holds rows, not pixels). Names that
    repeat refuse the whole import before it commits."""
    options = options or ImportOptions()
    plan, default_set, label = plan_source(source, options)
    outcome = ImportOutcome(set_name=options.set_name or default_set, source=label, plan=plan)
    samples = _checked(store, plan, outcome, label)
    first = next(samples, None)
    if first is not None:
        samples = itertools.chain([first], samples)
        if dry_run:
            collections.deque(samples, maxlen=0)
        else:
            # Encoded one sample at a time as the store writes its files.
            items = (to_new_sample(sample, label) for sample in samples)
            outcome.report = store.import_samples(outcome.set_name, items, on_progress=on_progress,
                                                  total=plan.expected)
    outcome.problems, outcome.notes = list(plan.problems), list(plan.notes)
    return outcome


def _checked(store: Store, plan: ImportPlan, outcome: ImportOutcome, label: str) -> Iterator[Sample]:
    """The plan's samples less repeated content (merged into the first, with a note), each
    noted where its mask vanishes at a preset's working size, recorded in `outcome`
    (importable, merged, present); raises StoreError after the last if a name repeats."""
    kept: dict[str, str] = {}  # content key -> first name
    names: set[str] = set()
    duplicates: set[str] = set()
    unasked: list[tuple[str, str]] = []  # (name, content key): not the samples, whose pixels must go

    def ask() -> None:
        stored = store.present_keys([key for _, key in unasked])
        outcome.present.update({name: stored[key] for name, key in unasked if key in stored})
        unasked.clear()

    for sample in plan.each():
        key = sample.content_hash
        if key in kept:
            outcome.merged.append((sample.id, kept[key]))
            plan.note(f"{sample.id}: same content as {kept[key]} (merged)")
            continue
        kept[key] = sample.id
        if sample.id in names:
            duplicates.add(sample.id)
        names.add(sample.id)
        _note_vanishing_mask(plan, sample)
        outcome.importable.append(Planned(sample.id, sample.size, sample.prompt))
        unasked.append((sample.id, key))
        if len(unasked) >= PRESENT_CHUNK:
            ask()
        yield sample
    if unasked:
        ask()
    if duplicates:
        raise StoreError(f"{label}: duplicate sample names {', '.join(sorted(duplicates))}")


def _note_vanishing_mask(plan: ImportPlan, sample: Sample) -> None:
    """Name, in a note, a sample whose mask vanishes at some preset's `fit` working size:
    its `fit` runs on those models fail (by the sample's name), while `-p resize=crop` or a
    model of higher resolution can use it, so it is imported, not refused."""
    from engine.models import PRESETS
    from engine.samples import SampleError, check_mask_survives

    lost = []
    for preset in sorted(PRESETS.values(), key=lambda p: p.resolution):
        try:
            check_mask_survives(sample, preset.resolution)
        except SampleError:
            lost.append(f"{preset.name} ({preset.resolution} px)")
    if lost:
        plan.note(f"{sample.id}: its mask ({int(sample.binary_mask.sum())} px) vanishes at the resize=fit "
                  f"working size of {', '.join(lost)}: runs there need -p resize=crop")


def ensure_demo(store: Store) -> None:
    from engine.demo import DEMO_SET_NAME

    if not any(info.name == DEMO_SET_NAME for info in store.sample_sets()):
        import_source(store, "demo")


def to_engine_sample(info: SampleInfo) -> Sample:
    """A stored sample as an engine Sample; its id is the content key, so per-sample seeds
    depend on what the sample is, not on its name or position."""
    return make_sample(
        id=info.key,
        image=info.image_path,
        mask=info.mask_path,
        prompt=info.prompt,
        reference=info.reference_path,
        metadata={"name": info.name, **info.meta},
    )
