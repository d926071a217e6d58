"""Listings at the scale of a paper's experiments: 50 000 runs in one SQLite store, built in
bulk (tests/scale_database.py). More runs than SQLite binds in one query (32 766 on stock
builds), so nothing may pass every run id as a parameter; the answers are checked against
plain SQL on the same file."""

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from tests import scale_database

RUNS = 50_000


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scale")
    store = scale_database.build(folder / "big.db", RUNS)
    yield folder / "big.db", store
    store.close()


def _cli(db, *args):
    from inpaint_tui.cli import app

    result = CliRunner().invoke(app, ["--db", str(db), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.slow
def test_runs_list_and_leaderboard_json_at_fifty_thousand_runs(big):
    db, store = big
    with sqlite3.connect(db) as raw:
        stored = {(run_id, name): value for run_id, name, value in raw.execute(
            "SELECT run_id, name, value FROM run_metric")}
        finished = raw.execute("SELECT r.id, m.value FROM run r JOIN run_metric m ON m.run_id = r.id "
                               "AND m.name = 'bg_mse' WHERE r.status IN ('finished', 'finished_with_errors') "
                               "ORDER BY m.value, r.id").fetchall()
        unranked = [run_id for (run_id,) in raw.execute(  # finished without the metric: last, by id
            "SELECT id FROM run WHERE status IN ('finished', 'finished_with_errors') AND id NOT IN "
            "(SELECT run_id FROM run_metric WHERE name = 'bg_mse') ORDER BY id")]
    listed = json.loads(_cli(db, "runs", "list", "--json"))
    assert [run["id"] for run in listed] == list(range(1, RUNS + 1))
    for run in listed[:: RUNS // 50]:  # every metric of a run as the table holds it
        assert run["metrics"] == {name: value for (run_id, name), value in stored.items() if run_id == run["id"]}
    board = json.loads(_cli(db, "leaderboard", "--json"))
    assert [row["run_id"] for row in board] == [run_id for run_id, _ in finished] + unranked  # lower bg_mse first
    assert unranked and "bg_mse" not in board[-1]["metrics"]
    assert [row["rank"] for row in board[:3]] == [1, 2, 3] and board[0]["metrics"]["bg_mse"] == finished[0][1]


@pytest.mark.slow
def test_every_runs_metrics_and_details_at_fifty_thousand_runs(big):
    """The TUI runs screen's full reload (every run's metrics, no ids bound) and export's
    details (a fixed number of queries per 5000 runs) past SQLite's bound-parameter cap."""
    from sqlalchemy import event

    from inpaint_tui.store.metrics import IDS_PER_QUERY

    db, store = big
    values = store.run_metric_values()
    assert len(values) == RUNS
    with sqlite3.connect(db) as raw:
        assert values[RUNS] == dict(raw.execute("SELECT name, value FROM run_metric WHERE run_id = ?", (RUNS,)))
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(store.engine, "before_cursor_execute", listener)
    try:
        details = store.run_details(range(RUNS - 12_000 + 1, RUNS + 1))
    finally:
        event.remove(store.engine, "before_cursor_execute", listener)
    assert len(details) == 12_000 and all(len(detail.samples) == 6 for detail in details)
    assert len(statements) == 7 * -(-12_000 // IDS_PER_QUERY)
    assert details[-1].metrics == values[RUNS]
