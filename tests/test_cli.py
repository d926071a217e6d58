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


def test_demo_runs_every_technique_and_prints_the_leaderboard(cli):
    from engine.techniques import technique_names

    board = json.loads(cli("demo", "--steps", "2", "--json").stdout)
    assert sorted(row["technique"] for row in board) == sorted(technique_names())
    assert all(row["samples_done"] == 6 for row in board)
    again = json.loads(cli("demo", "--steps", "2", "--json").stdout)
    assert len(again) == len(board)  # a second demo adds runs, not samples
    assert len(json.loads(cli("samples", "list", "--json").stdout)) == 6


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
    assert json.loads(cli("runs", "list", "--json").stdout)[0]["status"] == "failed"


def _subprocess(*args, db, env_extra=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=env, timeout=300, cwd=Path(db).parent)


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
def test_every_option_runs_from_the_cli(cli, option):
    cli("samples", "import", "demo")
    extra = ["-p", "decoder_steps=2"] if option.endswith("decoder") else []
    run_id = int(cli("run", "-t", "blended", "-p", option, *extra, "--steps", "2").stdout.strip())
    assert json.loads(cli("runs", "show", str(run_id), "--json").stdout)["run"]["status"] == "finished"
