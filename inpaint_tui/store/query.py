"""Run queries: which runs match a filter, in which order, how many, evaluated in SQL.

The read side parses the filter language (`inpaint_tui/read/query.py`, where the grammar is
documented) into the tree below, checking every name against the engine's catalogue and
technique schemas; this module compiles the tree into SQLAlchemy Core expressions that run on
SQLite and PostgreSQL alike, so filtering, sorting and cutting 10 000 runs is one query.

What a field reads, per run:

* run fields (`RUN_FIELDS`): a column of the run table, or a count of its samples by status
  (`done`, `failed`), or the sets `tag` (the run's tags, a JSON list) and `sweep` (the ids of
  the sweeps the run belongs to);
* `param.NAME`: the run's recorded parameter, else its technique's default (`Field.defaults`,
  one per technique having the parameter: a run recorded by an older version that lacked
  it); missing for a technique without that parameter;
* `metric.NAME`: the run's per-run value, as every table shows it: the stored `run_metric`
  value (a stored row without a value is a missing metric), else, for a run that has not
  finished, the live mean of its samples' values.

A comparison with a missing value is false, whatever the operator (`!=` and `not in`
included); `not` turns false into true, so `not metric.kid < 0.1` holds for runs without a KID
and `metric.kid >= 0.1` does not. `is null` / `is not null` test for the missing value. On
the sets, `=` / `in` / `<`... hold when some element satisfies them, `!=` / `not in` / `!~`
when none is equal (or contains the text), `is null` when the set is empty.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Sequence, Union

from sqlalchemy import BigInteger, Boolean, DateTime, Float, String, and_, case, exists, false, func, literal, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from inpaint_tui.store.db import byte_order, comparable_time, json_document, json_list_elements
from inpaint_tui.store.tables import MetricRecord, RunMetricRecord, RunRecord, RunSampleRecord, RunStatus, \
    SampleStatus, SweepRunRecord
from inpaint_tui.store.views import RunInfo

INT, FLOAT, TEXT, BOOL, TIME, TAGS, SWEEPS = "int", "float", "text", "bool", "time", "tags", "sweeps"
NUMERIC = (INT, FLOAT)
SETS = (TAGS, SWEEPS)

RUN_FIELDS: dict[str, str] = {
    "id": INT, "technique": TEXT, "model": TEXT, "status": TEXT, "steps": INT, "seed": INT, "guidance": FLOAT,
    "sample_set": TEXT, "negative_prompt": TEXT, "device": TEXT, "worker": INT, "config_hash": TEXT,
    "git_commit": TEXT, "error": TEXT, "note": TEXT, "samples": INT, "done": INT, "failed": INT,
    "created": TIME, "started": TIME, "finished": TIME, "tag": TAGS, "sweep": SWEEPS,
}
"""The run's own fields a filter or a sort can name, with their value type."""

_COLUMNS = {"samples": "sample_count", "worker": "worker_id", "created": "created_at", "started": "started_at",
            "finished": "finished_at"}
_COUNTED = {"done": SampleStatus.DONE, "failed": SampleStatus.FAILED}
_EMPTY_IS_MISSING = ("note", "negative_prompt")  # stored as "" when there is none
SETTLED = (RunStatus.FINISHED, RunStatus.FINISHED_WITH_ERRORS)  # runs whose per-run values are all stored

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "in", "not in", "contains", "not contains", "is null", "is not null")
ORDERING = ("<", "<=", ">", ">=")


@dataclass(frozen=True)
class Field:
    """What a comparison or a sort key reads. `source`: "run" (a RUN_FIELDS name), "param" or
    "metric"; `type`: its value type; `defaults`: for a parameter, (technique, default) for
    every technique that has it."""

    source: str
    name: str
    type: str
    defaults: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Comparison:
    """`field op value`: `value` is a scalar of the field's type (a datetime for times), a
    tuple for `in` / `not in`, None for `is null` / `is not null`. `contains` is a
    case-insensitive substring test."""

    field: Field
    op: str
    value: Any = None

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"unknown operator {self.op!r}")


@dataclass(frozen=True)
class And:
    parts: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    parts: tuple["Node", ...]


@dataclass(frozen=True)
class Not:
    part: "Node"


Node = Union[Comparison, And, Or, Not]


