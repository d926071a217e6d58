"""The command palette: open an area, jump to a run or a sample, start a run."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

AREAS = (("dashboard", "Dashboard"), ("samples", "Samples"), ("new_run", "New run"), ("runs", "Runs"),
         ("leaderboard", "Leaderboard"), ("sweeps", "Sweep plot"))


class InpaintCommands(Provider):
    async def startup(self) -> None:
        import asyncio

        store = self.app.store  # read on a thread: the palette opens without blocking input
        self.runs, self.samples = await asyncio.to_thread(
            lambda: (store.runs(limit=2000, newest_first=True), store.samples()))

    def _commands(self):
        for mode, title in AREAS:
            yield f"Open {title}", partial(self.app.open_area, mode), f"switch to the {title.lower()} screen"
        yield "Start a run", partial(self.app.open_area, "new_run"), "pick techniques and parameters"
        for run in self.runs:
            yield (f"Run {run.id}: {run.technique} on {run.sample_set} ({run.status})",
                   partial(self.app.open_run, run.id), "open the run's detail")
        for sample in self.samples:
            yield f"Sample {sample.name}: {sample.prompt}", partial(self._open_sample, sample.id), "show in Samples"

    def _open_sample(self, sample_id: int) -> None:
        self.app.switch_mode("samples")
        screen = self.app.screen
        if hasattr(screen, "select_sample"):
            screen.select_sample(sample_id)

    async def discover(self) -> Hits:
        for text, callback, help_text in list(self._commands())[: len(AREAS) + 1]:
            yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help_text)
