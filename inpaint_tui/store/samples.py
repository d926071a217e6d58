"""Samples in the store: importing (files under content hashes), sample sets and sample
reads; mixed into `Store`."""

from __future__ import annotations

import hashlib
import json
from typing import Callable, Iterable, Sequence

from sqlalchemy import func
from sqlmodel import Session, select

from inpaint_tui.store.db import NotFound, StoreError
from inpaint_tui.store.tables import SampleRecord, SampleSetMember, SampleSetRecord
from inpaint_tui.store.views import ImportReport, NewSample, SampleInfo, SampleSetInfo


IMPORT_CHUNK = 500  # rows per flush of an import's transaction (and per key lookup, below SQLite's parameter limit)


class SampleMixin:
    """Store methods for samples and sample sets; mixed into `Store` (needs `session`,
    `files`, `path`)."""

    def _write_content_addressed(self, data: bytes, suffix: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        relative = f"samples/{digest[:2]}/{digest}{suffix}"
        if not self.files.exists(relative):  # same name, same bytes: already there from an earlier import
            self.files.write_bytes(relative, data)
        return relative

    def import_samples(
        self, set_name: str, items: Iterable[NewSample], on_progress: Callable[[int, int | None], None] | None = None,
        *, total: int | None = None,
    ) -> ImportReport:
        """Add samples (deduplicated by content key) and append them to a set, in one
        transaction: a failure leaves neither new rows nor a partial set. Files are written
        first under content hashes, so a failed import at most leaves files a retry reuses.
        `items` is read once, each sample's encoded files written and let go before the next
        (a generator keeps one sample's bytes in memory, not every sample's); `on_progress(done,
        total)` follows the file writes (the slow part), `total` defaulting to len(items) (None
        for an iterator of unknown length)."""
        if not set_name.strip():
            raise StoreError("a sample set needs a non-empty name")
        self.require_writable_data_dir()
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        rows = []  # what the transaction needs of each sample, without its bytes
        for index, item in enumerate(items):
            if on_progress is not None:
                on_progress(index, total)
            image = self._write_content_addressed(item.image_png, ".png")
            mask = self._write_content_addressed(item.mask_png, ".png")
            reference = None if item.reference_png is None else self._write_content_addressed(item.reference_png, ".png")
            # Compact (meta as JSON text): an import of 10,000 samples holds 10,000 of these.
            rows.append((item.key, item.name, item.prompt, image, mask, reference, item.width, item.height,
                         item.source, json.dumps(item.meta)))
        added = present = 0
        with self.session() as session:
            sample_set = session.exec(select(SampleSetRecord).where(SampleSetRecord.name == set_name)).first()
            if sample_set is None:
                sample_set = SampleSetRecord(name=set_name)
                session.add(sample_set)
                session.flush()
            set_id = sample_set.id
            members = set(session.exec(select(SampleSetMember.sample_id).where(SampleSetMember.set_id == set_id)).all())
            position = len(members)
            for start in range(0, len(rows), IMPORT_CHUNK):
                chunk = rows[start:start + IMPORT_CHUNK]
                keys = [row[0] for row in chunk]
                known = dict(session.exec(select(SampleRecord.key, SampleRecord.id).where(SampleRecord.key.in_(keys))).all())
                for key, name, prompt, image, mask, reference, width, height, source, meta in chunk:
                    sample_id = known.get(key)
                    if sample_id is None:
                        record = SampleRecord(key=key, name=name, prompt=prompt, image_path=image, mask_path=mask,
                                              reference_path=reference, width=width, height=height, source=source,
                                              meta=json.loads(meta))
                        session.add(record)
                        session.flush()
                        sample_id = known[key] = record.id
                        added += 1
                    else:
                        present += 1
                    if sample_id not in members:
                        session.add(SampleSetMember(set_id=set_id, sample_id=sample_id, position=position))
                        members.add(sample_id)
                        position += 1
                session.flush()
                session.expunge_all()  # one chunk's ORM objects at a time, in the one transaction
            session.commit()
        return ImportReport(set_name=set_name, added=added, already_present=present, total_in_set=len(members))

    def present_keys(self, keys: Sequence[str]) -> dict[str, str]:
        """{content key: stored name} for those of `keys` already stored (read only: what a
        dry run reports as already present)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        with self.session() as session:
            for start in range(0, len(wanted), 500):  # stay below SQLite's bound-parameter limit
                chunk = wanted[start:start + 500]
                rows = session.exec(select(SampleRecord.key, SampleRecord.name).where(SampleRecord.key.in_(chunk)))
                found.update({key: name for key, name in rows.all()})
        return found

    def create_sample_set(self, name: str, sample_ids: Sequence[int]) -> ImportReport:
        """Make a sample set of existing samples, or append them to an existing set (after its
        current members, in the order given; samples already in it keep their place), in one
        transaction. StoreError for an empty name or no samples, NotFound for unknown ids."""
        name = name.strip()
        if not name:
            raise StoreError("a sample set needs a non-empty name")
        ids = list(dict.fromkeys(int(sample_id) for sample_id in sample_ids))
        if not ids:
            raise StoreError(f"sample set {name!r}: no samples given")
        with self.session() as session:
            known = set(session.exec(select(SampleRecord.id).where(SampleRecord.id.in_(ids))).all())
            missing = [sample_id for sample_id in ids if sample_id not in known]
            if missing:
                raise NotFound(f"no sample with id {', '.join(map(str, missing))}")
            sample_set = session.exec(select(SampleSetRecord).where(SampleSetRecord.name == name)).first()
            if sample_set is None:
                sample_set = SampleSetRecord(name=name)
                session.add(sample_set)
                session.flush()
            in_set = SampleSetMember.set_id == sample_set.id
            members = set(session.exec(select(SampleSetMember.sample_id).where(in_set)).all())
            last = session.exec(select(func.max(SampleSetMember.position)).where(in_set)).one()
            position = 0 if last is None else last + 1
            added = 0
            for sample_id in ids:
                if sample_id not in members:
                    session.add(SampleSetMember(set_id=sample_set.id, sample_id=sample_id, position=position))
                    position += 1
                    added += 1
            session.commit()
        return ImportReport(set_name=name, added=added, already_present=len(ids) - added,
                            total_in_set=len(members) + added)

    def sample_sets(self) -> list[SampleSetInfo]:
        with self.session() as session:
            rows = session.exec(
                select(SampleSetRecord, func.count(SampleSetMember.sample_id))
                .join(SampleSetMember, SampleSetMember.set_id == SampleSetRecord.id, isouter=True)
                .group_by(SampleSetRecord.id)
                .order_by(SampleSetRecord.name)
            ).all()
            return [SampleSetInfo(name=s.name, sample_count=count, created_at=s.created_at) for s, count in rows]

    def samples(self, set_name: str | None = None) -> list[SampleInfo]:
        """All samples, or a set's samples in set order."""
        with self.session() as session:
            if set_name is None:
                records = session.exec(select(SampleRecord).order_by(SampleRecord.id)).all()
            else:
                sample_set = self._set(session, set_name)
                records = session.exec(
                    select(SampleRecord)
                    .join(SampleSetMember, SampleSetMember.sample_id == SampleRecord.id)
                    .where(SampleSetMember.set_id == sample_set.id)
                    .order_by(SampleSetMember.position)
                ).all()
            return [self._sample_info(r) for r in records]

    def sample(self, sample_id: int) -> SampleInfo:
        with self.session() as session:
            record = session.get(SampleRecord, sample_id)
            if record is None:
                raise NotFound(f"no sample with id {sample_id}")
            return self._sample_info(record)

    def set_sample_ids(self, set_name: str) -> list[int]:
        """The set's sample ids in set order."""
        with self.session() as session:
            sample_set = self._set(session, set_name)
            return list(session.exec(
                select(SampleSetMember.sample_id).where(SampleSetMember.set_id == sample_set.id)
                .order_by(SampleSetMember.position)
            ).all())

    def sample_set_names(self, sample_id: int) -> list[str]:
        with self.session() as session:
            return list(
                session.exec(
                    select(SampleSetRecord.name)
                    .join(SampleSetMember, SampleSetMember.set_id == SampleSetRecord.id)
                    .where(SampleSetMember.sample_id == sample_id)
                    .order_by(SampleSetRecord.name)
                ).all()
            )

    def _set(self, session: Session, name: str) -> SampleSetRecord:
        found = session.exec(select(SampleSetRecord).where(SampleSetRecord.name == name)).first()
        if found is None:
            known = ", ".join(session.exec(select(SampleSetRecord.name)).all()) or "none yet"
            raise NotFound(f"no sample set named {name!r} (known: {known}); import one with `inpaint-tui samples import`")
        return found

    def _sample_info(self, record: SampleRecord) -> SampleInfo:
        return SampleInfo(
            id=record.id,
            key=record.key,
            name=record.name,
            prompt=record.prompt,
            image_path=self.path(record.image_path),
            mask_path=self.path(record.mask_path),
            reference_path=self.path(record.reference_path),
            width=record.width,
            height=record.height,
            source=record.source,
            meta=dict(record.meta),
        )
