"""Between engine samples and stored samples (torch-free)."""

from __future__ import annotations

from engine.samples import Sample, make_sample, png_bytes
from inpaint_tui.store import ImportReport, NewSample, SampleInfo, Store, StoreError


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


def import_source(store: Store, source: str, set_name: str | None = None) -> ImportReport:
    """Import a named source into a sample set (default: the source's own name)."""
    if source == "demo":
        from engine.demo import DEMO_SET_NAME, demo_samples

        samples = demo_samples()
        return store.import_samples(set_name or DEMO_SET_NAME, [to_new_sample(s, "demo") for s in samples])
    raise StoreError(f"unknown sample source {source!r}; available now: demo")


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
