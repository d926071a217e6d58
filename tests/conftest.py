"""Shared fixtures. Tests never touch the network: the hub is forced offline before any
library that could reach it is imported."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("INPAINT_TUI_DB", None)
os.environ.pop("INPAINT_TUI_DATA", None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model():
    import torch

    from engine.models import load_model

    # Pixel-exact comparisons need a fixed thread count (reductions differ across counts).
    torch.set_num_threads(2)
    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def tiny_sdxl_model(tiny_model):
    from engine.models import load_model

    return load_model("tiny-sdxl", device="cpu")  # after tiny_model: the same thread count


@pytest.fixture(scope="session")
def tiny_flux_model(tiny_model):
    from engine.models import load_model

    return load_model("tiny-flux", device="cpu")


@pytest.fixture
def one_noise_draw(monkeypatch):
    """Every draw of a LatentInpainting returns its first one: diffusers' inpaint pipelines
    noise the start and every background with one tensor, where ours draws fresh noise
    per step, so the blended cross-checks align the two this way."""
    from engine.latents import LatentInpainting

    first = {}
    real_noise = LatentInpainting.noise

    def one_noise(self):
        if id(self) not in first:
            first[id(self)] = real_noise(self)
        return first[id(self)]

    monkeypatch.setattr(LatentInpainting, "noise", one_noise)


@pytest.fixture(scope="session")
def demo():
    from engine.demo import demo_samples

    return demo_samples()


BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc):
    """Every test that uses a database through `db` (so `store`, `database`) runs on SQLite and
    on PostgreSQL; one marked `sqlite_only` (a test of SQLite itself, or a slow one left to
    SQLite to keep CI time) on SQLite alone."""
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("sqlite_only")
        if marker is not None and not (marker.args or marker.kwargs.get("reason")):
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: sqlite_only needs a reason")
        metafunc.parametrize("backend", BACKENDS[:1] if marker else BACKENDS, indirect=True)


@pytest.fixture
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def postgres():
    """The session's real PostgreSQL server (tests/postgres.py), or a skip naming why there is
    none (a failure under CI)."""
    from tests.postgres import require

    return require()


@pytest.fixture
def postgres_url(postgres):
    """A fresh, migrated PostgreSQL database for this test alone (dropped afterwards)."""
    url = postgres.fresh_url()
    yield url
    postgres.drop(url)


@pytest.fixture
def db(backend, tmp_path, monkeypatch, request):
    """What `--db` gets: tmp_path/experiments.db, or a fresh PostgreSQL database's URL. The data
    folder is tmp_path/experiments_data on both (INPAINT_TUI_DATA for the test), so every Store
    and CLI call in the test finds the same images whichever the backend."""
    from inpaint_tui.store.db import DATA_ENV

    monkeypatch.setenv(DATA_ENV, str(tmp_path / "experiments_data"))
    if backend == "sqlite":
        return tmp_path / "experiments.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def empty_db(backend, tmp_path, request):
    """As `db`, but no migration has run yet on either backend (for tests of the migrations)."""
    if backend == "sqlite":
        return tmp_path / "empty.db"
    server = request.getfixturevalue("postgres")
    url = server.fresh_url(migrated=False)
    request.addfinalizer(lambda: server.drop(url))
    return url


def module_database(request, folder):
    """For a module-scoped fixture parametrized ("sqlite", "postgresql"): a database file in
    `folder`, or a fresh PostgreSQL database dropped when the fixture ends."""
    if request.param == "sqlite":
        return folder / "experiments.db"
    server = request.getfixturevalue("postgres")
    url = server.fresh_url()
    request.addfinalizer(lambda: server.drop(url))
    return url


def upgrade_to(db, revision: str) -> None:
    """Run the store's migrations on `db` (a path or URL) up to `revision`, as an older
    inpaint-tui left it."""
    _migrate(db, "upgrade", revision)


def downgrade_to(db, revision: str) -> None:
    """Undo the store's migrations on `db` down to `revision` (their downgrade steps)."""
    _migrate(db, "downgrade", revision)


def _migrate(db, direction: str, revision: str) -> None:
    from alembic import command
    from sqlalchemy import create_engine

    from inpaint_tui.store.db import alembic_config, database_url

    engine = create_engine(database_url(db))
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, direction)(config, revision)
    engine.dispose()


