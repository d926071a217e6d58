"""What the CLI says is what happened (issue 16, "Honest output"): missing runs are named,
printed hints are commands that work, progress is current and reaches non-terminal stderr,
the compare verdict follows its stated rule, unavailable models are refused before anything is
queued, and tables fit 80 columns without cutting numbers."""

from __future__ import annotations

import shlex
import signal

import pytest
from typer.testing import CliRunner

from inpaint_tui.cli import app
from tests.conftest import queue


@pytest.fixture
def cli(db):
    runner = CliRunner()

    def invoke(*args: str, expect: int | None = 0, env=None):
        result = runner.invoke(app, ["--db", str(db), *args], env=env)
        if expect is not None:
            assert result.exit_code == expect, (f"exit {result.exit_code}\nstdout: {result.stdout}\n"
                                                f"stderr: {result.stderr}\n{result.exception!r}")
        return result

    return invoke


@pytest.fixture
def demo_store(store):
    from inpaint_tui.jobs.samples import ensure_demo

    ensure_demo(store)
    return store


# --- 1. a missing run is one line naming it, exit 1 ---------------------------------------

@pytest.mark.parametrize("args", [["compare", "{run}", "99"], ["compare", "99", "{run}"], ["runs", "show", "99"],
                                  ["runs", "watch", "{run}", "99"], ["runs", "cancel", "99"], ["runs", "resume", "99"],
                                  ["runs", "tag", "99", "x"], ["runs", "note", "99", "x"],
                                  ["runs", "delete", "99", "--yes"], ["metrics", "compute", "99"],
                                  ["export", "99", "-o", "{tmp}/x.csv"], ["report", "99", "-o", "{tmp}/report"]])
def test_every_command_taking_run_ids_names_a_missing_run_and_exits_1(cli, demo_store, tmp_path, args):
    run_id = queue(demo_store, model="tiny", steps=2)
    result = cli(*[a.format(run=run_id, tmp=tmp_path) for a in args], expect=1)
    assert result.stderr.strip().splitlines() == ["error: no run with id 99"]
    assert result.stdout == ""


# --- 2. the watch hint is a command that works --------------------------------------------

def test_the_detached_sweeps_watch_hint_runs_as_printed(cli, demo_store, monkeypatch):
    import inpaint_tui.jobs.launch as launch

    # No worker is started: the hint, not the execution, is under test.
    monkeypatch.setattr(launch, "ensure_worker", lambda store, device=None: (7, False))
    monkeypatch.setattr(launch, "serving_message", lambda store, worker_id, started: f"queued for worker {worker_id}")
    result = cli("sweep", "-t", "blended", "-p", "blend_start=0,0.25,0.5", "--model", "tiny", "--steps", "2",
                 "--metrics", "background", "--detach", "--json")
    import json

    new = json.loads(result.stdout)["new"]
    assert len(new) == 3
    hint = result.stderr.split("follow with `")[1].split("`")[0]
    words = shlex.split(hint)
    assert words[:3] == ["inpaint-tui", "runs", "watch"]
    for run_id in new:  # so that the watch ends
        demo_store.request_cancel(run_id)
    watched = cli(*words[1:], expect=1)  # 1: the runs were cancelled; a usage error would be 2
    assert "Invalid value" not in watched.stderr
    for run_id in new:
        assert f"run {run_id} " in watched.stderr


# --- 4. sample boundaries are published at once -------------------------------------------

@pytest.mark.sqlite_only(reason="worker-process timing does not depend on the backend")
def test_the_progress_row_names_a_sample_as_soon_as_it_starts(db, demo_store):
    from inpaint_tui.jobs.execute import CRASH_ENV
    from tests.worker_processes import ENV, queue_small, start_worker

    run_id = queue_small(demo_store, steps=3)
    # The worker dies in the first step callback of the second sample, before that step's
    # own (throttled) progress write: what the row says then is what begin_sample wrote.
    worker = start_worker(db, "--once", env={**ENV, CRASH_ENV: "step:1:1"})
    output = worker.communicate(timeout=300)[0]
    assert worker.returncode == -signal.SIGKILL, output
    second = demo_store.run_detail(run_id).samples[1]
    progress = demo_store.run_progress(run_id)
    assert (progress.sample_position, progress.sample_name, progress.samples_done) == (1, second.sample_name, 1)


