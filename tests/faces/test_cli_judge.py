"""`inpaint-tui judge` from the command line, on a copy of the TUI database (finished runs
with outputs and per-sample metrics, no torch): simulated raters, results (text and JSON,
the same figures as the analysis), the human column in the leaderboard, export and report,
and bad input as one line with a non-zero exit."""

import json

import pytest
from typer.testing import CliRunner

from inpaint_tui.cli import app
from inpaint_tui.read.export import read_export, summary_path


@pytest.fixture
def judge_cli(tui_store):
    runner = CliRunner()
    db = tui_store.url.removeprefix("sqlite:///")

    def invoke(*args: str, expect: int = 0, input: str | None = None):
        result = runner.invoke(app, ["--db", db, *args], input=input)
        assert result.exit_code == expect, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        return result

    invoke.store = tui_store
    return invoke


def test_simulated_raters_rank_the_runs_by_their_metric_and_results_say_so(judge_cli):
    store = judge_cli.store
    vanilla, blended, tdpaint = store.ids["finished"]  # bg_mse: blended < tdpaint < vanilla
    runs = f"{vanilla},{blended},{tdpaint}"
    out = judge_cli("judge", "--runs", runs, "--simulate", "bg_mse", "--raters", "3", "--noise", "0.2").stdout
    assert "study 1 (new): 54 answers from 3 simulated rater(s)" in out
    assert "Bradley–Terry" in out and "Win rate" in out and "Krippendorff's α" in out and "Position: the left" in out

    data = json.loads(judge_cli("judge", "results", "1", "--json").stdout)
    assert [row["run_id"] for row in data["ranking"]] == [blended, tdpaint, vanilla]
    assert data["judgements"] == 54 and data["simulated"] and data["raters"] == ["sim-1", "sim-2", "sim-3"]
    bg_mse = next(m for m in data["metric_agreement"] if m["metric"] == "bg_mse")
    assert bg_mse["share"] > 0.9 and bg_mse["ci_low"] <= bg_mse["share"] <= bg_mse["ci_high"]
    assert data["win_matrix"][str(blended)][str(vanilla)] > 0.9
    ranking = {row["run_id"]: row for row in data["ranking"]}
    assert sum(row["theta"] for row in data["ranking"]) == pytest.approx(0, abs=1e-9)

    board = json.loads(judge_cli("leaderboard", "--metric", "human", "--json").stdout)
    assert [row["run_id"] for row in board[:3]] == [blended, tdpaint, vanilla]
    human = board[0]["summaries"]["human"]
    assert human["value"] == pytest.approx(ranking[blended]["theta"])
    assert (human["ci_low"], human["ci_high"]) == pytest.approx((ranking[blended]["ci_low"], ranking[blended]["ci_high"]))
    assert "human" not in board[3]["metrics"]  # a run nobody judged has no human score, not 0

    text = judge_cli("leaderboard", "--metric", "human").stdout
    assert "human ↑" in text and "comparable within one study" not in text  # one study: nothing to warn of

    listed = json.loads(judge_cli("judge", "list", "--json").stdout)
    assert [(s["id"], s["trials"], s["judgements"], s["simulated_raters"]) for s in listed] == \
        [(1, 18, 54, ["sim-1", "sim-2", "sim-3"])]


def test_export_and_report_carry_the_human_score_and_the_study(judge_cli, tmp_path):
    store = judge_cli.store
    vanilla, blended, tdpaint = store.ids["finished"]
    judge_cli("judge", "--runs", f"{vanilla},{blended},{tdpaint}", "--simulate", "bg_mse", "--raters", "2")
    # a second study over two of them: their column now mixes studies, and says so
    judge_cli("judge", "--runs", f"{vanilla},{blended}", "--simulate", "bg_psnr")

    judge_cli("export", str(vanilla), str(blended), str(tdpaint), "--out", str(tmp_path / "runs.csv"))
    rows = {row["run_id"]: row for row in read_export(summary_path(tmp_path / "runs.csv"))}
    summaries = store.run_metrics([vanilla, blended, tdpaint])[1]
    for run_id in (vanilla, blended, tdpaint):
        human = summaries[run_id]["human"]
        assert rows[run_id]["metric.human"] == pytest.approx(human.value)
        assert (rows[run_id]["metric.human.ci_low"], rows[run_id]["metric.human.ci_high"]) == \
            pytest.approx((human.ci_low, human.ci_high))
        assert rows[run_id]["metric.human.note"] == human.note
    assert rows[vanilla]["metric.human.note"].startswith("study 2:")
    assert rows[tdpaint]["metric.human.note"].startswith("study 1:")

    judge_cli("report", str(vanilla), str(blended), str(tdpaint), "--out", str(tmp_path / "report"))
    page = (tmp_path / "report" / "report.md").read_text()
    assert "## Human judgements (study 1)" in page and "## Human judgements (study 2)" in page
    assert "(study 2)" in page and f"runs {vanilla}, {blended} from study 2" in page
    html = (tmp_path / "report" / "index.html").read_text()
    assert 'class="human-ranking"' in html and 'class="metric-agreement"' in html


