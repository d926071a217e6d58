"""Layering guards: the CLI's help and the faces never load torch; engine/ never loads the
store, Typer or Textual. Checked in fresh interpreters (sys.modules) and in the source (AST),
so an import hidden in a function body is caught too."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "diffusers", "transformers", "textual", "torchmetrics")


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_cli_help_loads_neither_torch_nor_textual():
    loaded = _modules_after(
        "from inpaint_tui.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code"
    )
    assert "typer" in loaded  # the probe really ran the CLI
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_listing_commands_stay_light():
    loaded = _modules_after(
        "from inpaint_tui.cli import app\n"
        "for args in (['techniques', '--json'], ['models', '--json']):\n"
        "    try:\n        app(args)\n    except SystemExit as e:\n        assert e.code == 0, e.code"
    )
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_engine_loads_no_face_and_no_store():
    loaded = _modules_after("import engine, engine.runner, engine.techniques, engine.models, engine.demo, engine.metrics")
    assert "torch" in loaded  # the runner really was imported
    assert not loaded & {"typer", "textual", "sqlmodel", "sqlalchemy", "alembic", "inpaint_tui"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_engine_sources_never_import_faces_or_store():
    for path in (ROOT / "engine").rglob("*.py"):
        bad = _imported_roots(path) & {"typer", "textual", "sqlmodel", "sqlalchemy", "alembic", "inpaint_tui"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_store_never_imports_engine_or_faces():
    for path in (ROOT / "inpaint_tui" / "store").rglob("*.py"):
        bad = _imported_roots(path) & {"engine", "torch", "typer", "textual"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