# --- 6. the compare verdict follows its stated rule ---------------------------------------

def _brute_force_wilcoxon(differences) -> float:
    """Two-sided exact signed-rank p by enumerating every sign assignment (zeros dropped,
    tied |d| sharing their mean rank): independent of engine.metrics.stats' recursion."""
    import itertools

    d = [x for x in differences if x != 0]
    order = sorted(abs(x) for x in d)
    rank = {v: (order.index(v) + 1 + len(order) - order[::-1].index(v)) / 2 for v in order}
    ranks = [rank[abs(x)] for x in d]
    observed = sum(r for r, x in zip(ranks, d) if x > 0)
    centre = sum(ranks) / 2
    extreme = sum(1 for signs in itertools.product((0, 1), repeat=len(d))
                  if abs(sum(r for r, s in zip(ranks, signs) if s) - centre) >= abs(observed - centre) - 1e-9)
    return extreme / 2 ** len(d)


def _bootstrap_excludes_zero(differences, resamples=20_000) -> bool:
    """Whether a percentile bootstrap of the mean (Python's own RNG) puts 0 outside its 95%
    interval; the hand-made data below are far from the boundary either way."""
    import random

    rng = random.Random(1)
    n = len(differences)
    means = sorted(sum(rng.choice(differences) for _ in range(n)) / n for _ in range(resamples))
    low, high = means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]
    return not (low <= 0 <= high)


@pytest.mark.parametrize("metric, differences", [
    ("bg_mse", [0.01, 0.02, 0.015, 0.03, 0.012]),  # the case seen: interval above 0, p = 0.0625 on 5 pairs
    ("bg_psnr", [0.4, 0.9, 1.3, 0.2, 0.6, 1.1, 0.8, 0.5]),  # higher is better, all up: better
    ("bg_mse", [-0.01, -0.02, -0.004, -0.03, -0.012, -0.007, -0.02, -0.015]),  # lower is better, all down
    ("bg_psnr", [float(k) for k in range(1, 16)] + [-300.0]),  # p small, interval spans 0: skewed
    ("bg_psnr", [-0.4, -0.9, -1.3, -0.2, -0.6, -1.1, -0.8, -0.5, 0.1, -0.7]),  # worse
    ("bg_ssim", [0.0, 0.0, 0.0, 0.0]),  # no difference at all
])
def test_the_verdict_is_the_stated_rule_applied_to_the_shown_p_and_interval(metric, differences):
    from engine.metrics.catalogue import higher_is_better
    from inpaint_tui.read.compare import VERDICT_LEVEL, compare_values, verdict

    a = [0.5 + 0.01 * i for i in range(len(differences))]
    b = [x + d for x, d in zip(a, differences)]
    entry = compare_values(metric, a, b)
    p, excludes = _brute_force_wilcoxon(differences) if any(differences) else 1.0, _bootstrap_excludes_zero(differences)
    assert entry["p_value"] == pytest.approx(p, abs=1e-12)
    assert (not entry["ci_low"] <= 0 <= entry["ci_high"]) == excludes
    if p < VERDICT_LEVEL and excludes:
        up = sum(differences) > 0
        expected = "run 2 better" if up == higher_is_better(metric) else "run 2 worse"
    else:
        expected = "no clear difference"
    assert verdict(entry, 2) == expected


def test_the_seen_case_is_explained_by_the_rule_line():
    from inpaint_tui.read.compare import VERDICT_RULE, compare_values, verdict
    from inpaint_tui.read.present import format_p_value

    entry = compare_values("bg_mse", [0.1] * 5, [0.11, 0.12, 0.115, 0.13, 0.112])
    assert entry["ci_low"] > 0 and verdict(entry, 2) == "no clear difference"
    assert format_p_value(entry["p_value"]) == "0.0625"
    assert "p < 0.05 and the 95% interval of B − A excludes 0" in VERDICT_RULE
    assert "no multiple-comparison correction" in VERDICT_RULE


