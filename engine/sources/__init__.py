"""Where samples come from: the bundled demo, folders, Hugging Face datasets (torch-free).

Every source produces an `ImportPlan`: the samples it can build and, by name, the ones it
cannot with the reason, so an import reports problems instead of stopping at the first or
skipping silently.

A plan is lazy: a source hands it a generator that builds one sample at a time (decoding
its files) and records problems and notes as it meets them. `each()` streams the samples
once without keeping them, which is how an import stays flat in memory; `samples`,
`problems` and `notes` read the whole source first (kept as a list) when asked before it
was streamed, so they are complete whichever way the plan is read.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from engine.samples import Sample


class ImportPlan:
    def __init__(self, samples: Iterable[Sample] = (), problems: list[tuple[str, str]] | None = None,
                 notes: list[str] | None = None, *, expected: int | None = None) -> None:
        self._source: Iterator[Sample] | None = iter(samples)
        self._samples: list[Sample] | None = None
        self._problems: list[tuple[str, str]] = list(problems or [])  # (name, reason)
        self._notes: list[str] = list(notes or [])
        self._done = False
        self.expected = expected  # candidates the source lists (a progress total), None if unknown

    def follow(self, samples: Iterable[Sample]) -> "ImportPlan":
        """Use `samples` (a source's generator, which reports into this plan) as the source."""
        self._source = iter(samples)
        return self

    def problem(self, name: str, reason: str) -> None:
        self._problems.append((name, reason))

    def note(self, text: str) -> None:
        self._notes.append(text)

    def sort_problems(self) -> None:
        self._problems.sort(key=lambda problem: problem[0])

    def each(self) -> Iterator[Sample]:
        """The samples one at a time, not kept (once); problems and notes are complete after."""
        if self._samples is not None:
            yield from self._samples
            return
        if self._source is None:
            raise RuntimeError("this plan's samples were already streamed")
        source, self._source = self._source, None
        yield from source
        self._done = True

    @property
    def samples(self) -> list[Sample]:
        if self._samples is None:
            if self._source is None:
                raise RuntimeError("this plan's samples are streamed (each()), not kept")
            source, self._source = self._source, None  # the source may read `problems` as it goes
            self._samples = list(source)
            self._done = True
        return self._samples

    @property
    def problems(self) -> list[tuple[str, str]]:
        """Complete: read before the samples, it reads them first. While they are being
        streamed, the problems met so far."""
        self._complete()
        return self._problems

    @property
    def notes(self) -> list[str]:
        self._complete()
        return self._notes

    def _complete(self) -> None:
        if self._source is not None and self._samples is None:
            self.samples  # noqa: B018 - reading the source completes its problems and notes
