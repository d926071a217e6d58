"""The query language for runs, evaluated in SQL on both backends, against an independent
evaluation in plain Python over the same 200 runs (tests/query_database.py keeps what it put in
the store as Python records). Every operator, parameters with their defaults, metrics present,
stored as missing and live, tags, sweeps, times, and/or/not/parentheses; random compound
expressions; sort keys with missing values; mistakes with their token positions."""

from __future__ import annotations

import functools
import json
import math
import random
from datetime import datetime, timezone

import pytest

from engine.techniques import get_technique, technique_names
from inpaint_tui.read.query import QueryError, parse_filter, parse_sort
from tests import query_database
from tests.conftest import module_database

DEFAULTS = {name: get_technique(name).full_schema.defaults() for name in technique_names()}


@pytest.fixture(scope="module", params=("sqlite", "postgresql"))
def varied(request, tmp_path_factory):
    """(store, records): the varied store on each backend, built once for the module."""
    folder = tmp_path_factory.mktemp(f"query-{request.param}")
    db = module_database(request, folder)
    store, records = query_database.build(db, data_dir=folder / "experiments_data")
    yield store, records
    store.close()


# --- the Python side: what each field is, written without the store --------------------------


def param(run, name):
    """The value the run used: recorded, else its technique's default; None without it."""
    return run.params[name] if name in run.params else DEFAULTS[run.technique].get(name)


def metric(run, name):
    return run.metrics.get(name)


def has(value, test) -> bool:
    """A comparison on a missing value is false."""
    return value is not None and test(value)


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


