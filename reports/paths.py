"""How the report names files: short paths relative to the job's roots, and file:// links."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import PurePosixPath

from fer_model.files import under_roots


def display_path(path: str, roots: Sequence[str]) -> str:
    """``path`` relative to the innermost job root holding it, prefixed by that root's name."""
    best: str | None = None
    for root in roots:
        root = root.rstrip("/") or "/"
        if under_roots(path, [root]):
            if best is None or len(root) > len(best):
                best = root
    if best is None:
        return path
    relative = os.path.relpath(path, best)
    name = PurePosixPath(best).name
    if not name:  # the root is "/"
        return path
    return name if relative == "." else f"{name}/{relative}"


def file_uri(path: str) -> str | None:
    """A file:// URI for an absolute path (percent-encoded), or None for a relative one."""
    pure = PurePosixPath(path)
    return pure.as_uri() if pure.is_absolute() else None