@dataclass(frozen=True)
class SortKey:
    field: Field
    descending: bool = False


class RunQuery:
    """Compiles filter trees and sort keys for one backend (`dialect_name`), as expressions
    correlated with the run table: they go in the WHERE and ORDER BY of a select from it."""

    def __init__(self, dialect_name: str) -> None:
        self.dialect = dialect_name
        self.run = RunRecord.__table__.c

    # --- values -------------------------------------------------------------------------

    def value(self, field: Field) -> ColumnElement:
        """The field's scalar value per run (NULL when missing); sets have none."""
        if field.source == "param":
            return self._param(field)
        if field.source == "metric":
            return self._metric(field.name)
        if field.type in SETS:
            raise ValueError(f"{field.name} is a set of values, not one value")
        if field.name in _COUNTED:
            samples = RunSampleRecord.__table__.c
            return (select(func.count()).select_from(RunSampleRecord.__table__)
                    .where(samples.run_id == self.run.id, samples.status == _COUNTED[field.name])
                    .scalar_subquery())
        column = self.run[_COLUMNS.get(field.name, field.name)]
        return func.nullif(column, "") if field.name in _EMPTY_IS_MISSING else column

    def _param(self, field: Field) -> ColumnElement:
        entry = json_document(self.dialect, self.run.params)[field.name]
        typed, sql_type = {INT: (entry.as_float(), Float), FLOAT: (entry.as_float(), Float),
                           BOOL: (entry.as_boolean(), Boolean)}.get(field.type, (entry.as_string(), String))
        if not field.defaults:
            return typed
        default = case(*[(self.run.technique == technique, literal(self._typed(field, value), sql_type))
                         for technique, value in field.defaults])
        return func.coalesce(typed, default)

    def _metric(self, name: str) -> ColumnElement:
        stored_table, sample_table = RunMetricRecord.__table__, MetricRecord.__table__
        stored, samples = stored_table.c, sample_table.c
        value = (select(stored.value).where(stored.run_id == self.run.id, stored.name == name)
                 .scalar_subquery())
        has_row = exists().where(stored.run_id == self.run.id, stored.name == name)
        live = (select(func.avg(samples.value)).where(samples.run_id == self.run.id, samples.name == name)
                .scalar_subquery())
        return case((self.run.status.in_(SETTLED), value), (has_row, value), else_=live)

    def _elements(self, field: Field):
        """A correlated select of the set's elements (`value` column) and that column."""
        if field.type == TAGS:
            elements = json_list_elements(self.dialect, self.run.tags)
            return select(elements.c.value).select_from(elements), elements.c.value
        members = SweepRunRecord.__table__.c
        return select(members.sweep_id).where(members.run_id == self.run.id), members.sweep_id

    @staticmethod
    def _typed(field: Field, value: Any) -> Any:
        """A parameter's value as its accessor reads it (numbers as floats)."""
        return float(value) if field.type in NUMERIC else value

    def _bound(self, field: Field, value: Any) -> ColumnElement:
        if field.type == TIME:
            return comparable_time(self.dialect, literal(value, DateTime(timezone=True)))
        if field.source == "param":
            sql_type = {INT: Float, FLOAT: Float, BOOL: Boolean}.get(field.type, String)
            return literal(self._typed(field, value), sql_type)
        if field.type in (INT, SWEEPS):  # 64-bit (seeds), unless the value has a fraction: steps > 2.5
            return literal(value, BigInteger) if isinstance(value, int) else literal(float(value), Float)
        if field.type == FLOAT:
            return literal(float(value), Float)
        return literal(value, String)

    # --- conditions ---------------------------------------------------------------------

    def condition(self, node: Node) -> ColumnElement[bool]:
        """The node as a two-valued SQL condition (never NULL: see the module docstring)."""
        if isinstance(node, And):
            return and_(true(), *[self.condition(part) for part in node.parts])
        if isinstance(node, Or):
            return or_(false(), *[self.condition(part) for part in node.parts])
        if isinstance(node, Not):
            return not_(self.condition(node.part))
        if node.field.type in SETS:
            return self._set_condition(node)
        return self._scalar_condition(node)

    def _scalar_condition(self, node: Comparison) -> ColumnElement[bool]:
        field, op = node.field, node.op
        value = self.value(field)
        if op == "is null":
            return value.is_(None)
        if op == "is not null":
            return value.is_not(None)
        if field.type == TIME:
            value = comparable_time(self.dialect, value)
        if op in ("in", "not in"):
            choices = [self._bound(field, item) for item in node.value]
            test = value.in_(choices) if op == "in" else value.not_in(choices)
        elif op in ("contains", "not contains"):
            test = value.icontains(str(node.value), autoescape=True)
            test = test if op == "contains" else not_(test)
        else:
            test = value.operate(_COMPARE[op], self._bound(field, node.value))
        # NULL (a missing value) compares as false: the value is computed once, not tested twice.
        return func.coalesce(test, false())

    def _set_condition(self, node: Comparison) -> ColumnElement[bool]:
        elements, element = self._elements(node.field)
        op = node.op
        if op in ("is null", "is not null"):
            found = exists(elements)
            return not_(found) if op == "is null" else found
        if op in ("in", "not in"):
            test = element.in_([self._bound(node.field, item) for item in node.value])
        elif op in ("contains", "not contains"):
            test = element.icontains(str(node.value), autoescape=True)
        elif op in ("=", "!="):
            test = element == self._bound(node.field, node.value)
        else:
            test = element.operate(_COMPARE[op], self._bound(node.field, node.value))
        found = exists(elements.where(test))
        return not_(found) if op in ("!=", "not in", "not contains") else found

    # --- order --------------------------------------------------------------------------

    def order(self, keys: Sequence[SortKey]) -> list[ColumnElement]:
        """ORDER BY terms: each key with its missing values last (whichever the direction),
        then the run id, so the order is total and the same on both backends."""
        terms: list[ColumnElement] = []
        for key in keys:
            value = self.value(key.field)
            if key.field.type == TIME:
                value = comparable_time(self.dialect, value)
            elif key.field.type == TEXT:
                value = byte_order(self.dialect, value)
            terms.append((value.desc() if key.descending else value.asc()).nulls_last())
        return terms + [self.run.id.asc()]