ATOMS = [
    ("technique = 'blended'", lambda r: r.technique == "blended"),
    ("technique != blended", lambda r: r.technique != "blended"),
    ("technique == \"tdpaint\"", lambda r: r.technique == "tdpaint"),
    ("technique in (vanilla, 'tdpaint')", lambda r: r.technique in ("vanilla", "tdpaint")),
    ("technique not in ('vanilla', 'tdpaint')", lambda r: r.technique not in ("vanilla", "tdpaint")),
    ("technique ~ PAINT", lambda r: "paint" in r.technique),
    ("technique like 'la'", lambda r: "la" in r.technique),
    ("technique not like 'paint'", lambda r: "paint" not in r.technique),
    ("model = sd15", lambda r: r.model == "sd15"),
    ("status = finished_with_errors", lambda r: r.status == "finished_with_errors"),
    ("status in ('queued', 'running')", lambda r: r.status in ("queued", "running")),
    ("status <> finished", lambda r: r.status != "finished"),
    ("steps > 10", lambda r: r.steps > 10),
    ("steps >= 10", lambda r: r.steps >= 10),
    ("steps < 10", lambda r: r.steps < 10),
    ("steps <= 10", lambda r: r.steps <= 10),
    ("steps = 20", lambda r: r.steps == 20),
    ("steps != 20", lambda r: r.steps != 20),
    ("steps > 4.5", lambda r: r.steps > 4.5),
    ("steps in (4, 50)", lambda r: r.steps in (4, 50)),
    ("seed > 3", lambda r: r.seed > 3),
    ("seed >= 4611686018427387904", lambda r: r.seed >= 2**62),
    ("seed = 4611686018427387905", lambda r: r.seed == 2**62 + 1),
    ("guidance = 7.5", lambda r: r.guidance == 7.5),
    ("guidance < 5", lambda r: r.guidance < 5),
    ("set = pair", lambda r: r.sample_set == "pair"),
    ("sample_set != demo", lambda r: r.sample_set != "demo"),
    ("id <= 50", lambda r: r.id <= 50),
    ("run in (1, 2, 3, 500)", lambda r: r.id in (1, 2, 3, 500)),
    ("param.blend_start >= 0.25", lambda r: has(param(r, "blend_start"), lambda v: v >= 0.25)),
    ("param.blend_start = 0", lambda r: has(param(r, "blend_start"), lambda v: v == 0)),
    ("param.blend_start != 0", lambda r: has(param(r, "blend_start"), lambda v: v != 0)),
    ("param.blend_start is null", lambda r: param(r, "blend_start") is None),
    ("params.blend_start is not null", lambda r: param(r, "blend_start") is not None),
    ("param.background = paste", lambda r: param(r, "background") == "paste"),
    ("param.background in (poisson, decoder)", lambda r: param(r, "background") in ("poisson", "decoder")),
    ("param.background != none", lambda r: param(r, "background") != "none"),
    ("param.background ~ 'o'", lambda r: "o" in param(r, "background")),
    ("param.post_condition = true", lambda r: param(r, "post_condition") is True),
    ("param.post_condition = false", lambda r: param(r, "post_condition") is False),
    ("param.post_condition != true", lambda r: param(r, "post_condition") is not True),
    ("param.progressive_shrink > 2", lambda r: has(param(r, "progressive_shrink"), lambda v: v > 2)),
    ("param.feather_kernel >= 15", lambda r: param(r, "feather_kernel") >= 15),
    ("param.decoder_lr < 0.01", lambda r: param(r, "decoder_lr") < 0.01),
    ("param.scheduler = ddim", lambda r: param(r, "scheduler") == "ddim"),
    ("param.scheduler not in (ddim, pndm)", lambda r: has(param(r, "scheduler"), lambda v: v not in ("ddim", "pndm"))),
    ("param.strength < 1", lambda r: has(param(r, "strength"), lambda v: v < 1)),
    ("param.t_bg > 0.5", lambda r: has(param(r, "t_bg"), lambda v: v > 0.5)),
    ("param.jump_length in (10, 11, 12)", lambda r: param(r, "jump_length") in (10, 11, 12)),
    ("param.blocks = 'mid+up'", lambda r: param(r, "blocks") == "mid+up"),
    ("metric.bg_mse < 0.5", lambda r: has(metric(r, "bg_mse"), lambda v: v < 0.5)),
    ("metric.bg_mse >= 0.5", lambda r: has(metric(r, "bg_mse"), lambda v: v >= 0.5)),
    ("not metric.bg_mse < 0.5", lambda r: not has(metric(r, "bg_mse"), lambda v: v < 0.5)),
    ("metric.bg_mse != 20", lambda r: has(metric(r, "bg_mse"), lambda v: v != 20)),
    ("metric.kid is null", lambda r: metric(r, "kid") is None),
    ("metrics.kid is not null", lambda r: metric(r, "kid") is not None),
    ("metric.bg_psnr > 20", lambda r: has(metric(r, "bg_psnr"), lambda v: v > 20)),
    ("metric.seconds = 20", lambda r: metric(r, "seconds") == 20),
    ("metric.clip_local in (20, 30)", lambda r: metric(r, "clip_local") in (20, 30)),
    ("metric.prompt_precision > 0.5", lambda r: has(metric(r, "prompt_precision"), lambda v: v > 0.5)),
    ("metric.prompt_hit > 0.5", lambda r: has(metric(r, "prompt_precision"), lambda v: v > 0.5)),
    ("metric.unet_calls <= 20", lambda r: has(metric(r, "unet_calls"), lambda v: v <= 20)),
    ("tag = paper", lambda r: "paper" in r.tags),
    ("tags != paper", lambda r: "paper" not in r.tags),
    ("tag in (draft, v2)", lambda r: bool({"draft", "v2"} & set(r.tags))),
    ("tag not in (draft, v2)", lambda r: not {"draft", "v2"} & set(r.tags)),
    ("tag is null", lambda r: not r.tags),
    ("tag is not null", lambda r: bool(r.tags)),
    ("tag ~ PAPER", lambda r: any("paper" in t for t in r.tags)),
    ("tag !~ paper", lambda r: not any("paper" in t for t in r.tags)),
    ("tag = 'paper-final'", lambda r: "paper-final" in r.tags),
    ("note ~ seam", lambda r: has(r.note or None, lambda v: "seam" in v.lower())),
    ("note !~ seam", lambda r: has(r.note or None, lambda v: "seam" not in v.lower())),
    ("note is null", lambda r: not r.note),
    ("note = good", lambda r: r.note == "good"),
    ("note ~ '100%'", lambda r: "100%" in r.note),
    ("note ~ '0%'", lambda r: "0%" in r.note),
    ("note ~ '_'", lambda r: "_" in r.note),
    ("device is null", lambda r: r.device is None),
    ("device ~ cuda", lambda r: has(r.device, lambda v: "cuda" in v)),
    ("device != 'cpu (float32)'", lambda r: has(r.device, lambda v: v != "cpu (float32)")),
    ("sweep = 1", lambda r: 1 in r.sweeps),
    ("sweep != 1", lambda r: 1 not in r.sweeps),
    ("sweep in (2, 3)", lambda r: bool({2, 3} & r.sweeps)),
    ("sweep not in (2, 3)", lambda r: not {2, 3} & r.sweeps),
    ("sweep is null", lambda r: not r.sweeps),
    ("sweep > 1", lambda r: any(s > 1 for s in r.sweeps)),
    ("created >= '2026-11-15'", lambda r: r.created >= utc(2026, 11, 15)),
    ("created = '2026-11-10'", lambda r: utc(2026, 11, 10) <= r.created < utc(2026, 11, 11)),
    ("created != '2026-11-10'", lambda r: not utc(2026, 11, 10) <= r.created < utc(2026, 11, 11)),
    ("created <= '2026-11-10'", lambda r: r.created < utc(2026, 11, 11)),
    ("created > '2026-11-10'", lambda r: r.created >= utc(2026, 11, 11)),
    ("created < '2026-11-05 12:00'", lambda r: r.created < utc(2026, 11, 5, 12)),
    ("created > '2026-11-20T08:00:00+02:00'", lambda r: r.created > utc(2026, 11, 20, 6)),
    ("started is null", lambda r: True),
    ("done = 6", lambda r: r.done == 6),
    ("failed > 0", lambda r: r.failed > 0),
    ("samples = 2", lambda r: r.samples == 2),
    ("commit is null", lambda r: r.git_commit is None),
    ("hash = hash5", lambda r: r.id == 6),
    ("negative_prompt = blurry", lambda r: r.negative_prompt == "blurry"),
    ("negative_prompt is null", lambda r: r.negative_prompt == ""),
]
UNCHECKED = {"started is null"}  # true of every run here (none has started): checked on its own below

