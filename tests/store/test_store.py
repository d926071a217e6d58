import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from engine.seeding import sample_seed
from engine.spec import MAX_SEED, config_hash
from inpaint_tui.jobs.execute import RunProgress
from inpaint_tui.jobs.samples import ImportOptions, ensure_demo, import_source, to_engine_sample
from inpaint_tui.jobs.worker import execute_run
from inpaint_tui.store import NotFound, RunStatus, Store, StoreError
from tests.conftest import downgrade_to, queue, sql, upgrade_to


@pytest.mark.sqlite_only("SQLite's own set-up: WAL, foreign keys, busy timeout")
def test_sqlite_is_set_up_for_concurrent_readers(store):
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def _schema_diff(store) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from inpaint_tui.store.tables import SQLModel

    with store.engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)


def test_migrations_produce_exactly_the_declared_schema(empty_db):
    """Every migration, from an empty database, on each backend: the result is the models."""
    store = Store(empty_db)
    try:
        assert _schema_diff(store) == []
    finally:
        store.close()


def test_a_database_at_0005_gets_64_bit_seeds_keeping_its_runs(empty_db):
    """Migration 0006 on a database an older version left: seeds were 32-bit on PostgreSQL
    (Integer), too small for per-sample seeds (63-bit); the rows survive the type change."""
    upgrade_to(empty_db, "0005")
    sql(empty_db,
         "INSERT INTO sample (id, key, name, prompt, image_path, mask_path, width, height, source, meta, created_at) "
         "VALUES (1, 'k', 's', 'p', 'i', 'm', 8, 8, 'x', '{}', '2026-01-01')",
         "INSERT INTO run (id, technique, params, model, seed, steps, guidance, negative_prompt, sample_set, status, "
         "config_hash, versions, eval_config, sample_count, created_at) VALUES (1, 'blended', '{}', 'tiny', 2147483647, "
         "2, 7.5, '', 'demo', 'finished', 'h', '{}', '{}', 1, '2026-01-01')",
         "INSERT INTO run_sample (id, run_id, sample_id, position, seed, status) VALUES (1, 1, 1, 0, 12345, 'done')")
    store = Store(empty_db)
    try:
        assert _schema_diff(store) == []
        assert store.run(1).seed == 2147483647 and store.run_detail(1).samples[0].seed == 12345
    finally:
        store.close()
    # the schema is the models' (BIGINT on PostgreSQL), and a 63-bit seed now fits
    sql(empty_db, "UPDATE run SET seed = :seed", "UPDATE run_sample SET seed = :seed", seed=MAX_SEED)
    assert sql(empty_db, "SELECT r.seed, s.seed FROM run r JOIN run_sample s ON s.run_id = r.id") == \
        [(MAX_SEED, MAX_SEED)]


def test_a_63_bit_seed_round_trips(store):
    """The run seed at its maximum and the per-sample seeds derived from it (63-bit) are stored
    and read back exactly."""
    ensure_demo(store)
    run_id = _queue(store, seed=MAX_SEED)
    detail = store.run_detail(run_id)
    keys = {info.name: info.key for info in store.samples("demo")}
    assert detail.run.seed == MAX_SEED
    assert [s.seed for s in detail.samples] == [sample_seed(MAX_SEED, keys[s.sample_name]) for s in detail.samples]
    assert max(s.seed for s in detail.samples) > 2**62  # far past 32 bits: the values that overflowed
    assert sql(store.url, "SELECT seed FROM run WHERE id = :r", r=run_id) == [(MAX_SEED,)]


