"""File helpers shared by the data cache, training, model cards, reports and the workers."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

NEW_FILE_MODE = 0o644


def data_home() -> Path:
    """Where the project keeps a user's files (the local database, training runs):
    $XDG_DATA_HOME/fer-pipeline, by default ~/.local/share/fer-pipeline."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "fer-pipeline"


def under_roots(path: str, roots: Sequence[str]) -> bool:
    """True when ``path`` is one of ``roots`` or lies below one (by name: links are not resolved here)."""
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block succeeds, the file is flushed to disk and
    renamed over ``path`` in one step.

    Readers see the old file or the whole new one, never a part, even after a crash: the data reaches the disk
    before the rename does. On error nothing is left behind. The temporary name keeps the file's suffix (Keras
    and NumPy choose formats by it). A new file gets mode 0644; an existing one keeps its mode.
    """
    path = Path(path)
    mode = path.stat().st_mode & 0o7777 if path.exists() else NEW_FILE_MODE
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        _fsync(temporary)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _fsync(path: str) -> None:
    """Flush the file's data to the disk (whoever wrote it: any descriptor of the file will do)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", newline: str | None = None) -> Iterator[IO[Any]]:
    """An open file (``mode`` "w" text in UTF-8, or "wb") that replaces ``path`` whole when the block succeeds
    (see `atomic_path`); raises OSError."""
    with atomic_path(path) as temporary:
        with open(temporary, mode, encoding=None if "b" in mode else "utf-8", newline=newline) as handle:
            yield handle


def write_atomically(path: str | os.PathLike, content: str | bytes) -> None:
    """Write a whole file atomically (see `atomic_path`); raises OSError."""
    with atomic_open(path, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)