COMPOUND = [
    ("technique = blended and (param.blend_start > 0.5 or tag = paper)",
     lambda r: r.technique == "blended" and (has(param(r, "blend_start"), lambda v: v > 0.5) or "paper" in r.tags)),
    ("not (technique = blended or technique = tdpaint) and metric.bg_mse < 0.5",
     lambda r: r.technique not in ("blended", "tdpaint") and has(metric(r, "bg_mse"), lambda v: v < 0.5)),
    ("technique = vanilla or technique = blended and steps = 4",  # and binds tighter than or
     lambda r: r.technique == "vanilla" or (r.technique == "blended" and r.steps == 4)),
    ("(technique = vanilla or technique = blended) and steps = 4",
     lambda r: r.technique in ("vanilla", "blended") and r.steps == 4),
    ("not not tag = paper", lambda r: "paper" in r.tags),
    ("NOT tag = paper AND steps > 4 Or metric.kid IS NULL",
     lambda r: ("paper" not in r.tags and r.steps > 4) or metric(r, "kid") is None),
    ("not (metric.kid < 0.5)", lambda r: not has(metric(r, "kid"), lambda v: v < 0.5)),
    ("technique = 'blended' and param.blend_start >= 0.25 and metric.bg_mse < 0.5 and tag = 'paper'",
     lambda r: r.technique == "blended" and param(r, "blend_start") >= 0.25
     and has(metric(r, "bg_mse"), lambda v: v < 0.5) and "paper" in r.tags),
]


def _check(store, records, expression, predicate):
    from_sql = store.query_run_ids(parse_filter(expression))
    expected = [r.id for r in records if predicate(r)]
    assert from_sql == expected, f"{expression}: SQL {len(from_sql)} runs, Python {len(expected)}; " \
                                 f"only SQL {sorted(set(from_sql) - set(expected))[:10]}, " \
                                 f"only Python {sorted(set(expected) - set(from_sql))[:10]}"
    return expected


@pytest.mark.parametrize("expression, predicate", [a for a in ATOMS if a[0] not in UNCHECKED] + COMPOUND,
                         ids=lambda value: value if isinstance(value, str) else "")
def test_sql_matches_python(varied, expression, predicate):
    store, records = varied
    _check(store, records, expression, predicate)


def test_the_store_is_varied_enough_for_the_cases_to_mean_something(varied):
    """Every atom selects some runs but not all, or the comparison above proves little."""
    store, records = varied
    trivial = [expression for expression, predicate in ATOMS if expression not in UNCHECKED
               and len([r for r in records if predicate(r)]) in (0, len(records))]
    assert set(trivial) <= {"note ~ '_'"}, trivial  # no note has an underscore: `_` is no wildcard
    assert any(name not in r.params for r in records for name in DEFAULTS[r.technique])  # old records
    assert any(r.status in ("running", "cancelled") and r.metrics for r in records)  # live means
    assert store.query_run_ids(parse_filter("started is null")) == [r.id for r in records]


