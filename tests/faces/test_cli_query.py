"""The query language on the command line (`runs list`, `leaderboard`, `export`, `report`
with --filter / --sort / --limit, `runs list --columns`), tables fitted to an 80-column
terminal, and `runs diff`; on both backends, on the TUI test database (tests/tui_database.py)
with every key metric added to its finished runs."""

from __future__ import annotations

import json
import random
import re
import statistics

import pytest
from typer.testing import CliRunner

from inpaint_tui.cli import app
from inpaint_tui.read.export import read_export, summary_path
from inpaint_tui.read.present import format_number
from inpaint_tui.store import MetricSummary
from tests.conftest import module_database, queue, sql

EXTRA = ("bg_ssim", "ring_mse", "ring_psnr", "clip_local", "clip_global", "peak_memory_mb")


@pytest.fixture(scope="module", params=("sqlite", "postgresql"))
def cli_store(request, tmp_path_factory):
    """(invoke, store): the TUI test database with all key metrics on its finished runs, tags,
    and a run with several parameters changed, on each backend, built once for the module
    (tests leave it as they found it); `invoke(*args, expect=0, columns=None)` runs the CLI
    on it, with COLUMNS set when `columns` is."""
    import tui_database

    from inpaint_tui.store.db import DATA_ENV

    folder = tmp_path_factory.mktemp(f"cli-query-{request.param}")
    db = module_database(request, folder)
    data = str(folder / "experiments_data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_ENV, data)
        store = tui_database.build(db)
    rng = random.Random(3)
    for run in store.runs(statuses=["finished", "finished_with_errors"]):
        values = {}
        for name in EXTRA:
            value = rng.uniform(0.001, 40)
            values[name] = MetricSummary(value=value, ci_low=value * 0.95, ci_high=value * 1.05, n=6)
        share = rng.randint(0, 6) / 6
        values["prompt_precision"] = MetricSummary(value=share, ci_low=max(0.0, share - 0.3),
                                                   ci_high=min(1.0, share + 0.3), n=6)
        kid = rng.uniform(0.001, 0.05)
        values["kid"] = MetricSummary(value=kid, std=kid / 10, n=6)
        store.record_run_metrics(run.id, values)
    store.annotate_run(2, tags=["paper", "v2"])
    store.annotate_run(8, tags=["paper"], note="seams visible")
    store.ids["many"] = queue(store, "blended", params={"blend_start": "0.5", "background": "paste",
                                                         "post_condition": "true"},
                              model="tiny", steps=20, eval_config=tui_database.EVAL)
    runner = CliRunner()

    def invoke(*args, expect: int = 0, columns: int | None = None):
        env = {DATA_ENV: data, **({"COLUMNS": str(columns)} if columns else {})}
        result = runner.invoke(app, ["--db", str(db), *args], env=env)
        assert result.exit_code == expect, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        return result

    invoke.db = db
    yield invoke, store
    store.close()


def _json(invoke, *args):
    return json.loads(invoke(*args, "--json").stdout)


def test_runs_list_filters_sorts_and_limits(cli_store):
    invoke, store = cli_store
    blended = [run["id"] for run in _json(invoke, "runs", "list", "--filter", "technique = 'blended'")]
    assert blended == [run.id for run in store.runs() if run.technique == "blended"]
    listed = _json(invoke, "runs", "list", "--filter", "param.blend_start >= 0.25 or tag = paper")
    assert [r["id"] for r in listed] == [2, 8, store.ids["many"]]
    assert listed[0]["metrics"]["bg_mse"] == store.run_metric_values([2])[2]["bg_mse"]
    values = store.run_metric_values([run.id for run in store.runs()])
    ranked = _json(invoke, "runs", "list", "--sort", "-metric.bg_mse,id", "--limit", "4")
    with_value = sorted((run_id for run_id in values if "bg_mse" in values[run_id]),
                        key=lambda run_id: (-values[run_id]["bg_mse"], run_id))
    assert [r["id"] for r in ranked] == with_value[:4]
    last = _json(invoke, "runs", "list", "--sort", "metric.kid")
    assert [r["id"] for r in last][-1] == store.ids["many"]  # runs without the metric last
    assert _json(invoke, "runs", "list", "--filter", "technique = blended", "--limit", "0") == []
    assert "no runs match (11 in the store)" in invoke("runs", "list", "--filter", "steps > 1000").stdout
    assert invoke("runs", "list", "--filter", "id = 8", columns=80).stdout.split("\n")[0].strip() == "1 of 11 runs"
    assert invoke("runs", "list", "--columns", "id", "--limit", "1", columns=80).stdout.startswith("1 of 11 runs")


def _table_lines(output: str) -> tuple[list[str], list[str]]:
    """(header lines, body lines) of a fitted table: the body is between the rule under the
    header and the caption (the first line after a blank-free run of rows starting with text)."""
    lines = output.rstrip("\n").split("\n")
    rule = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"})
    body = []
    for line in lines[rule + 1:]:
        if line.startswith(("hidden at", "mean", "means")):
            break
        body.append(line)
    return lines[1:rule], body


def test_runs_list_fits_80_columns(cli_store):
    invoke, store = cli_store
    output = invoke("runs", "list", columns=80).stdout
    lines = output.rstrip("\n").split("\n")
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert "…" not in output
    header, body = _table_lines(output)
    runs = store.runs()
    starts = [line for line in body if re.match(r"\s*\d+\s", line)]
    assert [int(line.split()[0]) for line in starts] == [run.id for run in runs]
    assert len(body) <= 2 * len(runs)  # no run takes more than two lines
    heading = " ".join(header)
    assert heading.split()[:4] == ["run", "status", "technique", "params"] and "bg_mse" in heading
    assert "ring_psnr" not in heading  # not a key metric
    row = next(line for line in starts if line.split()[0] == "2")
    assert "progressive_shrink=2" in row and "resize" not in output  # only what differs from the defaults
    assert format_number(store.run_metric_values([8])[8]["bg_mse"]) in output  # numbers whole
    many = [i for i, line in enumerate(body) if line.split() and line.split()[0] == str(store.ids["many"])][0]
    assert "blend_start=0.5" in body[many] and "post_condition=True" in " ".join(body[many:many + 2])
    assert "hidden at 80 columns:" in output and "created" in output.split("hidden at 80 columns:")[1]
    assert "11 runs, model tiny, steps 20, guidance 7.5" in lines[0]  # shared settings in the title


def test_runs_list_columns_and_wide(cli_store):
    invoke, store = cli_store
    output = invoke("runs", "list", "--columns", "id,technique,param.blend_start,metric.bg_mse", columns=80).stdout
    header, body = _table_lines(output)
    assert header[-1].split() == ["run", "technique", "blend_start", "bg_mse"]
    cells = {line.split()[0]: line.split()[1:] for line in body}
    assert cells["1"] == ["vanilla", "-", format_number(store.run_metric_values([1])[1]["bg_mse"])]
    assert cells["8"][:2] == ["blended", "0.25"] and cells["7"][:2] == ["blended", "0"]  # the default, filled in
    assert cells["10"] == ["vanilla", "-", "-"]
    wide = invoke("runs", "list", "--wide", columns=80).stdout
    assert max(len(line) for line in wide.split("\n")) > 80 and "…" not in wide
    for name in ("model", "steps", "ring_psnr", "peak_memory_mb", "created", "note"):
        assert name in wide
    bad = invoke("runs", "list", "--columns", "id,metric.kidd", expect=2)
    assert "error: --columns: unknown metric 'kidd'" in bad.stderr and "Traceback" not in bad.stderr
    assert bad.stderr.rstrip().split("\n")[-1] == "     ^^^^^^^^^^^"


def test_leaderboard_fits_80_columns_and_takes_a_selection(cli_store):
    invoke, store = cli_store
    output = invoke("leaderboard", columns=80).stdout
    lines = output.rstrip("\n").split("\n")
    assert all(len(line) <= 80 for line in lines) and "…" not in output
    header, body = _table_lines(output)
    heading = " ".join(header).split()
    assert heading.index("bg_mse") < heading.index("params")  # the ranking metric before the parameters
    board = store.leaderboard("bg_mse", descending=False)
    assert [int(line.split()[1]) for line in body if re.match(r"\s*\d+\s+\d+\s", line)] == [row.run_id for row in board]
    for row in board:
        assert format_number(row.metrics["bg_mse"]) in output
    wide = invoke("leaderboard", columns=200).stdout
    assert "[" in wide and "±" in wide  # intervals and KID's std where there is room
    chosen = _json(invoke, "leaderboard", "--filter", "technique = blended and tag = paper")
    assert [row["run_id"] for row in chosen] == [8, 2]
    assert [row["rank"] for row in chosen] == [1, 2]
    by_kid = _json(invoke, "leaderboard", "--sort", "-metric.kid", "--limit", "2")
    kid = {row.run_id: row.metrics["kid"] for row in board}
    assert [row["run_id"] for row in by_kid] == sorted(kid, key=lambda run_id: -kid[run_id])[:2]
    assert "leaderboard sorted by -metric.kid" in invoke("leaderboard", "--sort", "-metric.kid", columns=80).stdout
    assert len(_json(invoke, "leaderboard", "--all", "--limit", "3")) == 3


def test_leaderboard_group_by_pools_every_run_with_the_same_value(cli_store):
    """`--group-by param.blend_start`: groups and pooled means computed here from the store's
    per-run values (a run not recording blend_start has its technique's default, 0.0 for
    blended and tdpaint; the others are the (none) group), ranked by --metric's direction."""
    invoke, store = cli_store
    runs = store.leaderboard("bg_psnr", descending=True)  # the finished runs, as the command selects
    defaults = {"blended": 0.0, "tdpaint": 0.0}
    by_hand: dict = {}
    for run in sorted(runs, key=lambda r: r.run_id):
        by_hand.setdefault(run.params.get("blend_start", defaults.get(run.technique)), []).append(run.run_id)
    values = store.run_metric_values([run.run_id for run in runs])
    groups = _json(invoke, "leaderboard", "--group-by", "param.blend_start", "--metric", "bg_psnr")
    assert {group["value"]: group["runs"] for group in groups} == by_hand
    assert {group["label"] for group in groups} == {"blend_start=0.25", "blend_start=0.0", "blend_start=(none)"}
    for group in groups:
        psnr = [values[run_id]["bg_psnr"] for run_id in group["runs"]]
        if len(psnr) == 1:  # one run keeps its own interval
            assert group["summaries"]["bg_psnr"]["value"] == psnr[0]
            continue
        assert group["metrics"]["bg_psnr"] == statistics.fmean(psnr)
        summary = group["summaries"]["bg_psnr"]
        assert (summary["ci_low"], summary["ci_high"], summary["n"]) == (min(psnr), max(psnr), len(psnr))
    pooled = [group["metrics"]["bg_psnr"] for group in groups]
    assert pooled == sorted(pooled, reverse=True)  # higher PSNR is better
    assert [group["rank"] for group in groups] == [1, 2, 3]
    assert len(_json(invoke, "leaderboard", "--group-by", "technique", "--limit", "2")) == 2  # counts groups
    table = invoke("leaderboard", "--group-by", "param.blend_start", columns=80).stdout
    assert "grouped by param.blend_start: 3 groups" in table and "blend_start=(none)" in table
    configurations = _json(invoke, "leaderboard", "--group-by", "seed")
    assert sorted(run_id for group in configurations for run_id in group["runs"]) == sorted(r.run_id for r in runs)
    for bad, said in (("status", "cannot group by 'status'"), ("param.nope", "unknown parameter 'nope'")):
        result = invoke("leaderboard", "--group-by", bad, expect=2)
        assert result.stderr.startswith(f"error: --group-by: {said}") and result.stderr.count("\n") == 1
    assert "--sort orders runs" in invoke("leaderboard", "--group-by", "seed", "--sort", "id", expect=2).stderr


@pytest.mark.parametrize("command", [["runs", "list"], ["leaderboard"], ["export", "-o", "x.csv"],
                                     ["report", "-o", "report"]])
def test_a_bad_expression_is_one_line_with_a_caret_and_exit_2(cli_store, command):
    invoke, _ = cli_store
    result = invoke(*command, "--filter", "technique = blended and metric.kidd < 0.1", expect=2)
    first, shown, caret = result.stderr.rstrip("\n").split("\n")
    assert first.startswith("error: --filter: unknown metric 'kidd': did you mean 'kid'? known: bg_mse")
    assert first.endswith("(at column 25)")
    assert shown == "  technique = blended and metric.kidd < 0.1"
    assert caret == "  " + " " * 24 + "^" * 11
    assert result.stdout == ""
    bad_sort = invoke(*command, "--sort", "-metric.kid,,id", expect=2)
    assert bad_sort.stderr.startswith("error: --sort: empty sort key")


def test_export_and_report_take_the_selection(cli_store, tmp_path):
    invoke, store = cli_store
    out = tmp_path / "blended.csv"
    invoke("export", "--filter", "technique = 'blended' and status = finished", "-o", str(out))
    exported = [row["run_id"] for row in read_export(summary_path(out))]
    assert exported == [run.id for run in store.runs() if run.technique == "blended" and run.status == "finished"]
    invoke("export", "--sort", "-metric.bg_mse", "--limit", "2", "-o", str(out))
    values = store.run_metric_values([run.id for run in store.runs()])
    top = sorted((i for i in values if "bg_mse" in values[i]), key=lambda i: (-values[i]["bg_mse"], i))[:2]
    assert [row["run_id"] for row in read_export(summary_path(out))] == top
    invoke("export", "8", "1", "2", "--filter", "tag = paper", "-o", str(out))  # named runs, narrowed, in order
    assert [row["run_id"] for row in read_export(summary_path(out))] == [8, 2]
    none = invoke("export", "--filter", "steps > 1000", "-o", str(out), expect=1)
    assert none.stderr.strip() == "error: no runs to export: none matches"
    assert "name RUN ids, --sweep ID or --filter EXPR" in invoke("export", "-o", str(out), expect=2).stderr

    folder = tmp_path / "report"
    invoke("report", "--filter", "tag = paper", "--sort", "metric.bg_mse", "-o", str(folder))
    markdown = (folder / "report.md").read_text()
    assert "runs 8, 2" in markdown and "Paired comparisons against run 8" in markdown
    invoke("report", "--set", "demo", "--filter", "technique = tdpaint", "-o", str(folder))
    assert "inpaint-tui report: runs 3\n" in (folder / "report.md").read_text()


def test_runs_diff(cli_store):
    invoke, store = cli_store
    db = invoke.db
    output = invoke("runs", "diff", "2", "8", columns=80).stdout
    assert output.startswith("runs 2 and 8: 2 differences")
    assert invoke("runs", "diff", "7", "8").stdout.split("\n")[0].strip() == "runs 7 and 8: 1 difference"
    fields = [line.split()[0] for line in _table_lines(output)[1]]
    assert fields == ["param.blend_start", "param.progressive_shrink"]
    data = _json(invoke, "runs", "diff", "2", "8", "1")
    assert data["runs"] == [2, 8, 1]
    by_field = {entry["field"]: entry["values"] for entry in data["differences"]}
    assert by_field["technique"] == {"2": "blended", "8": "blended", "1": "vanilla"}
    assert by_field["param.blend_start"] == {"2": 0.0, "8": 0.25, "1": None}  # vanilla has no blend_start
    assert by_field["param.strength"] == {"2": None, "8": None, "1": 1.0}
    assert "model" not in by_field and "param.resize" not in by_field
    running = {entry["field"] for entry in _json(invoke, "runs", "diff", "7", "9")["differences"]}
    assert {"seed", "device"} <= running
    # A run recorded by an older version, without some parameters: compared as it ran (defaults).
    recorded = json.dumps(store.run(7).params)
    sql(db, "UPDATE run SET params = :params WHERE id = 7", params=json.dumps({"progressive_shrink": 0}))
    try:
        assert "the same configuration" in invoke("runs", "diff", "7", "7").stdout
        assert {e["field"] for e in _json(invoke, "runs", "diff", "7", "8")["differences"]} == {"param.blend_start"}
    finally:
        sql(db, "UPDATE run SET params = :params WHERE id = 7", params=recorded)
    missing = invoke("runs", "diff", "2", "99", expect=1)
    assert missing.stderr.strip() == "error: no run with id 99"
    assert "two or more run ids" in invoke("runs", "diff", "2", expect=2).stderr