_COMPARE = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
            ">=": operator.ge}


_LISTED_IDS = 1000


class QueryMixin:
    """Store methods that filter, sort and cut runs; mixed into `Store` (needs `session`,
    `_status_counts`, `_progress_by_run`, `_run_info`)."""

    def _query(self, session, where: Node | None, order: Sequence[SortKey], limit: int | None,
               run_ids: Sequence[int] | None, columns=None):
        compiler = RunQuery(session.get_bind().dialect.name)
        query = select(*(columns if columns is not None else [RunRecord.__table__]))
        if where is not None:
            query = query.where(compiler.condition(where))
        if run_ids is not None:
            query = query.where(RunRecord.id.in_(list(run_ids)))
        query = query.order_by(*compiler.order(order))
        return query.limit(limit) if limit is not None else query

    def query_run_ids(self, where: Node | None = None, order: Sequence[SortKey] = (), limit: int | None = None, *,
                      run_ids: Sequence[int] | None = None) -> list[int]:
        """Ids of the runs matching `where` (among `run_ids` if given), ordered by `order`
        (missing values last, then by id), at most `limit`."""
        with self.session() as session:
            query = self._query(session, where, order, limit, run_ids, columns=[RunRecord.id])
            return list(session.connection().execute(query).scalars().all())

    def find_runs(self, where: Node | None = None, order: Sequence[SortKey] = (), limit: int | None = None, *,
                  run_ids: Sequence[int] | None = None) -> list[RunInfo]:
        """As `query_run_ids`, the runs themselves (with live progress where running)."""
        with self.session() as session:
            query = self._query(session, where, order, limit, run_ids)
            records = session.connection().execute(query).all()
            ids = [r.id for r in records]
            # Few ids go as a list; many as the query itself (backends cap bound parameters).
            chosen = ids if len(ids) <= _LISTED_IDS else query.with_only_columns(RunRecord.id).scalar_subquery()
            counts = self._status_counts(session, chosen)
            progress = self._progress_by_run(session, [r.id for r in records if r.status == RunStatus.RUNNING])
            return [self._run_info(r, counts.get(r.id, {}), progress.get(r.id)) for r in records]


__all__ = ["And", "Comparison", "Field", "Node", "Not", "Or", "QueryMixin", "RUN_FIELDS", "RunQuery", "SortKey"]
