"""Find the image files below the folders (or among the files) a user names."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

DEFAULT_EXTENSIONS = ("jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp")


class DiscoveryError(Exception):
    """A named path does not exist or cannot be listed."""


def parse_extensions(text: str) -> tuple[str, ...]:
    extensions = tuple(part.strip().lower().lstrip(".") for part in text.split(",") if part.strip())
    if not extensions:
        raise DiscoveryError("--ext needs at least one extension, e.g. jpg,png")
    return extensions


def find_images(paths: Sequence[str], *, recursive: bool = True, extensions: Iterable[str] = DEFAULT_EXTENSIONS) -> Iterator[str]:
    """Absolute paths of image files, each once, in a stable order. Symlinked folders are not followed."""
    suffixes = tuple("." + e.lower() for e in extensions)
    seen: set[str] = set()
    for given in paths:
        if not os.path.lexists(given):
            raise DiscoveryError(f"{given}: no such file or directory")
        root = os.path.abspath(given)
        if os.path.isfile(root):
            candidates: Iterable[str] = [root]
        elif os.path.isdir(root):
            candidates = _walk(root, recursive)
        else:
            raise DiscoveryError(f"{given}: not a file or folder")
        for path in candidates:
            if path.lower().endswith(suffixes) and path not in seen:
                seen.add(path)
                yield path


def _walk(root: str, recursive: bool) -> Iterator[str]:
    if not recursive:
        with os.scandir(root) as entries:
            yield from sorted(entry.path for entry in entries if entry.is_file())
        return
    for folder, subfolders, files in os.walk(root, followlinks=False):
        subfolders.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                yield path