def test_random_compound_expressions(varied):
    """300 random trees of the atoms (and, or, not, parentheses), each against the same tree
    of Python predicates."""
    store, records = varied
    rng = random.Random(7)
    atoms = [a for a in ATOMS if a[0] not in UNCHECKED]

    def tree(depth):
        if depth == 0 or rng.random() < 0.3:
            return rng.choice(atoms)
        kind = rng.choice(["and", "or", "not"])
        if kind == "not":
            text, test = tree(depth - 1)
            return f"not ({text})", lambda r: not test(r)
        parts = [tree(depth - 1) for _ in range(rng.randint(2, 3))]
        text = f" {kind} ".join(f"({t})" for t, _ in parts)
        combine = all if kind == "and" else any
        return text, lambda r: combine(test(r) for _, test in parts)

    for _ in range(300):
        expression, predicate = tree(3)
        _check(store, records, expression, predicate)


def _python_order(records, keys):
    """The store's order, written in Python: each key ascending or descending with its
    missing values last, then the run id."""
    def compare(a, b):
        for value_of, descending in keys:
            x, y = value_of(a), value_of(b)
            if x is None or y is None:
                if x is None and y is None:
                    continue
                return 1 if x is None else -1
            if x != y:
                return (-1 if x < y else 1) * (-1 if descending else 1)
        return (a.id > b.id) - (a.id < b.id)

    return [r.id for r in sorted(records, key=functools.cmp_to_key(compare))]


SORTS = [
    ("-metric.bg_mse,id", [(lambda r: metric(r, "bg_mse"), True)]),
    ("metric.bg_mse", [(lambda r: metric(r, "bg_mse"), False)]),
    ("technique,-steps", [(lambda r: r.technique, False), (lambda r: r.steps, True)]),
    ("-param.blend_start", [(lambda r: param(r, "blend_start"), True)]),
    ("param.background,-param.feather_kernel", [(lambda r: param(r, "background"), False),
                                                 (lambda r: param(r, "feather_kernel"), True)]),
    ("created", [(lambda r: r.created, False)]),
    ("-seed", [(lambda r: r.seed, True)]),
    ("status, -metric.kid", [(lambda r: r.status, False), (lambda r: metric(r, "kid"), True)]),
    ("-done,failed", [(lambda r: r.done, True), (lambda r: r.failed, False)]),
    ("note", [(lambda r: r.note or None, False)]),
    ("-device,set", [(lambda r: r.device, True), (lambda r: r.sample_set, False)]),
]


@pytest.mark.parametrize("keys, python", SORTS, ids=[s for s, _ in SORTS])
def test_sort_matches_python_with_missing_values_last(varied, keys, python):
    store, records = varied
    expected = _python_order(records, python)
    assert store.query_run_ids(order=parse_sort(keys)) == expected
    assert store.query_run_ids(order=parse_sort(keys), limit=7) == expected[:7]
    where = parse_filter("technique != vanilla")
    assert store.query_run_ids(where, parse_sort(keys), 12) == \
        [i for i in expected if next(r for r in records if r.id == i).technique != "vanilla"][:12]


def test_find_runs_and_the_leaderboard_take_the_same_selection(varied):
    store, records = varied
    where, order = parse_filter("tag = paper or metric.bg_mse < 0.3"), parse_sort("-metric.bg_mse")
    ids = store.query_run_ids(where, order, 15)
    assert [run.id for run in store.find_runs(where, order, 15)] == ids
    assert [run.id for run in store.find_runs(run_ids=ids[:3])] == sorted(ids[:3])
    settled = [r.id for r in records if r.status in ("finished", "finished_with_errors")]
    board = store.leaderboard("bg_mse", descending=False, where=where)
    expected = [i for i in _python_order([r for r in records if r.id in settled], [(lambda r: metric(r, "bg_mse"),
                                                                                    False)])
                if i in set(store.query_run_ids(where))]
    assert [row.run_id for row in board] == expected
    assert [row.run_id for row in store.leaderboard("bg_mse", descending=False, where=where, limit=5)] == expected[:5]
    sorted_board = store.leaderboard("bg_mse", descending=False, include_unfinished=True, where=where, order=order,
                                     limit=6)
    assert [row.run_id for row in sorted_board] == ids[:6]