@pytest.mark.parametrize("p, shown", [(0.03125, "0.0312"), (0.04996, "0.04996"), (0.05, "0.05"), (0.0500004, "0.05"),
                                      (1.0, "1"), (0.000123456, "0.000123")])
def test_p_values_never_round_across_the_verdict_level(p, shown):
    from inpaint_tui.read.present import format_p_value

    assert format_p_value(p) == shown
    assert (float(shown) < 0.05) == (p < 0.05)


# --- 7. a model that is not here is refused before anything is queued ----------------------

@pytest.mark.parametrize("args", [["run", "-t", "vanilla"], ["run", "-t", "blended", "--detach"],
                                  ["sweep", "-t", "blended", "-p", "blend_start=0,0.5"],
                                  ["sweep", "-t", "vanilla", "--detach"]])
def test_an_uncached_hub_model_offline_is_one_line_and_nothing_is_created(db, demo_store, tmp_path, args):
    from tests.worker_processes import ENV, run_cli

    empty_home = tmp_path / "hf-home"
    empty_home.mkdir()
    env = {**ENV, "HF_HUB_OFFLINE": "1", "HF_HOME": str(empty_home)}
    env.pop("HF_HUB_CACHE", None)
    env.pop("HUGGINGFACE_HUB_CACHE", None)
    result = run_cli(db, *args, "--model", "sd15", "--steps", "2", env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model 'sd15' needs "), result.stderr
    assert "not in the local cache" in lines[0] and "`hf download stable-diffusion-v1-5/" in lines[0]
    assert "huggingface-cli" not in lines[0] and result.stdout == ""
    assert demo_store.runs() == [] and demo_store.sweeps() == []
    assert demo_store.workers(include_ended=True) == []


# --- 3. the dry run says what it would reuse and what the rest costs -----------------------

def test_sweep_dry_run_names_reused_runs_and_the_unet_calls_of_the_rest(cli, demo_store):
    import json

    from engine.spec import EvalConfig

    evaluation = EvalConfig.for_model("tiny", metrics="background", models="auto")
    existing = queue(demo_store, params={"blend_start": 0.25}, model="tiny", steps=8, eval_config=evaluation)
    grid = ["sweep", "-t", "blended", "-p", "blend_start=0,0.25,0.5,0.5", "--model", "tiny", "--steps", "8",
            "--metrics", "background", "--dry-run"]
    plan = json.loads(cli(*grid, "--json").stdout)
    # Blended Latent Diffusion costs N UNet calls per image, less the floor(p·N) skipped steps
    # (RESEARCH.md): 8, 6, 4 at 8 steps; 6 samples each.
    assert [(p["reuse_run"], p["same_as"], p["unet_calls_per_image"]) for p in plan["points"]] == [
        (None, None, 8), (existing, None, 6), (None, None, 4), (None, 2, 4)]
    assert [p["unet_calls"] for p in plan["points"]] == [48, 0, 24, 0]
    assert (plan["unet_calls"], plan["samples"], plan["exact"]) == (72, 6, True)

    text = cli(*grid).stdout
    assert f"reuse run {existing}" in text and "as #2" in text
    assert "4 grid points: 2 to compute, 1 run reused" in " ".join(text.split())
    assert "72 UNet calls" in text
    forced = json.loads(cli(*grid, "--force", "--json").stdout)
    assert forced["unet_calls"] == 6 * (8 + 6 + 4 + 4) and all(p["reuse_run"] is None for p in forced["points"])
    assert [r.id for r in demo_store.runs()] == [existing] and demo_store.sweeps() == []


# --- 5. progress reaches a stderr that is not a terminal -----------------------------------

@pytest.mark.sqlite_only(reason="what reaches stderr does not depend on the backend")
def test_a_run_with_stderr_in_a_file_logs_a_plain_line_per_sample(db, demo_store, tmp_path):
    import subprocess

    from tests.worker_processes import ENV, command

    log = tmp_path / "run.log"
    with open(log, "w") as stderr:
        result = subprocess.run(command(db, "run", "-t", "blended", "--model", "tiny", "--steps", "3", "--metrics",
                                        "background"), stdout=subprocess.PIPE, stderr=stderr, text=True, env=ENV,
                                timeout=300)
    text = log.read_text()
    assert result.returncode == 0, text
    run_id = int(result.stdout)
    assert "\x1b" not in text and "\r" not in text
    names = [s.sample_name for s in demo_store.run_detail(run_id).samples]
    prefix = f"run {run_id} blended: "
    lines = [line.removeprefix(prefix) for line in text.splitlines() if line.startswith(prefix)]
    starts = [line for line in lines if line.startswith("sample ") and " step " not in line]
    assert [line.split()[1:3] for line in starts] == [[f"{i + 1}/6", name] for i, name in enumerate(names)]
    assert lines[0] == "loading model" and lines[-2:] == ["evaluating", "finished (6/6 samples done)"]


def test_line_progress_writes_step_lines_at_quarters_at_most_every_ten_seconds():
    import io
    from types import SimpleNamespace

    from inpaint_tui.cli.progress import LineProgress

    now = [0.0]
    out = io.StringIO()
    progress = LineProgress(out, clock=lambda: now[0])
    task = progress.add_task("run 1 blended", total=2)

    def state(done, name, step, phase="generating"):
        return SimpleNamespace(phase=phase, samples_done=done, sample_count=2, sample_name=name, step=step, steps=40)

    progress.update(task, state=state(0, None, 0, "loading"))
    progress.update(task, state=state(0, "a", 0))
    for step in range(1, 41):  # 3 s per step: quarters at steps 10, 20, 30, 40, each ≥ 10 s after the last line
        now[0] += 3
        progress.update(task, state=state(0, "a", step), rate="0.3 it/s")
    progress.update(task, state=state(1, "a", 0))  # the sample's end: no line
    progress.update(task, state=state(1, "b", 0))
    for step in range(1, 41):  # fast: a quarter is reached every 0.1 s, but 10 s must pass between lines
        now[0] += 0.01
        progress.update(task, state=state(1, "b", step))
    progress.update(task, detail="finished", completed=2)
    progress.console.print("[yellow]a note[/]")
    assert out.getvalue().splitlines() == [
        "run 1 blended: loading model",
        "run 1 blended: sample 1/2 a",
        *[f"run 1 blended: sample 1/2 a step {step}/40 0.3 it/s" for step in (10, 20, 30, 40)],
        "run 1 blended: sample 2/2 b",
        "run 1 blended: finished (2/2 samples done)",
        "a note",
    ]


# --- 8. --help names values as they are typed ------------------------------------------------

def _all_commands():
    import typer

    from inpaint_tui.cli import app

    def walk(command, path):
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, path + [name])

    return list(walk(typer.main.get_command(app), []))


