"""The CLI end to end, on temporary databases. Most tests call the Typer app in-process
(same code path as the console script, faster); a few run the installed `inpaint-tui`
as a real subprocess to check the entry point, exit codes and clean stdout."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inpaint_tui.cli import app

BIN = Path(sys.executable).with_name("inpaint-tui")


@pytest.fixture
def cli(tmp_path, tiny_model):
    runner = CliRunner()
    db = str(tmp_path / "experiments.db")

    def invoke(*args: str, expect: int = 0):
        result = runner.invoke(app, ["--db", db, *args])
        assert result.exit_code == expect, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        return result

    invoke.db = db
    return invoke


def test_end_to_end_import_run_list_rank(cli, tmp_path):
    assert "6 new" in cli("samples", "import", "demo").stdout
    listed = json.loads(cli("samples", "list", "--json").stdout)
    assert len(listed) == 6 and all(Path(s["image_path"]).is_file() for s in listed)
    assert json.loads(cli("samples", "sets", "--json").stdout)[0] == {**json.loads(cli("samples", "sets", "--json").stdout)[0], "name": "demo", "sample_count": 6}

    first = cli("run", "-t", "blended", "-p", "progressive_shrink=2", "--samples", "demo", "--model", "tiny", "--steps", "3", "--seed", "0")
    second = cli("run", "-t", "vanilla", "--samples", "demo", "--steps", "3")
    run_ids = [int(first.stdout.strip()), int(second.stdout.strip())]
    assert run_ids == [1, 2]

    runs = json.loads(cli("runs", "list", "--json").stdout)
    assert [(r["id"], r["technique"], r["status"]) for r in runs] == [(1, "blended", "finished"), (2, "vanilla", "finished")]
    assert runs[0]["params"]["progressive_shrink"] == 2 and runs[0]["params"]["background"] == "none"

    detail = json.loads(cli("runs", "show", "1", "--json").stdout)
    assert detail["run"]["status"] == "finished" and len(detail["samples"]) == 6
    for sample in detail["samples"]:
        assert sample["status"] == "done" and Path(sample["image_path"]).is_file()
        assert Path(sample["image_path"]).parent.parent.parent == tmp_path / "experiments_data"
        assert isinstance(sample["metrics"]["bg_mse"], float)

    board = json.loads(cli("leaderboard", "--metric", "bg_mse", "--json").stdout)
    assert {row["technique"] for row in board} == {"blended", "vanilla"}
    assert all(isinstance(row["metrics"]["bg_mse"], float) for row in board)
    assert board[0]["metrics"]["bg_mse"] <= board[1]["metrics"]["bg_mse"] and board[0]["rank"] == 1

    rows = list(csv.DictReader(io.StringIO(cli("leaderboard", "--csv").stdout)))
    assert [float(r["bg_mse"]) for r in rows] == [row["metrics"]["bg_mse"] for row in board]

    human = cli("runs", "show", "1").stdout
    assert "blended" in human and "astronaut-helmet" in human
    assert "leaderboard by bg_psnr" in cli("leaderboard", "--metric", "bg_psnr").stdout


@pytest.mark.slow
def test_demo_runs_every_technique_and_prints_the_leaderboard(cli):
    from engine.techniques import technique_names

    board = json.loads(cli("demo", "--steps", "2", "--json").stdout)
    assert sorted(row["technique"] for row in board) == sorted(technique_names())
    assert all(row["samples_done"] == 6 for row in board)
    again = cli("demo", "--steps", "2", "--no-tui")
    assert len(json.loads(cli("runs", "list", "--json").stdout)) == 2 * len(board)  # a second demo adds runs,
    assert len(json.loads(cli("samples", "list", "--json").stdout)) == 6  # not samples
    # it ends with how to judge its runs; the simulated raters it offers rank all of them
    hint = next(line for line in again.stderr.splitlines() if "inpaint-tui judge --runs" in line)
    runs = hint.split("--runs ")[1].split()[0]
    assert len(runs.split(",")) == len(board)
    cli("judge", "--runs", runs, "--simulate", "bg_mse", "--raters", "3")
    result = json.loads(cli("judge", "results", "1", "--json").stdout)
    assert sorted(row["run_id"] for row in result["ranking"]) == sorted(map(int, runs.split(",")))
    assert result["judgements"] == 3 * 6 * len(board) * (len(board) - 1) // 2


def test_techniques_and_models_listings(cli):
    techniques = json.loads(cli("techniques", "--json").stdout)
    blended = next(t for t in techniques if t["name"] == "blended")
    assert {p["name"]: p["default"] for p in blended["params"]} == {"blend_start": 0.0, "progressive_shrink": 0}
    assert {"background", "post_condition"} <= {p["name"] for p in blended["options"]}
    models = {m["name"]: m for m in json.loads(cli("models", "--json").stdout)}
    assert models["tiny"]["available_offline"] is True
    assert models["sd15"]["inpaint"].endswith("stable-diffusion-inpainting")
    assert "progressive_shrink" in cli("techniques").stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["run", "-t", "magic"], 2, "unknown technique 'magic'"),
        (["run", "-t", "blended", "-p", "progressive_shrink=two"], 2, "blended: parameter 'progressive_shrink': expected an integer"),
        (["run", "-t", "blended", "-p", "shrink=2"], 2, "unknown parameter 'shrink'"),
        (["run", "-t", "blended", "-p", "blend_start=1.5"], 2, "above the maximum"),
        (["run", "-t", "blended", "--model", "nonsense"], 2, "unknown model 'nonsense'"),
        (["run", "-t", "blended", "--samples", "nope"], 1, "no sample set named 'nope'"),
        (["run", "-t", "blended", "--steps", "0"], 2, "greater than or equal to 1"),
        (["runs", "show", "99"], 1, "no run with id 99"),
        (["leaderboard", "--metric", "beauty"], 2, "unknown metric 'beauty'"),
        (["samples", "import", "somewhere"], 1, "unknown sample source 'somewhere'"),
        (["runs", "show", "abc"], 2, ""),
        (["frobnicate"], 2, ""),
        (["runs", "cancel", "99"], 1, "no run with id 99"),
        (["runs", "resume", "99"], 1, "no run with id 99"),
        (["runs", "delete", "99", "--yes"], 1, "no run with id 99"),
        (["run", "-t", "blended", "--animation", "mp4"], 2, "animation must be one of gif, webp"),
        (["run", "-t", "blended", "--dtype", "fp64"], 2, "dtype must be fp16, bf16 or fp32, got 'fp64'"),
        (["sweep", "-t", "magic"], 2, "unknown technique 'magic'"),
        (["sweep", "-t", "blended", "-p", "shrink=0,1"], 2, "technique 'blended' has no parameter 'shrink'"),
        (["sweep", "-t", "blended", "-p", "progressive_shrink=0,x"], 2, "expected an integer"),
        (["sweep", "-t", "blended", "--steps", "2,,3"], 2, "--steps: empty value"),
        (["sweep", "-t", "blended", "--seeds", "a"], 2, "whole numbers"),
        (["sweeps", "show", "5"], 1, "no sweep with id 5"),
        (["worker", "--gpus", "a,b"], 2, "--gpus must list GPU indices"),
    ],
)
def test_misuse_exits_non_zero_with_a_clear_message(cli, args, code, message):
    cli("samples", "import", "demo")
    result = cli(*args, expect=code)
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unavailable_preset_fails_fast_and_suggests_tiny(cli):
    cli("samples", "import", "demo")
    result = cli("run", "-t", "vanilla", "--model", "sd15", "--steps", "2", expect=1)
    assert "not in the local cache" in result.stderr and "--model tiny" in result.stderr
    assert json.loads(cli("runs", "list", "--json").stdout) == []  # refused before queueing


def _subprocess(*args, db, env_extra=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=env, timeout=300, cwd=Path(db).parent)


@pytest.mark.slow
def test_console_script_json_stdout_is_pure_json_and_env_db_works(tmp_path):
    db = tmp_path / "via-env.db"
    result = _subprocess("samples", "import", "demo", "--json", db=db, env_extra={"INPAINT_TUI_DB": str(db)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["report"]["added"] == 6
    assert db.is_file() and (tmp_path / "via-env_data").is_dir()
    run = _subprocess("run", "-t", "blended", "--steps", "2", "--json", db=db, env_extra={"INPAINT_TUI_DB": str(db)})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["run"]["status"] == "finished"  # progress went to stderr only


def test_console_script_misuse_exit_code(tmp_path):
    result = _subprocess("--db", str(tmp_path / "x.db"), "run", "-t", "nope", db=tmp_path / "x.db")
    assert result.returncode == 2 and "unknown technique 'nope'" in result.stderr


def test_default_database_is_in_the_working_directory(tmp_path):
    result = _subprocess("samples", "sets", "--json", db=tmp_path / "experiments.db")
    assert result.returncode == 0 and json.loads(result.stdout) == []
    assert (tmp_path / "experiments.db").is_file()


def _all_techniques():
    from engine.techniques import technique_names

    return technique_names()


@pytest.mark.slow
@pytest.mark.parametrize("technique", _all_techniques())
def test_every_technique_runs_from_the_cli_with_an_option(cli, technique):
    cli("samples", "import", "demo")
    run_id = int(cli("run", "-t", technique, "-p", "background=paste", "--steps", "2").stdout.strip())
    detail = json.loads(cli("runs", "show", str(run_id), "--json").stdout)
    assert detail["run"]["status"] == "finished" and detail["run"]["params"]["background"] == "paste"
    assert all(s["metrics"]["bg_mse"] == 0.0 and s["metrics"]["unet_calls"] >= 1 for s in detail["samples"])


@pytest.mark.parametrize(
    "option", ["background=feather", "background=poisson", "background=decoder", "post_condition=true"]
)
@pytest.mark.slow
def test_every_option_runs_from_the_cli(cli, option):
    cli("samples", "import", "demo")
    extra = ["-p", "decoder_steps=2"] if option.endswith("decoder") else []
    run_id = int(cli("run", "-t", "blended", "-p", option, *extra, "--steps", "2").stdout.strip())
    assert json.loads(cli("runs", "show", str(run_id), "--json").stdout)["run"]["status"] == "finished"


def test_execution_flags_are_recorded_as_run_options_and_the_run_uses_them(cli):
    from engine.models import load_model
    from engine.options import Execution

    cli("samples", "import", "demo")
    run_id = int(cli("run", "-t", "blended", "--steps", "1", "--metrics", "background", "--vae-tiling",
                     "--no-channels-last").stdout.strip())
    # The foreground worker ran in this process on the cached tiny model (the one a CPU
    # load_model returns: the cache keeps the model just used), configured as asked.
    model = load_model("tiny", device="cpu")
    try:
        assert model.execution == Execution(channels_last=False, vae_tiling=True)
    finally:
        model.configure(Execution())
    detail = json.loads(cli("runs", "show", str(run_id), "--json").stdout)
    assert detail["run"]["status"] == "finished"
    assert {key: detail["run"]["options"].get(key) for key in Execution.OPTIONS} == {
        "vae_tiling": True, "channels_last": False, "compile": None}
    assert "vae_tiling=True" in cli("runs", "show", str(run_id)).stdout


@pytest.mark.slow
def test_every_technique_and_option_runs_on_the_tiny_sdxl_family_from_the_cli(cli):
    """Each technique on the SDXL family (a sweep of all of them, pasted background: the
    background pixels are the input's), then the other options on one run."""
    cli("samples", "import", "demo")
    swept = json.loads(cli("sweep", "-t", "all", "--model", "tiny-sdxl", "--steps", "2", "-p", "background=paste",
                           "--metrics", "background", "--json").stdout)
    assert len(swept["new"]) == 6
    for run_id in swept["new"]:
        detail = json.loads(cli("runs", "show", str(run_id), "--json").stdout)
        assert detail["run"]["status"] == "finished" and detail["run"]["model"] == "tiny-sdxl"
        assert all(s["metrics"]["bg_mse"] == 0.0 and s["metrics"]["unet_calls"] >= 2 for s in detail["samples"])
    run_id = int(cli("run", "-t", "blended", "--model", "tiny-sdxl", "--steps", "2", "-p", "post_condition=true",
                     "-p", "resize=crop", "-p", "background=poisson", "--metrics", "background").stdout.strip())
    assert json.loads(cli("runs", "show", str(run_id), "--json").stdout)["run"]["status"] == "finished"


@pytest.mark.slow
def test_the_flux_family_from_the_cli_runs_what_applies_with_its_guidance_and_refuses_the_rest(cli):
    """`sweep -t all` on tiny-flux is the techniques that apply (vanilla, blended, tdpaint),
    each with FLUX's distilled default guidance (Fill's 30 for vanilla, 3.5 otherwise);
    a technique that does not apply, and a negative prompt, are one line and exit 2."""
    cli("samples", "import", "demo")
    swept = json.loads(cli("sweep", "-t", "all", "--model", "tiny-flux", "--steps", "2", "-p", "background=paste",
                           "--metrics", "background", "--json").stdout)
    runs = {run["technique"]: run for run in json.loads(cli("runs", "list", "--json").stdout)}
    assert len(swept["new"]) == 3 and set(runs) == {"vanilla", "blended", "tdpaint"}
    assert {name: run["guidance"] for name, run in runs.items()} == {"vanilla": 30.0, "blended": 3.5, "tdpaint": 3.5}
    assert {run["status"] for run in runs.values()} == {"finished"}
    refused = cli("run", "-t", "repaint", "--model", "tiny-flux", expect=2)
    assert "technique 'repaint' does not apply to model 'tiny-flux' (flux family)" in refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout
    negative = cli("run", "-t", "blended", "--model", "tiny-flux", "--negative-prompt", "blurry", expect=2)
    assert "takes no negative prompt" in negative.stderr


@pytest.mark.slow
def test_sweep_queues_the_grid_runs_it_and_reuses_finished_runs(cli):
    cli("samples", "import", "demo")
    grid = ["sweep", "-t", "blended", "-p", "progressive_shrink=0,1", "-p", "blend_start=0,0.25", "--steps", "2",
            "--metrics", "background", "--json"]
    dry = cli(*grid[:-1], "--dry-run").stdout
    assert dry.count("blended") == 4 and json.loads(cli("runs", "list", "--json").stdout) == []

    first = json.loads(cli(*grid).stdout)
    assert len(first["new"]) == 4 and first["reused"] == []
    runs = {r["id"]: r for r in json.loads(cli("runs", "list", "--json").stdout)}
    assert {r["status"] for r in runs.values()} == {"finished"}
    assert sorted((r["params"]["progressive_shrink"], r["params"]["blend_start"]) for r in runs.values()) == [
        (0, 0.0), (0, 0.25), (1, 0.0), (1, 0.25)]

    again = json.loads(cli(*grid).stdout)
    assert again["new"] == [] and again["reused"] == first["new"]
    forced = json.loads(cli(*grid, "--force").stdout)
    assert len(forced["new"]) == 4 and not set(forced["new"]) & set(first["new"])

    sweeps = json.loads(cli("sweeps", "list", "--json").stdout)
    assert [len(s["run_ids"]) for s in sweeps] == [4, 4, 4] and [sum(s["reused"]) for s in sweeps] == [0, 4, 0]
    shown = cli("sweeps", "show", str(sweeps[0]["id"])).stdout
    assert "progressive_shrink=1 blend_start=0.25" in shown and "finished" in shown
    every = cli("sweep", "-t", "all", "--steps", "2", "--dry-run").stdout
    assert all(name in every for name in ("vanilla", "blended", "tdpaint", "repaint", "latentpaint", "diffdiff"))


@pytest.mark.slow
def test_runs_cancel_delete_and_workers_from_the_cli(cli, tmp_path):
    cli("samples", "import", "demo")
    run_id = cli("run", "-t", "blended", "--steps", "2", "--metrics", "background").stdout.strip()
    assert "already ended (finished)" in cli("runs", "cancel", run_id, expect=1).stderr
    assert "nothing to resume" in cli("runs", "resume", run_id, expect=1).stderr
    # The foreground run was its own worker, listed once it stopped.
    assert json.loads(cli("workers", "--json").stdout) == []
    ended = json.loads(cli("workers", "--all", "--json").stdout)
    assert [(w["kind"], w["status"]) for w in ended] == [("foreground", "stopped")]
    assert json.loads(cli("runs", "show", run_id, "--json").stdout)["run"]["worker_id"] == ended[0]["id"]

    cli("runs", "tag", run_id, "paper", "draft", "-r", "nothing")
    cli("runs", "tag", run_id, "baseline", "--remove", "draft")
    cli("runs", "note", run_id, "  first try; seams visible  ")
    shown = json.loads(cli("runs", "show", run_id, "--json").stdout)["run"]
    assert (shown["tags"], shown["note"]) == (["baseline", "paper"], "first try; seams visible")
    assert "single words" in cli("runs", "tag", run_id, "two words", expect=1).stderr

    assert "needs confirmation: pass --yes" in cli("runs", "delete", run_id, expect=2).stderr
    assert "deleted (6 files)" in cli("runs", "delete", run_id, "--yes").stderr
    assert json.loads(cli("runs", "list", "--json").stdout) == []
    assert not (tmp_path / "experiments_data" / "runs" / run_id).exists()
