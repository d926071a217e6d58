"""Per-sample seeds (torch-free, so the store can record them when a run is queued)."""

from __future__ import annotations

import hashlib


def sample_seed(run_seed: int, sample_id: str) -> int:
    """A 63-bit seed from the run seed and the sample's id, stable across machines, runs and
    sample order: resuming or reordering a run gives each sample the same noise."""
    digest = hashlib.sha256(f"{run_seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