def test_the_version_that_migrates_a_database_records_itself(empty_db, monkeypatch):
    """A new database and one upgraded from an older revision both name the writing version,
    which an older inpaint-tui then quotes; reopening at head does not rewrite it."""
    import inpaint_tui

    Store(empty_db).close()
    assert sql(empty_db, "SELECT value FROM store_info WHERE key = 'schema_written_by'") == \
        [(inpaint_tui.__version__,)]
    # as an older version left it (0004 was before store_info): every later migration undone
    downgrade_to(empty_db, "0004")
    monkeypatch.setattr(inpaint_tui, "__version__", "9.9.9")
    Store(empty_db).close()  # upgrades 0004 -> head
    monkeypatch.setattr(inpaint_tui, "__version__", "10.0.0")
    Store(empty_db).close()  # already at head: no migration, nothing rewritten
    assert sql(empty_db, "SELECT key, value FROM store_info") == [("schema_written_by", "9.9.9")]


def test_the_head_read_from_file_names_is_alembics_head_and_the_chain_is_linear():
    """The fast open path compares a database's revision with `schema_head()` (file names, no
    Alembic): it must be Alembic's own head, each file's revision its number, one chain."""
    from alembic.script import ScriptDirectory

    from inpaint_tui.store.db import MIGRATIONS, alembic_config, schema_head

    scripts = ScriptDirectory.from_config(alembic_config())
    assert schema_head() == scripts.get_current_head()
    chain = list(reversed(list(scripts.walk_revisions())))
    files = sorted(path.name for path in (MIGRATIONS / "versions").glob("[0-9]*.py"))
    assert [script.revision for script in chain] == [name[:4] for name in files]
    assert [script.down_revision for script in chain] == [None, *[name[:4] for name in files[:-1]]]


def test_an_up_to_date_database_missing_a_column_is_refused_on_open(empty_db):
    """The two-read check at open sees a column dropped by hand, on each backend."""
    Store(empty_db).close()
    sql(empty_db, "DROP TABLE run_metric")
    with pytest.raises(StoreError, match="lacks table run_metric"):
        Store(empty_db)
    sql(empty_db, "ALTER TABLE run DROP COLUMN note")  # run is checked before run_metric
    with pytest.raises(StoreError, match=r"table run lacks column\(s\) note"):
        Store(empty_db)


def test_reopening_keeps_data_and_does_not_remigrate(tmp_path):
    first = Store(tmp_path / "a.db")
    import_source(first, "demo")
    first.close()
    second = Store(tmp_path / "a.db")
    assert len(second.samples("demo")) == 6
    assert second.data_dir == tmp_path / "a_data"


def test_demo_import_is_idempotent_and_content_addressed(store, demo):
    first = import_source(store, "demo").report
    files = sorted(p for p in store.data_dir.rglob("*") if p.is_file())
    second = import_source(store, "demo").report
    assert (first.added, first.total_in_set) == (6, 6)
    assert (second.added, second.already_present, second.total_in_set) == (0, 6, 6)
    assert sorted(p for p in store.data_dir.rglob("*") if p.is_file()) == files
    infos = store.samples("demo")
    assert [i.name for i in infos] == [s.id for s in demo]
    # what comes back is what went in: pixels, mask, prompt
    for info, sample in zip(infos, demo):
        back = to_engine_sample(info)
        np.testing.assert_array_equal(np.asarray(back.image), np.asarray(sample.image))
        np.testing.assert_array_equal(back.mask, sample.mask)
        assert back.prompt == sample.prompt and back.content_hash == sample.content_hash == info.key


def test_same_samples_in_a_second_set_share_rows(store):
    import_source(store, "demo")
    report = import_source(store, "demo", ImportOptions(set_name="copy")).report
    assert report.added == 0 and report.total_in_set == 6
    assert {s.name: s.sample_count for s in store.sample_sets()} == {"copy": 6, "demo": 6}
    assert len(store.samples()) == 6


def test_missing_things_are_named(store):
    with pytest.raises(NotFound, match="no sample set named 'nope'"):
        store.samples("nope")
    with pytest.raises(NotFound, match="no run with id 42"):
        store.run_detail(42)
    with pytest.raises(StoreError, match="unknown sample source 'elsewhere'"):
        import_source(store, "elsewhere")


