"""File helpers shared by the data cache, model cards and the workers."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: str | os.PathLike, content: str | bytes) -> None:
    """Write a file so that readers see the old content or the whole new content, never a part."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    partial = os.path.join(folder, f".{name}.partial")
    with open(partial, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)
    os.replace(partial, path)
