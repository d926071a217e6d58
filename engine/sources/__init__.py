"""Where samples come from: the bundled demo, folders, Hugging Face datasets (torch-free).

Every source produces an `ImportPlan`: the samples it can build and, by name, the ones it
cannot with the reason, so an import reports problems instead of stopping at the first or
skipping silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.samples import Sample


@dataclass
class ImportPlan:
    samples: list[Sample] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    notes: list[str] = field(default_factory=list)

    def problem(self, name: str, reason: str) -> None:
        self.problems.append((name, reason))
