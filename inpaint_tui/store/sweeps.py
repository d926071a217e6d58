"""Sweeps in the store: a grid of runs queued together, some possibly reused."""

from __future__ import annotations

from typing import Any, Sequence

from sqlmodel import select

from inpaint_tui.store.db import NotFound
from inpaint_tui.store.tables import SweepRecord, SweepRunRecord
from inpaint_tui.store.views import SweepInfo


class SweepMixin:
    """Store methods for sweeps; mixed into `Store` (needs `session`)."""

    def create_sweep(
        self, *, name: str | None, spec: dict[str, Any], command: str | None,
        members: Sequence[tuple[int, dict[str, Any], bool]],
    ) -> int:
        """Record a sweep and its runs: (run id, swept values, reused), in grid order."""
        with self.session() as session:
            sweep = SweepRecord(name=name, spec=spec, command=command)
            session.add(sweep)
            session.flush()
            seen = set()
            for position, (run_id, point, reused) in enumerate(members):
                if run_id in seen:  # the same run can serve two grid points only if they are identical
                    continue
                seen.add(run_id)
                session.add(SweepRunRecord(sweep_id=sweep.id, run_id=run_id, position=position, point=point,
                                           reused=reused))
            session.commit()
            return sweep.id

    def sweeps(self) -> list[SweepInfo]:
        with self.session() as session:
            records = session.exec(select(SweepRecord).order_by(SweepRecord.id)).all()
            return [self._sweep_info(session, record) for record in records]

    def sweep(self, sweep_id: int) -> SweepInfo:
        with self.session() as session:
            record = session.get(SweepRecord, sweep_id)
            if record is None:
                raise NotFound(f"no sweep with id {sweep_id}")
            return self._sweep_info(session, record)

    def _sweep_info(self, session, record: SweepRecord) -> SweepInfo:
        members = session.exec(
            select(SweepRunRecord).where(SweepRunRecord.sweep_id == record.id).order_by(SweepRunRecord.position)
        ).all()
        return SweepInfo(
            id=record.id, name=record.name, spec=dict(record.spec), command=record.command,
            created_at=record.created_at, run_ids=[m.run_id for m in members],
            points=[dict(m.point) for m in members], reused=[m.reused for m in members],
        )
