"""File helpers shared by the data cache, training, model cards, reports and the workers."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NEW_FILE_MODE = 0o644


def data_home() -> Path:
    """Where the project keeps a user's files (the local database, training runs):
    $XDG_DATA_HOME/fer-pipeline, by default ~/.local/share/fer-pipeline."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "fer-pipeline"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` in one step when the block succeeds.

    Readers see the old file or the whole new one, never a part; on error nothing is left behind.
    The temporary name keeps the file's suffix (Keras and NumPy choose formats by it). A new file
    gets mode 0644; an existing one keeps its mode.
    """
    path = Path(path)
    mode = path.stat().st_mode & 0o7777 if path.exists() else NEW_FILE_MODE
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomically(path: str | os.PathLike, content: str | bytes) -> None:
    """Write a whole file atomically (see `atomic_path`); raises OSError."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb" if isinstance(content, bytes) else "w", encoding=None if isinstance(content, bytes) else "utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
