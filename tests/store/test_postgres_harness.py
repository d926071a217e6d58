"""The PostgreSQL half of the tests skips where no server can be started, naming why, and fails
instead under CI (CI=true): a CI machine that lost its PostgreSQL must not pass quietly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgres import BIN_ENV

ROOT = Path(__file__).resolve().parents[2]
# Any test that needs the server; here no server can start, so it never runs.
NEEDS_SERVER = "tests/store/test_store.py::test_a_store_reconnects_once_its_server_is_back"


@pytest.mark.parametrize("ci, outcome", [("false", "1 skipped"), ("true", "1 error")])
def test_no_server_skips_with_the_reason_except_under_ci(tmp_path, ci, outcome):
    env = {**os.environ, "CI": ci, BIN_ENV: str(tmp_path / "no-postgres-here")}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", NEEDS_SERVER],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert outcome in result.stdout, result.stdout + result.stderr
    assert f"{BIN_ENV}={tmp_path / 'no-postgres-here'} holds no initdb" in result.stdout
    if ci == "true":
        assert "PostgreSQL is required under CI" in result.stdout and result.returncode == 1
