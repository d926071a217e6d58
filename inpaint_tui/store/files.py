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
