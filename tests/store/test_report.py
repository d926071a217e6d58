"""Reports (inpaint_tui/jobs/report.py, `inpaint-tui report`): the HTML parses, every image it
references exists, and the numbers it prints are the stored ones."""

from __future__ import annotations

import html.parser
import re

import pytest
from PIL import Image

from engine.metrics.catalogue import key_metrics
from inpaint_tui.read.present import format_summary
from inpaint_tui.read.report import ReportError, write_report


class _Page(html.parser.HTMLParser):
    """Collects image sources and the leaderboard's cells; fails on unbalanced tables."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables: list[list[list[tuple[str, str]]]] = []  # table -> row -> (text, class)
        self.open: list[str] = []
        self._cell: list[str] | None = None
        self._class = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._class = [], attrs.get("class") or ""
        if tag in ("table", "tr", "td", "th", "html", "body"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        if tag in ("table", "tr", "td", "th", "html", "body"):
            assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
            self.open.pop()
        if tag in ("td", "th"):
            self.tables[-1][-1].append(("".join(self._cell), self._class))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    page.close()
    assert page.open == []
    return page


def test_report_numbers_images_and_sections(tui_store, tmp_path):
    store = tui_store
    run_ids = [*store.ids["finished"], store.ids["with_errors"]]
    files = write_report(store, run_ids, tmp_path / "report", baseline=run_ids[0])
    page = _parse(files.html)

    for source in page.images:
        assert not re.match(r"[a-z]+:", source), f"{source} is not a file beside the page"
        with Image.open(files.html.parent / source) as image:
            image.verify()
    assert len(set(page.images)) == len(page.images) >= 3 * (len(run_ids) + 2) - 1

    board = page.tables[0]
    header = [text for text, _ in board[0]]
    details = {run_id: store.run_detail(run_id) for run_id in run_ids}
    metrics = key_metrics({name for d in details.values() for name in (*d.metrics, *d.summaries)})
    assert [h.split()[0] for h in header[5:]] == metrics
    assert sorted(int(row[0][0]) for row in board[1:]) == sorted(run_ids)
    bold = 0
    for row in board[1:]:
        detail = details[int(row[0][0])]
        for name, (text, css) in zip(metrics, row[5:]):
            assert text == format_summary(detail.summaries.get(name), detail.metrics.get(name), name)
            bold += "best" in css
    first = metrics[0]
    values = [details[int(row[0][0])].metrics.get(first) for row in board[1:]]
    shown = [v for v in values if v is not None]
    assert shown == sorted(shown)  # bg_mse first: lower is better, best first
    assert bold >= len(metrics) - 1

    markdown = files.markdown.read_text()
    for needle in ("## Leaderboard", f"## Paired comparisons against run {run_ids[0]}", "## Samples",
                   "## Reproducibility", details[run_ids[0]].run.config_hash):
        assert needle in markdown
    for run_id, detail in details.items():  # a command that reruns each run, recorded or rebuilt
        run = detail.run
        assert (run.command or f"inpaint-tui run -t {run.technique}") in markdown
        if run.command is None:
            assert f"--samples {run.sample_set} --model {run.model} --steps {run.steps}" in markdown
    for source in re.findall(r"!\[\]\(([^)]+)\)", markdown):
        assert (files.markdown.parent / source).exists()


def test_an_inline_report_is_one_file_with_the_same_images(tui_store, tmp_path):
    import base64
    import io

    run_ids = [*tui_store.ids["finished"], tui_store.ids["with_errors"]]
    beside = _parse(write_report(tui_store, run_ids, tmp_path / "beside").html)
    inline = write_report(tui_store, run_ids, tmp_path / "inline", inline=True)
    page = _parse(inline.html)
    assert len(page.images) == len(beside.images)
    for source, file in zip(page.images, beside.images):
        kind, _, data = source.partition(";base64,")
        assert kind == "data:" + {"png": "image/png", "gif": "image/gif"}[file.rsplit(".", 1)[1]]
        assert base64.b64decode(data) == (tmp_path / "beside" / file).read_bytes()
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            image.verify()


def test_report_refuses_bad_requests(tui_store, tmp_path):
    with pytest.raises(ReportError, match="no runs"):
        write_report(tui_store, [], tmp_path)
    finished = tui_store.ids["finished"]
    with pytest.raises(ReportError, match="baseline"):
        write_report(tui_store, finished[:2], tmp_path, baseline=finished[2])
    with pytest.raises(ReportError, match="no sample named 'nope'"):
        write_report(tui_store, finished, tmp_path, sample_names=["nope"])


def test_report_of_a_tiny_sweep_from_the_cli(tmp_path, tiny_model):
    """The issue's check: a demo sweep on the tiny model, executed for real, reported by the
    CLI; the HTML parses, every image (animations included) exists, and the leaderboard's
    numbers are the stored ones."""
    import json

    from typer.testing import CliRunner

    from inpaint_tui.cli import app
    from inpaint_tui.store import Store

    runner = CliRunner()
    db = str(tmp_path / "experiments.db")

    def invoke(*args, expect=0):
        result = runner.invoke(app, ["--db", db, *args])
        assert result.exit_code == expect, f"{args}: exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
        return result

    invoke("samples", "import", "demo")
    swept = json.loads(invoke("sweep", "-t", "blended", "-p", "progressive_shrink=0,2", "--steps", "2",
                              "--animation", "gif", "--json").stdout)
    out = tmp_path / "report"
    invoke("report", "--sweep", str(swept["sweep_id"]), "--out", str(out), "--samples", "coffee-cup,chelsea-eyes")
    page = _parse(out / "index.html")
    assert page.images and all((out / source).is_file() for source in page.images)
    assert sum(source.endswith(".gif") for source in page.images) == 2 * 6  # every sample's denoising
    plots = [source for source in page.images if "/sweep-" in source]
    assert len(plots) == 4 and all("-vs-progressive_shrink" in source for source in plots)  # 4 leading metrics
    assert (out / "index.html").read_text().count("bars: 95% bootstrap interval over samples</figcaption>") == 4
    store = Store(db)
    board = page.tables[0]
    metrics = [h.split()[0] for h, _ in board[0][5:]]
    for row in board[1:]:
        detail = store.run_detail(int(row[0][0]))
        assert detail.run.status == "finished"
        assert [text for text, _ in row[5:]] == [
            format_summary(detail.summaries.get(name), detail.metrics.get(name), name) for name in metrics]
    grid_rows = [row for table in page.tables for row in table if row and row[0][0].startswith(("coffee-cup", "chelsea-eyes"))]
    assert len(grid_rows) == 2

    invoke("report", "--out", str(out), expect=2)
    assert "nope" in invoke("report", "--set", "nope", "--out", str(out), expect=1).stderr
    invoke("report", "99", "--out", str(out), expect=1)
    invoke("report", "--sweep", str(swept["sweep_id"]), "--baseline", "99", "--out", str(out), expect=2)


async def test_tui_report_on_the_runs_shown_with_the_selected_run_as_baseline(tui_store, tmp_path):
    from textual.widgets import DataTable, Input
    from textual_image.widget import HalfcellImage

    from inpaint_tui.tui.app import InpaintApp

    app = InpaintApp(tui_store, image_class=HalfcellImage, refresh_seconds=60, offer_demo=False, start_screen="runs")
    out = tmp_path / "from-tui"
    async with app.run_test(size=(140, 40)) as pilot:
        for _ in range(200):
            if type(app.screen).__name__ == "RunsScreen" and app.screen.query_one("#runs", DataTable).row_count:
                break
            await pilot.pause(0.05)
        screen = app.screen
        table = screen.query_one("#runs", DataTable)
        table.move_cursor(row=2)
        baseline = int(table.ordered_rows[2].key.value)
        await pilot.press("P")
        await pilot.pause(0.2)
        app.screen.query_one("#text", Input).value = str(out)
        await pilot.press("enter")
        for _ in range(400):
            if any(n.title in ("report written", "report failed") for n in app._notifications):
                break
            await pilot.pause(0.05)
        (done,) = [n for n in app._notifications if n.title.startswith("report")]
        assert done.title == "report written", done.message
    page = _parse(out / "index.html")
    assert f"Paired comparisons against run {baseline}" in (out / "report.md").read_text()
    assert sorted(int(row[0][0]) for row in page.tables[0][1:]) == sorted(r.id for r in tui_store.runs())
