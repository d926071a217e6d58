"""Layering guards: the CLI's help and the faces never load torch; engine/ never loads the
store, Typer or Textual; no two modules of engine/ or inpaint_tui/ import each other, directly
or round a loop. Checked in fresh interpreters (sys.modules) and in the source (AST), so an
import hidden in a function body is caught too."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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
    # Nor numpy/scipy: the defaults and the metric catalogue it reads are plain Python.
    assert not loaded & {"numpy", "scipy", "PIL"}, loaded & {"numpy", "scipy", "PIL"}


def test_listing_commands_stay_light():
    loaded = _modules_after(
        "from inpaint_tui.cli import app\n"
        "for args in (['techniques', '--json'], ['models', '--json']):\n"
        "    try:\n        app(args)\n    except SystemExit as e:\n        assert e.code == 0, e.code"
    )
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_listing_runs_of_an_up_to_date_database_loads_neither_alembic_nor_numpy(tmp_path):
    """Start-up: an up-to-date store is checked with two reads, without Alembic; listing runs
    needs no image library. The first open (which creates the schema) does load Alembic."""
    db = tmp_path / "e.db"
    code = (
        "from inpaint_tui.cli import app\n"
        f"try:\n    app(['--db', {str(db)!r}, 'runs', 'list'])\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code"
    )
    assert "alembic" in _modules_after(code)  # creates the schema: the probe sees Alembic when it is used
    loaded = _modules_after(code)
    assert "sqlalchemy" in loaded
    assert not loaded & {"alembic", "numpy", "PIL", *HEAVY}, loaded & {"alembic", "numpy", "PIL", *HEAVY}


def test_cli_help_and_worker_help_load_no_ray():
    loaded = _modules_after(
        "from inpaint_tui.cli import app\n"
        "for args in (['--help'], ['worker', '--help'], ['workers', '--help']):\n"
        "    try:\n        app(args)\n    except SystemExit as e:\n        assert e.code == 0, e.code"
    )
    assert "typer" in loaded and "ray" not in loaded


def test_only_the_ray_workers_module_imports_ray():
    """Ray is an optional extra: one module uses it, and imports it only when called."""
    sources = [path for top in ("engine", "inpaint_tui") for path in (ROOT / top).rglob("*.py")]
    importers = {str(path.relative_to(ROOT)) for path in sources if "ray" in _imported_roots(path)}
    assert importers == {"inpaint_tui/jobs/ray_workers.py"}
    tree = ast.parse((ROOT / "inpaint_tui/jobs/ray_workers.py").read_text())
    top_level = {alias.name.split(".")[0] for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                 for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert "ray" not in top_level


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


# Cycles tolerated, each exactly as it stands (a cycle that grows or a new one fails): none.
ALLOWED_CYCLES: set[frozenset[str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the repo modules it imports anywhere in its source (function bodies and
    TYPE_CHECKING blocks too). `from pkg import name` imports pkg, and pkg.name when that is
    a module; parent packages a dotted import runs are not counted (their __init__ is its own
    node)."""
    paths = {_module_name(p): p for top in ("engine", "inpaint_tui") for p in (ROOT / top).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets.add(base)
                targets |= {f"{base}.{alias.name}" for alias in node.names}
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    graph = _import_graph()
    assert "engine.techniques.registry" in graph and graph["engine.runner"]  # the walk saw the tree
    cycles = [c for c in _cycles(graph) if frozenset(c) not in ALLOWED_CYCLES]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)