@pytest.mark.parametrize("path", _all_commands(), ids=lambda path: " ".join(path) or "inpaint-tui")
def test_help_shows_metavars_not_python_types(path):
    import re

    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert not re.search(r"<(list\[|str>|int|bool>|float|path>)", result.output), result.output
    assert "run_id" not in result.output and "run_ids" not in result.output  # arguments by their metavar


# --- 9. tables at 80 columns -----------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory, tiny_model):
    """Two finished tiny runs and a sweep over them, on SQLite (table layout does not depend on
    the backend)."""
    import json

    db = str(tmp_path_factory.mktemp("narrow") / "experiments.db")
    runner = CliRunner()

    def invoke(*args, env=None):
        result = runner.invoke(app, ["--db", db, *args], env=env)
        assert result.exit_code == 0, result.output + result.stderr
        return result

    invoke("samples", "import", "demo")
    sweep = json.loads(invoke("sweep", "-t", "blended", "-p", "blend_start=0,0.5", "--model", "tiny", "--steps", "2",
                              "--metrics", "background", "--json").stdout)
    return invoke, sweep["run_ids"]


def _check_fits(text: str, width: int = 80) -> list[str]:
    from rich.cells import cell_len

    lines = text.splitlines()
    assert all(cell_len(line) <= width for line in lines), "\n".join(l for l in lines if cell_len(l) > width)
    assert "…" not in text, text
    return lines


