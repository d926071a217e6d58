"""Between engine samples and stored samples, and importing sources (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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


@dataclass
class ImportOutcome:
    set_name: str
    source: str
    plan: ImportPlan
    report: ImportReport | None = None  # None for a dry run
    problems: list[tuple[str, str]] = field(default_factory=list)
    merged: list[tuple[str, str]] = field(default_factory=list)  # (name, name of the same content kept)
    present: dict[str, str] = field(default_factory=dict)  # planned name -> stored name, content already stored

    @property
    def new_count(self) -> int:
        """Samples the import adds (or would add): the plan less those already stored."""
        return len(self.plan.samples) - len(self.present)


def plan_source(source: str, options: ImportOptions = ImportOptions()) -> tuple[ImportPlan, str, str]:
    """(plan, default set name, source label) for `demo`, `hf:OWNER/NAME` or a folder."""
    if source == "demo":
        from engine.demo import DEMO_SET_NAME, demo_samples

        return ImportPlan(samples=demo_samples()), DEMO_SET_NAME, "demo"
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


def import_source(
    store: Store,
    source: str,
    options: ImportOptions | None = None,
    *,
    dry_run: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportOutcome:
    """Plan a source and, unless `dry_run`, import what it can in one transaction."""
    options = options or ImportOptions()
    plan, default_set, label = plan_source(source, options)
    set_name = options.set_name or default_set
    _note_vanishing_masks(plan)
    merged = _merge_same_content(plan)
    outcome = ImportOutcome(set_name=set_name, source=label, plan=plan, problems=list(plan.problems), merged=merged)
    if not plan.samples:
        return outcome
    names = [sample.id for sample in plan.samples]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise StoreError(f"{label}: duplicate sample names {', '.join(duplicates)}")
    # Asked before importing too, so that a dry run counts what would really be new.
    stored = store.present_keys([sample.content_hash for sample in plan.samples])
    outcome.present = {sample.id: stored[sample.content_hash] for sample in plan.samples
                       if sample.content_hash in stored}
    if dry_run:
        return outcome
    # Encoded one sample at a time as the store writes its files: the PNG bytes of every
    # sample at once doubled an import's memory.
    items = (to_new_sample(sample, label) for sample in plan.samples)
    outcome.report = store.import_samples(set_name, items, on_progress=on_progress, total=len(plan.samples))
    return outcome


def _merge_same_content(plan: ImportPlan) -> list[tuple[str, str]]:
    """Keep the first of samples with the same content key (pixels, mask, prompt, reference:
    e.g. one mask saved in two encodings) and say so: the store would merge them anyway, and
    a name must not vanish without a word. Returns (merged name, kept name) pairs."""
    kept: dict[str, str] = {}
    unique, merged = [], []
    for sample in plan.samples:
        first = kept.get(sample.content_hash)
        if first is None:
            kept[sample.content_hash] = sample.id
            unique.append(sample)
        else:
            merged.append((sample.id, first))
            plan.notes.append(f"{sample.id}: same content as {first} (merged)")
    plan.samples[:] = unique
    return merged


def _note_vanishing_masks(plan: ImportPlan) -> None:
    """Name, in a note, every sample whose mask vanishes at some preset's `fit` working size:
    its `fit` runs on those models fail (by the sample's name), while `-p resize=crop` or a
    model of higher resolution can use it, so it is imported, not refused."""
    from engine.models import PRESETS
    from engine.samples import SampleError, check_mask_survives

    for sample in plan.samples:
        lost = []
        for preset in sorted(PRESETS.values(), key=lambda p: p.resolution):
            try:
                check_mask_survives(sample, preset.resolution)
            except SampleError:
                lost.append(f"{preset.name} ({preset.resolution} px)")
        if lost:
            plan.notes.append(f"{sample.id}: its mask ({int(sample.binary_mask.sum())} px) vanishes at the resize=fit "
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