def sql(db, *statements: str, **parameters) -> list:
    """Statements on the database behind the store's back (as another client would); the
    rows of the last one."""
    from sqlalchemy import create_engine, text

    from inpaint_tui.store.db import database_url

    engine = create_engine(database_url(db))
    with engine.begin() as connection:
        for statement in statements:
            result = connection.execute(text(statement), parameters)
        rows = result.all() if result.returns_rows else []
    engine.dispose()
    return [tuple(row) for row in rows]


@pytest.fixture
def store(db):
    from inpaint_tui.store import Store

    store = Store(db)
    yield store
    store.close()


def make_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth, non-constant RGB test image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=2)
    noise = rng.normal(0, 0.05, size=base.shape)
    return Image.fromarray((np.clip(base + noise, 0, 1) * 255).astype(np.uint8), mode="RGB")


def box_mask(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.float32)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = 1.0
    return mask


@pytest.fixture(scope="session")
def tui_template(tmp_path_factory):
    """The TUI test database, built once (tests/tui_database.py); tests get copies."""
    import tui_database

    folder = tmp_path_factory.mktemp("tui-template")
    store = tui_database.build(folder / "experiments.db")
    ids = store.ids
    store.close()
    return folder, ids


@pytest.fixture
def tui_store(tui_template, tmp_path):
    """A fresh copy of the TUI test database (file + images), with `.ids` naming its runs."""
    import shutil

    from inpaint_tui.store import Store

    folder, ids = tui_template
    shutil.copy(folder / "experiments.db", tmp_path / "experiments.db")
    shutil.copytree(folder / "experiments_data", tmp_path / "experiments_data")
    store = Store(tmp_path / "experiments.db")
    store.ids = ids
    store.heartbeat(ids["worker"])  # its worker is alive now, whenever the template was built
    yield store
    store.close()


def _svg_screen_lines(svg: str, styled: bool = False) -> list[str]:
    """The characters of a Textual SVG screenshot, one string per terminal line; with `styled`,
    each run of text also names its colours, and background runs are listed after the line
    (class names in the SVG are numbered per export, so they cannot be compared directly)."""
    import html
    import re

    styles = dict(re.findall(r"\.(terminal-(?:\d+-)?r\d+) \{([^}]*)\}", svg))
    cell_height = 24.4
    lines: dict[int, list[tuple[float, str]]] = {}
    for css_class, x, y, content in re.findall(
            r'<text class="([^"]*)" x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)</text>', svg):
        text = html.unescape(content).replace("\xa0", " ").rstrip("\n")
        if styled:
            text = f"{text}{{{styles.get(css_class, css_class).strip()}}}"
        lines.setdefault(round(float(y) / cell_height), []).append((float(x), text))
    if styled:
        for fill, x, y, width in re.findall(r'<rect fill="([^"]*)" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"', svg):
            lines.setdefault(round((float(y) + 18.5) / cell_height), []).append(
                (1e9 + float(x), f" [bg {fill} at {float(x) / 12.2:.0f}+{float(width) / 12.2:.0f}]"))
    return ["".join(text for _, text in sorted(parts)) for _, parts in sorted(lines.items())]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """When a snapshot differs, put the difference in the test report itself: CI keeps only the
    console output, not the HTML snapshot report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or "snap_compare" not in getattr(item, "fixturenames", ()):
        return
    import difflib
    import pickle

    from pytest_textual_snapshot import node_to_report_path

    path = node_to_report_path(item)
    if not path.exists():
        return
    expected, actual = pickle.loads(path.read_bytes())[1:3]
    text_diff = list(difflib.unified_diff(_svg_screen_lines(expected or ""), _svg_screen_lines(actual or ""),
                                          "snapshot", "actual", lineterm=""))
    report.sections.append(("snapshot difference (screen text)", "\n".join(text_diff) or "(same text)"))
    if not text_diff:
        style_diff = difflib.unified_diff(_svg_screen_lines(expected or "", styled=True),
                                          _svg_screen_lines(actual or "", styled=True), "snapshot", "actual",
                                          lineterm="", n=0)
        report.sections.append(("snapshot difference (colours)", "\n".join(list(style_diff)[:60])))


def queue(store, technique: str = "blended", *, sample_set: str = "demo", options=None, claimed_by=None,
          command=None, eval_config=None, **spec_fields) -> int:
    """Queue a run the way the faces do: a validated RunSpec (engine.spec) on a sample set."""
    from engine.spec import RunSpec
    from inpaint_tui.jobs.runs import queue_run

    spec = RunSpec.build(technique, spec_fields.pop("params", None), evaluation=eval_config, **spec_fields)
    return queue_run(store, spec, sample_set=sample_set, options=options, claimed_by=claimed_by, command=command)