def test_runs_show_at_80_columns_keeps_every_number_one_row_per_sample(finished_runs):
    import json

    from inpaint_tui.read.present import format_number

    invoke, (first, _) = finished_runs
    detail = json.loads(invoke("runs", "show", str(first), "--json").stdout)
    lines = _check_fits(invoke("runs", "show", str(first), env={"COLUMNS": "80"}).stdout)
    for sample in detail["samples"]:
        row = [line for line in lines if f" {sample['sample_name']} " in line]
        assert len(row) == 1, lines  # one line per sample
        cells = [cell.strip() for cell in row[0].split("│")[1:-1]]
        assert cells[:3] == [str(sample["position"]), sample["sample_name"], "done"]
        assert cells[3:5] == [format_number(sample["metrics"]["bg_mse"]), format_number(sample["metrics"]["bg_psnr"])]
        assert str(int(sample["metrics"]["unet_calls"])) in cells  # a count, without decimals
    assert any(line.strip().startswith("outputs: ") for line in lines)
    assert any("not shown at this width" in line for line in lines)
    wide = invoke("runs", "show", str(first), env={"COLUMNS": "250"}).stdout
    assert "not shown" not in wide and f"{detail['samples'][0]['seed']:x}" in wide and "seed (hex)" in wide


@pytest.mark.parametrize("args", [["compare", "{a}", "{b}"], ["samples", "list"], ["workers", "--all"], ["sweeps", "list"],
                                  ["sweeps", "show", "1"], ["techniques"], ["models"], ["metrics", "compute", "{a}"],
                                  ["sweep", "-t", "blended", "-p", "blend_start=0,0.5,0.75", "-p",
                                   "progressive_shrink=0,1", "--steps", "2,4", "--seeds", "0,1", "--model", "tiny",
                                   "--metrics", "background", "--dry-run"]])
def test_cli_tables_fit_80_columns_without_cutting_anything(finished_runs, args):
    invoke, (a, b) = finished_runs
    text = invoke(*[arg.format(a=a, b=b) for arg in args], env={"COLUMNS": "80"}).stdout
    _check_fits(text)


def test_compare_at_80_columns_shows_the_interval_p_and_the_rule(finished_runs):
    import json

    from inpaint_tui.read.present import format_interval, format_metric, format_p_value

    invoke, (a, b) = finished_runs
    entries = json.loads(invoke("compare", str(a), str(b), "--json").stdout)["comparisons"]
    lines = _check_fits(invoke("compare", str(a), str(b), env={"COLUMNS": "80"}).stdout)
    assert {entry["metric"] for entry in entries} >= {"bg_mse", "unet_calls"}
    for entry in entries:
        number = lambda value: format_metric(entry["metric"], value)  # noqa: E731
        row = next(line for line in lines if line.startswith(f"│ {entry['metric']} "))
        cells = [cell.strip() for cell in row.split("│")[1:-1]]
        assert cells == [entry["metric"], str(entry["n"]), number(entry["difference"]),
                         format_interval(entry["ci_low"], entry["ci_high"], number=number, separator=", "),
                         format_p_value(entry["p_value"]), entry["verdict"]]
    assert "p < 0.05 and the 95% interval of B − A excludes 0" in " ".join(" ".join(lines).split())


# --- 8. numbers, intervals, seeds and plurals as they are --------------------------------