ERRORS = [
    ("technique = blendd", "technique 'blendd' does not exist: did you mean 'blended'?", 13, 6),
    ("metric.kidd < 2", "unknown metric 'kidd': did you mean 'kid'? known: bg_mse, bg_psnr", 1, 11),
    ("param.blend_strt > 0", "unknown parameter 'blend_strt': did you mean 'blend_start'?", 1, 16),
    ("techniq = blended", "unknown field 'techniq': did you mean 'technique'?", 1, 7),
    ("param.blend_start = 'x'", "param.blend_start is a number, not 'x'", 21, 3),
    ("steps >", "expected a value (a number or 'quoted text'), found the end of the expression", 8, 1),
    ("(steps > 2", "expected ')' to close the '(' at column 1", 11, 1),
    ("steps > 2)", "')' without a matching '('", 10, 1),
    ("technique < 'b'", "technique is text: '<' orders numbers and times only", 11, 1),
    ("steps ~ 2", "'~' looks for text; steps is a number", 7, 1),
    ("steps > 0.25abc", "not a number: '0.25abc'", 9, 7),
    ("note ~ 'seam", "text not closed: a quote is missing", 8, 5),
    ("steps = = 2", "expected a value", 9, 1),
    ("steps 3", "expected an operator (= != < <= > >= in ~ is null) after steps, found '3'", 7, 1),
    ("tag = paper and", "expected a field name", 16, 1),
    ("tag is nul", "expected 'null' after 'is', found 'nul'", 8, 3),
    ("steps in 4", "expected '(' and a list of values after 'in'", 10, 1),
    ("steps in (4 5)", "expected ',' or ')' in the list, found '5'", 13, 1),
    ("param.background = pastee", "param.background 'pastee' does not exist: did you mean 'paste'?", 20, 6),
    ("status = done", "status 'done' does not exist", 10, 4),
    ("created > 'yesterday'", "created is a time: write it as '2026-11-20'", 11, 11),
    ("created in ('2026-11-20')", "created is a time: compare it with < or >, not a list", 12, 1),
    ("param.post_condition = maybe", "param.post_condition is on/off: use true or false", 24, 5),
    ("steps > 1 @ 2", "unexpected character '@'", 11, 1),
    ("technique = 'a' technique", "technique 'a' does not exist", 13, 3),
    ("tech = 1 and (", "unknown field 'tech'", 1, 4),
    ("   ", None, None, None),
]


@pytest.mark.parametrize("expression, message, column, width", ERRORS, ids=[e[0] for e in ERRORS])
def test_mistakes_name_the_token(expression, message, column, width):
    if message is None:
        assert parse_filter(expression) is None  # nothing to filter on
        return
    with pytest.raises(QueryError) as caught:
        parse_filter(expression)
    error = caught.value
    assert message in error.message
    assert error.start + 1 == column and error.end - error.start == width, (error.start, error.end)
    first, shown, caret = str(error).split("\n")
    assert first == f"--filter: {error.message} (at column {column})"
    assert shown == f"  {expression}" and caret == "  " + " " * (column - 1) + "^" * width


def test_sort_mistakes_name_the_key():
    for text, message, column in (("technique,,id", "empty sort key", 11), ("-bogus", "unknown field 'bogus'", 2),
                                  ("tag", "tag holds several values per run: it cannot order runs", 1),
                                  ("metric.kidd", "unknown metric 'kidd'", 1), ("id, -steps!", "not a field", 6)):
        with pytest.raises(QueryError) as caught:
            parse_sort(text)
        assert message in caught.value.message and caught.value.start + 1 == column, (text, caught.value)
        assert str(caught.value).startswith("--sort: ")


