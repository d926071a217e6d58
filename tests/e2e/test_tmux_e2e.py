"""End to end in a real terminal: `inpaint-tui` in tmux on a database with a running run;
navigate to the leaderboard and to a run's detail; read the screen with `capture-pane`.

Run by hand to refresh the README's capture:
    INPAINT_TUI_CAPTURE=docs/tui-dashboard.txt pytest tests/e2e/test_tmux_e2e.py
"""

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

BIN = Path(sys.executable).with_name("inpaint-tui")

# real worker processes / a real terminal: minutes
pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True, timeout=30).stdout


def _screen(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session)


def _wait_for_text(session: str, *needles: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = _screen(session)
        if all(needle in screen for needle in needles):
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"{needles} not on screen:\n{screen}")
        time.sleep(0.2)


@pytest.fixture(params=[(120, 40), (80, 24)], ids=["120x40", "80x24"])
def session(tui_store, request):
    name = f"inpaint-{uuid.uuid4().hex[:8]}"
    db = tui_store.url.removeprefix("sqlite:///")
    command = f"{BIN} --db {db} --image-protocol halfcell"
    width, height = request.param
    # COLUMNS/LINES as pytest may have set them would override the pane's real size.
    env = {"HF_HUB_OFFLINE": "1", "TERM": "xterm-256color", "COLUMNS": str(width), "LINES": str(height)}
    if os.environ.get("PYTHONPATH"):  # the code under test, where it is not the installed one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    _tmux("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
          *[item for key, value in env.items() for item in ("-e", f"{key}={value}")], command)
    yield name, width
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def test_tui_in_tmux_dashboard_leaderboard_and_run_detail(session, tui_store):
    session, width = session
    ids = tui_store.ids
    _wait_for_text(session, "Active runs", "chelsea-eyes", "7/20", "queued", "alive", "Latest results")

    _tmux("send-keys", "-t", session, "l")
    board = _wait_for_text(session, "bg_mse", "tdpaint", "vanilla")
    best = tui_store.leaderboard("bg_mse", descending=False)[0]
    assert f"{best.metrics['bg_mse']:.4f}" in board

    _tmux("send-keys", "-t", session, "r")
    _wait_for_text(session, "filter:", "finished_with_errors")
    time.sleep(0.5)
    _tmux("send-keys", "-t", session, "/")
    time.sleep(0.5)  # the filter has focus: letters go into it, not to the app's bindings
    _tmux("send-keys", "-t", session, "latentpaint")
    _wait_for_text(session, "latentpaint  ")
    _tmux("send-keys", "-t", session, "Enter")
    time.sleep(0.5)
    _tmux("send-keys", "-t", session, "Enter")
    if width >= 120:
        detail = _wait_for_text(session, "reproduce", "input + mask", "RuntimeError: boom")
    else:  # short: the configuration scrolls in a few lines and the per-sample rows keep their room
        detail = _wait_for_text(session, "config hash", "input + mask", "RuntimeError", "coins-large")
    assert f"run {ids['with_errors']}" in detail and "camera-tripod" in detail

    # an area key from a screen stacked on another area's opens that area's main screen
    _tmux("send-keys", "-t", session, "l")
    _wait_for_text(session, "bg_mse", "tdpaint", "Compare")
    _tmux("send-keys", "-t", session, "r")
    _wait_for_text(session, "sorted by id", "Clone")  # the runs list, not the run detail stacked on it
    _tmux("send-keys", "-t", session, "?")
    keys = _wait_for_text(session, "Runs screen", "runs.filter")
    assert "Clone" in keys
    _tmux("send-keys", "-t", session, "Escape")
    _wait_for_text(session, "sorted by id", "Clone")
    lines = _screen(session).splitlines()
    assert all(len(line) <= width for line in lines) and "Quit" in lines[-1]  # the footer fits, its end shown
    capture = os.environ.get("INPAINT_TUI_CAPTURE")
    if capture and width >= 120:
        _tmux("send-keys", "-t", session, "d")
        Path(capture).write_text(_wait_for_text(session, "Active runs", "chelsea-eyes"))

    _tmux("send-keys", "-t", session, "q")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode != 0:
            break  # the app quit and its session closed
        time.sleep(0.2)
    else:
        raise AssertionError("inpaint-tui did not quit on q")


def test_a_judging_session_in_tmux_leaves_and_resumes(tui_store):
    """`inpaint-tui judge` in a real 80×24 terminal: answer, take back, answer, leave with
    escape (the command prints where the study stands), come back and carry on."""
    vanilla, blended, _ = tui_store.ids["finished"]
    db = tui_store.url.removeprefix("sqlite:///")
    env = {"HF_HUB_OFFLINE": "1", "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    command = (f"{BIN} --db {db} --image-protocol halfcell judge --runs {vanilla},{blended} --rater e2e; "
               "echo EXIT=$?; sleep 60")
    for attempt, steps in enumerate((("1", "u", "2", "t"), ("Right",))):
        name = f"judge-{uuid.uuid4().hex[:8]}"
        _tmux("new-session", "-d", "-s", name, "-x", "80", "-y", "24",
              *[item for key, value in env.items() for item in ("-e", f"{key}={value}")], "sh", "-c", command)
        try:
            answered = len(tui_store.judgements(1)) if attempt else 0
            screen = _wait_for_text(name, "Which output fills", "input, mask outlined", f"yours {answered}")
            assert "vanilla" not in screen and "blended" not in screen
            for key in steps:
                _tmux("send-keys", "-t", name, key)
                answered += -1 if key == "u" else 1
                _wait_for_text(name, f"yours {answered} ")
            _tmux("send-keys", "-t", name, "Escape")
            done = _wait_for_text(name, "EXIT=0")
            assert f"study 1: {answered} of 6 judgements, 0 skipped" in done.replace("\n", " ")
        finally:
            subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    assert [j.outcome for j in tui_store.judgements(1)] == ["right", "tie", "right"]
    assert "human" in tui_store.run_metrics([vanilla])[1][vanilla]  # leaving refreshed the scores