def test_a_store_reconnects_once_its_server_is_back(postgres, postgres_url, tmp_path):
    """A PostgreSQL restart between two reads kills the pooled connection: the next read must
    not fail on it (pre-ping). A read during an outage fails (OperationalError, which the
    workers retry); afterwards the same Store works again without being reopened."""
    from sqlalchemy.exc import OperationalError

    store = Store(postgres_url, data_dir=tmp_path / "data")
    try:
        ensure_demo(store)
        with postgres.down():
            assert not postgres.running()
        assert len(store.samples("demo")) == 6
        with postgres.down():
            with pytest.raises(OperationalError):
                store.samples("demo")
        assert len(store.samples("demo")) == 6
    finally:
        store.close()


def test_database_folder_must_exist(tmp_path):
    with pytest.raises(StoreError, match="folder .*missing does not exist"):
        Store(tmp_path / "missing" / "x.db")


def test_foreign_keys_are_enforced(store):
    ensure_demo(store)
    with pytest.raises(IntegrityError, match="(?i)foreign key"):
        with store.engine.begin() as connection:
            connection.execute(text("INSERT INTO sample_set_member (set_id, sample_id, position) VALUES (999, 1, 0)"))


def test_config_hash_is_canonical():
    assert config_hash({"a": 1, "b": {"c": 2}}) == config_hash({"b": {"c": 2}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def _queue(store, technique="blended", **overrides):
    settings = dict(technique=technique, params=None, model="tiny", sample_set="demo", seed=0, steps=2, guidance=7.5)
    settings.update(overrides)
    return queue(store, **settings)


def test_run_lifecycle_writes_every_sample_once(store, tiny_model):
    ensure_demo(store)
    run_id = _queue(store)
    assert store.run(run_id).status == RunStatus.QUEUED
    assert execute_run(store, run_id, device="cpu") == RunStatus.FINISHED
    detail = store.run_detail(run_id)
    assert detail.run.done_count == 6 and detail.run.started_at and detail.run.finished_at
    assert detail.run.device.startswith("cpu")
    for s in detail.samples:
        assert s.status == "done" and s.image_path.is_file() and set(s.metrics) >= {"bg_mse", "bg_psnr"}
    # the run's mean is the mean of its samples
    assert detail.metrics["bg_mse"] == pytest.approx(np.mean([s.metrics["bg_mse"] for s in detail.samples]))
    assert sql(store.url, "SELECT COUNT(*) FROM run_sample WHERE run_id = :r", r=run_id) == [(6,)]
    assert sql(store.url, "SELECT COUNT(*) FROM metric WHERE run_id = :r AND name = 'bg_mse' "
                "AND run_sample_id IS NOT NULL", r=run_id) == [(6,)]
    if store.engine.dialect.name == "sqlite":
        assert sql(store.url, "PRAGMA integrity_check") == [("ok",)]


class Interrupt(BaseException):
    """Stands in for a kill at a step boundary (BaseException: nothing may swallow it)."""


def test_interrupted_run_resumes_without_redoing_or_duplicating(store, tiny_model):
    ensure_demo(store)
    reference_run = _queue(store, seed=7)
    execute_run(store, reference_run, device="cpu")
    expected = {s.sample_name: np.asarray(Image.open(s.image_path)) for s in store.run_detail(reference_run).samples}

    run_id = _queue(store, seed=7)

    def stop_in_third_sample(progress: RunProgress) -> None:
        if progress.samples_done == 2 and progress.step == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        execute_run(store, run_id, device="cpu", on_progress=stop_in_third_sample)
    interrupted = store.run_detail(run_id)
    assert [s.status for s in interrupted.samples][:3] == ["done", "done", "running"]
    finished_before = {s.sample_name: s.image_path.stat().st_mtime_ns for s in interrupted.samples if s.status == "done"}

    started = []
    assert execute_run(store, run_id, device="cpu", on_progress=lambda p: started.append(p.sample_name)) == "finished"
    resumed = store.run_detail(run_id)
    assert set(filter(None, started)) == {s.sample_name for s in interrupted.samples[2:]}  # only unfinished work
    for s in resumed.samples:
        assert s.status == "done"
        np.testing.assert_array_equal(np.asarray(Image.open(s.image_path)), expected[s.sample_name])
        if s.sample_name in finished_before:
            assert s.image_path.stat().st_mtime_ns == finished_before[s.sample_name]  # not rewritten
    outputs = sorted(p.name for p in (store.data_dir / "runs" / str(run_id)).iterdir())
    assert len(outputs) == 6  # no orphan or duplicate files
    with store.engine.connect() as connection:
        count = connection.execute(text("SELECT COUNT(*) FROM metric WHERE run_id = :r AND name = 'bg_mse' AND run_sample_id IS NOT NULL"), {"r": run_id})
        assert count.scalar() == 6
        per_run = connection.execute(text("SELECT COUNT(*) FROM run_metric WHERE run_id = :r AND name = 'bg_mse'"), {"r": run_id})
        assert per_run.scalar() == 1  # one aggregate, however often the run was evaluated


def test_failing_samples_are_recorded_and_the_run_goes_on(store, tiny_model, tmp_path):
    ensure_demo(store)
    run_id = _queue(store)
    # Corrupt one stored input: the sample fails, the others finish.
    broken = store.samples("demo")[1]
    broken.image_path.write_bytes(b"not a png")
    assert execute_run(store, run_id, device="cpu") == RunStatus.FINISHED_WITH_ERRORS
    detail = store.run_detail(run_id)
    failed = [s for s in detail.samples if s.status == "failed"]
    assert [s.sample_name for s in failed] == [broken.name]
    assert "cannot read image file" in failed[0].error and failed[0].metrics == {}
    assert detail.run.done_count == 5 and detail.run.failed_count == 1


def test_unloadable_model_fails_the_run_with_a_clear_error(store):
    ensure_demo(store)
    run_id = _queue(store, model="sd15")
    assert execute_run(store, run_id, device="cpu") == RunStatus.FAILED
    assert "not in the local cache" in store.run(run_id).error and "--model tiny" in store.run(run_id).error


def test_leaderboard_orders_by_direction(store, tiny_model):
    ensure_demo(store)
    ids = [_queue(store, technique=t) for t in ("vanilla", "blended")]
    for run_id in ids:
        execute_run(store, run_id, device="cpu")
    low_first = store.leaderboard("bg_mse", descending=False)
    high_first = store.leaderboard("bg_psnr", descending=True)
    assert [r.metrics["bg_mse"] for r in low_first] == sorted(r.metrics["bg_mse"] for r in low_first)
    assert [r.metrics["bg_psnr"] for r in high_first] == sorted((r.metrics["bg_psnr"] for r in high_first), reverse=True)
    assert {r.technique for r in low_first} == {"vanilla", "blended"}


def test_leaderboard_head_is_the_start_of_the_full_ranking(populated_store):
    """`limit` ranks in SQL; it must give exactly the first rows of the Python ranking, with
    ties (by run id), missing values (last, by id) and a sample-set filter, on each backend."""
    from inpaint_tui.store import MetricSummary

    store = populated_store
    ended = [run.id for run in store.runs(statuses=list(RunStatus.ENDED))]
    assert len(ended) >= 6
    for index, run_id in enumerate(ended):
        value = None if index % 4 == 3 else [0.5, 0.25, 0.5][index % 3]  # ties and a missing value
        store.record_run_metrics(run_id, {"bg_mse": MetricSummary(value=value, note=None if value else "failed")})
    for descending in (False, True):
        for filters in ({}, {"sample_set": "demo"}):
            full = store.leaderboard("bg_mse", descending=descending, **filters)
            assert len(full) >= 4 and any("bg_mse" not in row.metrics for row in full)
            for limit in range(1, len(full) + 2):
                head = store.leaderboard("bg_mse", descending=descending, limit=limit, **filters)
                assert [row.run_id for row in head] == [row.run_id for row in full[:limit]]
                assert head == full[:limit]
