"""The bundled `demo` sample set (real photos from scikit-image, hand-placed masks)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.demo import DEMO_SET_NAME, demo_samples
from engine.samples import Sample


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return demo_samples()


def test_set_name() -> None:
    assert DEMO_SET_NAME == "demo"


def test_six_or_more_samples_with_unique_ids(samples: list[Sample]) -> None:
    assert len(samples) >= 6
    assert all(isinstance(sample, Sample) for sample in samples)
    ids = [sample.id for sample in samples]
    assert len(set(ids)) == len(ids)
    assert all(sample_id and sample_id == sample_id.strip() for sample_id in ids)


def test_sizes(samples: list[Sample]) -> None:
    for sample in samples:
        width, height = sample.size
        assert width % 8 == 0 and height % 8 == 0, sample.id
        assert max(width, height) <= 512, sample.id
        assert sample.image.mode == "RGB", sample.id


def test_masks_binary_with_sensible_coverage(samples: list[Sample]) -> None:
    for sample in samples:
        width, height = sample.size
        assert sample.mask.shape == (height, width), sample.id
        assert sample.mask.dtype == np.float32, sample.id
        assert set(np.unique(sample.mask).tolist()) <= {0.0, 1.0}, sample.id
        coverage = float(sample.mask.mean())
        assert 0.02 <= coverage <= 0.40, (sample.id, coverage)


def test_reference_is_the_original_photo(samples: list[Sample]) -> None:
    for sample in samples:
        assert sample.reference is not None, sample.id
        assert sample.reference.size == sample.image.size, sample.id
        assert np.array_equal(np.asarray(sample.reference), np.asarray(sample.image)), sample.id


def test_deterministic(samples: list[Sample]) -> None:
    again = demo_samples()
    assert [s.id for s in again] == [s.id for s in samples]
    for first, second in zip(samples, again):
        assert np.array_equal(np.asarray(first.image), np.asarray(second.image)), first.id
        assert np.array_equal(first.mask, second.mask), first.id
        assert first.prompt == second.prompt, first.id
        assert first.content_hash == second.content_hash, first.id


def test_prompts_non_empty_and_distinct(samples: list[Sample]) -> None:
    prompts = [sample.prompt for sample in samples]
    assert all(prompt.strip() for prompt in prompts)
    assert len(set(prompts)) == len(prompts)


def test_metadata(samples: list[Sample]) -> None:
    for sample in samples:
        assert sample.metadata["source"] == "scikit-image", sample.id
        for key in ("loader", "license", "object"):
            assert isinstance(sample.metadata.get(key), str) and sample.metadata[key], (sample.id, key)
