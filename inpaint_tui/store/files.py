"""Files in the data folder: atomic writes and portable file names (kept behind this one
small module, so an object store can follow)."""

from __future__ import annotations

import os
from pathlib import Path


def safe_file_stem(name: str) -> str:
    """`name` as a portable file-name part (letters, digits, - _ . only; at most 80 characters)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "sample"


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves a truncated image.
    On a failed write (ENOSPC, EACCES, EFBIG, ...) the temporary file is removed and the
    OSError propagates (it carries the errno and the file name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except BaseException:  # disk full, permission, interrupt: never leave a partial file behind
        temporary.unlink(missing_ok=True)
        raise


class DataFiles:
    """The data folder's files, named by paths relative to its root (`runs/3/0000-x.png`):
    every read and write of images the store and the jobs layer make goes through here, so
    an object store (fsspec) can replace this class without touching them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def local_path(self, relative: str) -> Path:
        """Where the file is for libraries that need a path (PIL, a KID cache, a viewer); an
        object store would download to a cache here, or return its URL."""
        return self.root / relative

    url_for = local_path

    def exists(self, relative: str) -> bool:
        return (self.root / relative).exists()

    def read_bytes(self, relative: str) -> bytes:
        return (self.root / relative).read_bytes()

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Atomic: readers see the old file, the new one, or none, never a part."""
        atomic_write(self.root / relative, data)

    def remove(self, relative: str) -> None:
        (self.root / relative).unlink(missing_ok=True)

    def remove_tree(self, relative: str) -> int:
        """Remove a folder and everything under it; returns the number of files removed."""
        import shutil

        folder = self.root / relative
        removed = sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
        shutil.rmtree(folder, ignore_errors=True)
        return removed

    def remove_partials(self, relative: str) -> None:
        """Temporary files a killed writer left in a folder (finished files have final names)."""
        folder = self.root / relative
        if folder.is_dir():
            for partial in folder.glob(".*.tmp"):
                partial.unlink(missing_ok=True)