def test_formatting_whole_numbers_degenerate_intervals_seeds_and_plurals():
    from inpaint_tui.read.present import (
        format_interval,
        format_metric,
        format_number,
        format_seed,
        format_summary,
        plural,
    )
    from inpaint_tui.store import MetricSummary

    assert [format_number(v) for v in (4.0, 0.0, 0.01234567, 12.3456789, 2.5e-5, 123456.7)] == [
        "4.0000", "0.0000", "0.0123", "12.3457", "2.500e-05", "1.235e+05"]
    # Counts (the catalogue's) are whole numbers where they are whole; their means may not be.
    assert [format_metric("unet_calls", v) for v in (4.0, 0.0, 4.5)] == ["4", "0", "4.5000"]
    assert [format_metric("seconds", 1.0), format_metric("bg_psnr", 23.0)] == ["1.0000", "23.0000"]
    degenerate = MetricSummary(value=4.0, ci_low=4.0, ci_high=4.0, n=6)
    assert format_summary(degenerate, name="unet_calls") == "4"  # a shared count is just the count
    assert format_summary(degenerate) == "4.0000 (all equal)"
    assert format_summary(MetricSummary(value=0.5, ci_low=0.25, ci_high=0.75, n=6)) == "0.5000 [0.25–0.75]"
    assert format_summary(MetricSummary(value=0.5, ci_low=float("nan"), ci_high=float("nan"), n=1)) == "0.5000"
    assert format_interval(0.0, 0.0) == "all equal" and format_interval(None, 1.0) == "-"
    assert format_interval(-0.03, -0.01, number=format_number, separator=", ") == "[-0.0300, -0.0100]"
    seed = 5863425046325970838  # 19 decimal digits, as engine.seeding draws them
    assert format_seed(seed) == "515f12038d634796" and int(format_seed(seed), 16) == seed
    assert [plural(n, "run") for n in (0, 1, 2)] == ["0 runs", "1 run", "2 runs"]


def test_json_lists_stream_an_element_per_line_and_views_convert_as_asdict_did(capsys):
    """`--json` of a list: one compact element per line (the C encoder, written as it goes),
    parsed back equal; a view's to_dict (one pass over its fields) equals dataclasses.asdict
    followed by jsonable, nested views and non-finite floats included."""
    import dataclasses
    import json
    import math
    from datetime import datetime, timezone

    from inpaint_tui.cli.base import print_json
    from inpaint_tui.store import MetricSummary, jsonable
    from inpaint_tui.store.views import LeaderboardRow

    row = LeaderboardRow(run_id=3, technique="tdpaint", params={"t_bg": math.inf}, model="tiny", steps=2, seed=0,
                         sample_set="demo", status="finished", samples_done=6, metrics={"bg_mse": 0.5},
                         summaries={"bg_mse": MetricSummary(value=0.5, ci_low=0.4, ci_high=math.nan)})
    assert row.to_dict() == jsonable(dataclasses.asdict(row)) == jsonable(row.fields())
    import numpy as np
    from pathlib import Path

    from inpaint_tui.store import RunStatus

    odd = {"f64": np.float64("inf"), "nan": np.float64("nan"), "status": RunStatus.FINISHED, "flag": True,
           "nested": ({"p": Path("/a/b")}, [1.5, -math.inf]), "none": None}
    assert json.loads(json.dumps(jsonable(odd))) == {"f64": "inf", "nan": "nan", "status": "finished", "flag": True,
                                                     "nested": [{"p": "/a/b"}, [1.5, "-inf"]], "none": None}
    assert row.to_dict()["params"] == {"t_bg": "inf"} and row.to_dict()["summaries"]["bg_mse"]["ci_high"] == "nan"
    items = [row.to_dict(), {"when": datetime(2026, 1, 2, tzinfo=timezone.utc)}, 7]
    print_json(items)
    out = capsys.readouterr().out
    assert json.loads(out) == jsonable(items)
    assert out.splitlines()[0] == "[" and out.splitlines()[-1] == "]" and len(out.splitlines()) == 2 + len(items)
    print_json(item for item in items)  # a generator: the same text, its elements never all held
    assert capsys.readouterr().out == out
    print_json([])
    assert json.loads(capsys.readouterr().out) == []
    print_json(item for item in [])
    assert json.loads(capsys.readouterr().out) == []