def test_judging_needs_a_terminal_and_names_bad_input(judge_cli):
    store = judge_cli.store
    vanilla, blended, _ = store.ids["finished"]
    for args, code, message in (
        (["judge"], 2, "--runs: name the runs"),
        (["judge", "--runs", "1,x"], 2, "--runs: run ids are whole numbers"),
        (["judge", "--runs", f"{vanilla}", "--simulate", "bg_mse"], 2, "at least two runs"),
        (["judge", "--runs", f"{vanilla},999", "--simulate", "bg_mse"], 1, "no run with id 999"),
        (["judge", "--runs", f"{vanilla},{blended}", "--simulate", "kid"], 2, "--simulate: kid has one value per run"),
        (["judge", "--runs", f"{vanilla},{blended}", "--simulate", "nope"], 2, "unknown metric 'nope'"),
        (["judge", "--runs", f"{vanilla},{blended}"], 2, "the TUI needs a terminal"),
        (["judge", "--runs", f"{vanilla},{blended}", "--rater", "sim-1"], 2, "--rater: names starting with 'sim-'"),
        (["judge", "--runs", f"{vanilla},{blended}", "--rater", " "], 2, "--rater: a judging session needs"),
        (["judge", "results", "42"], 1, "no study with id 42"),
    ):
        result = judge_cli(*args, expect=code)
        assert message in result.stderr and "Traceback" not in result.stderr, args
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert store.studies() == []  # a refused call leaves no half-made study behind


def test_deleting_a_study_asks_and_a_judged_run_is_kept(judge_cli):
    store = judge_cli.store
    vanilla, blended, _ = store.ids["finished"]
    judge_cli("judge", "--runs", f"{vanilla},{blended}", "--simulate", "bg_mse")
    refused = judge_cli("runs", "delete", str(vanilla), "--yes", expect=1)
    assert "judging study 1" in refused.stderr and "judge delete 1" in refused.stderr
    judge_cli("judge", "delete", "1", input="n\n", expect=1)
    assert store.study(1).judgements == 6
    out = judge_cli("judge", "delete", "1", "--yes").stdout
    assert "deleted study 1 with its 6 answers" in out
    assert "human" not in store.run_metrics([vanilla])[1][vanilla]
    judge_cli("runs", "delete", str(vanilla), "--yes")


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_the_raw_judgements_export_one_row_per_answer(judge_cli, tmp_path, suffix):
    from inpaint_tui.jobs.judging import JudgingSession

    store = judge_cli.store
    vanilla, blended, _ = store.ids["finished"]
    judge_cli("judge", "--runs", f"{vanilla},{blended}", "--simulate", "bg_mse")
    session = JudgingSession(store, 1, "alice")
    session.next()
    session.answer("skip")
    out = judge_cli("judge", "export", "1", "--out", str(tmp_path / f"answers.{suffix}")).stdout
    assert "(7 answers)" in out
    rows = read_export(tmp_path / f"answers.{suffix}")
    stored = store.judgements(1)
    assert [row["judgement_id"] for row in rows] == [j.id for j in stored]
    for row, judgement in zip(rows, stored):
        assert (row["left_run_id"], row["right_run_id"], row["outcome"], row["rater"], row["simulated"]) == \
            (judgement.left, judgement.right, judgement.outcome, judgement.rater, judgement.simulated)
        assert row["winner_run_id"] == judgement.winner and row["seconds"] == judgement.seconds
    assert rows[-1]["outcome"] == "skip" and rows[-1]["winner_run_id"] is None and rows[-1]["rater"] == "alice"
    judge_cli("judge", "export", "1", "--out", str(tmp_path / "answers.xlsx"), expect=2)