def test_an_infinite_parameter_is_stored_queried_and_read_back_on_both_backends(store):
    """TD-Paint documents t_bg=inf (Blended Latent Diffusion). Python's json writes it as
    `Infinity`, which is not JSON: PostgreSQL's json type refused the run, and on SQLite before
    3.42 one such run failed every parameter filter. The store writes it as 1e999 instead."""
    from sqlalchemy import text

    from inpaint_tui.jobs.samples import ensure_demo
    from tests.conftest import queue

    ensure_demo(store)
    infinite = queue(store, "tdpaint", params={"t_bg": "inf"})
    finite = queue(store, "tdpaint", params={"t_bg": "10"})
    other = queue(store, "blended", params={"blend_start": "0.5"})
    assert store.query_run_ids(parse_filter("param.t_bg = inf")) == [infinite]
    assert store.query_run_ids(parse_filter("param.t_bg > 100")) == [infinite]
    assert store.query_run_ids(parse_filter("param.t_bg < inf")) == [finite]
    assert store.query_run_ids(parse_filter("param.blend_start >= 0.25")) == [other]
    assert store.query_run_ids(order=parse_sort("-param.t_bg")) == [infinite, finite, other]
    assert math.isinf(store.run(infinite).params["t_bg"]) and store.run(infinite).params["t_bg"] > 0
    # What the column holds is strict JSON (no Infinity/NaN constants), read by an independent parser.
    with store.engine.connect() as connection:
        stored = connection.execute(text("SELECT CAST(params AS TEXT) FROM run WHERE id = :id"),
                                    {"id": infinite}).scalar()
    strict = json.loads(stored, parse_constant=lambda name: pytest.fail(f"{name} in {stored}"))
    assert strict["t_bg"] == math.inf
    # A sweep's spec and points hold the value too (lists and nested dicts).
    sweep_id = store.create_sweep(name="t_bg", spec={"params": {"t_bg": [10.0, math.inf, -math.inf]}}, command=None,
                                  members=[(finite, {"t_bg": 10.0}, False), (infinite, {"t_bg": math.inf}, False)])
    sweep = store.sweep(sweep_id)
    assert sweep.spec == {"params": {"t_bg": [10.0, math.inf, -math.inf]}}
    assert sweep.points == [{"t_bg": 10.0}, {"t_bg": math.inf}]


@pytest.mark.sqlite_only(reason="rows an older inpaint-tui wrote on SQLite (PostgreSQL never took them)")
def test_an_older_rows_python_infinity_still_queries(store):
    """Before the store wrote 1e999, SQLite rows held Python's `Infinity` token: they are read
    as infinity by the query accessors and by Python."""
    from sqlalchemy import text

    from inpaint_tui.jobs.samples import ensure_demo
    from tests.conftest import queue

    ensure_demo(store)
    old, finite = queue(store, "tdpaint", params={"t_bg": "50"}), queue(store, "tdpaint", params={"t_bg": "10"})
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE run SET params = replace(params, '50.0', 'Infinity') WHERE id = :id"),
                           {"id": old})
        assert "Infinity" in connection.execute(text("SELECT params FROM run WHERE id = :id"), {"id": old}).scalar()
    assert store.query_run_ids(parse_filter("param.t_bg > 100")) == [old]
    assert store.query_run_ids(order=parse_sort("param.t_bg")) == [finite, old]
    assert store.run(old).params["t_bg"] == math.inf


def test_ten_thousand_ids_still_list(varied):
    """More ids than a query may bind (see Store.find_runs): the rows still come back."""
    store, records = varied
    assert len(store.find_runs(run_ids=[r.id for r in records] + list(range(10_000, 12_000)))) == len(records)
    values, _ = store.run_metrics([r.id for r in records] * 30)
    assert set(values) <= {r.id for r in records}



def test_every_runs_metrics_bind_no_ids_and_equal_the_listed_ids(varied):
    """The TUI's full reload asks for every run's metrics: no ids are bound (50 000 runs would
    exceed SQLite's 32 766), the same values as for the ids listed, and a long list is split
    into queries of at most IDS_PER_QUERY ids."""
    from sqlalchemy import event

    from inpaint_tui.store.metrics import IDS_PER_QUERY

    store, records = varied
    bound: list[int] = []

    def count(_connection, _cursor, _statement, parameters, _context, _many) -> None:
        bound.append(len(parameters) if isinstance(parameters, (list, tuple, dict)) else 0)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        every = store.run_metric_values()
        every_bound, bound[:] = max(bound, default=0), []
        ids = [r.id for r in records]
        asked = ids * 3 + list(range(10_000, 10_000 + IDS_PER_QUERY))
        listed = store.run_metric_values(asked)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert every_bound <= 4 and len(records) > 4
    assert every == listed and set(every) <= set(ids) and every
    chunks = -(-len(asked) // IDS_PER_QUERY)
    assert chunks >= 2 and len(bound) == 2 * chunks and max(bound) <= IDS_PER_QUERY + 4  # two queries a chunk
