"""Find the image files below the folders (or among the files) a user names."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

from fer_model.files import under_roots

DEFAULT_EXTENSIONS = ("jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp")


class DiscoveryError(Exception):
    """A named path does not exist, or is neither a file nor a folder."""


def parse_extensions(text: str) -> tuple[str, ...]:
    extensions = tuple(part.strip().lower().lstrip(".") for part in text.split(",") if part.strip())
    if not extensions:
        raise DiscoveryError("--ext needs at least one extension, e.g. jpg,png")
    return extensions


def find_images(
    paths: Sequence[str],
    *,
    recursive: bool = True,
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    follow_symlinks: bool = False,
    skipped: list[tuple[str, str]] | None = None,
    unlisted: list[tuple[str, str]] | None = None,
) -> Iterator[str]:
    """Absolute paths of image files, each once, in a stable order.

    A folder is walked whatever its name (``album.jpg/`` too). Symlinked folders are followed
    only with ``follow_symlinks`` (never round a loop). Entries that are not image files to
    annotate (links to folders not followed, link loops, broken links named like images) are
    appended to ``skipped`` as (path, reason); folders that cannot be listed (permission denied)
    are appended to ``unlisted`` as (path, reason), given folders included.
    """
    suffixes = tuple("." + e.lower() for e in extensions)
    skipped = skipped if skipped is not None else []
    unlisted = unlisted if unlisted is not None else []
    seen: set[str] = set()
    for given in paths:
        if not os.path.lexists(given):
            raise DiscoveryError(f"{given}: no such file or directory")
        root = os.path.abspath(given)
        if os.path.isfile(root):
            candidates: Iterable[str] = [root]
        elif os.path.isdir(root):
            candidates = _walk(root, recursive, suffixes, follow_symlinks, skipped, unlisted)
        else:
            raise DiscoveryError(f"{given}: not a file or folder")
        for path in candidates:
            if path.lower().endswith(suffixes) and path not in seen:
                seen.add(path)
                yield path


LINK_NOT_FOLLOWED = "symbolic link to a folder, not followed (--follow-symlinks follows it)"
LINK_LOOP = "symbolic link loop (a link to a folder that holds it)"
LINK_ALREADY_LISTED = "symbolic link to a folder already listed"
BROKEN_LINK = "broken symbolic link"


def _walk(
    root: str, recursive: bool, suffixes: tuple[str, ...], follow_symlinks: bool, skipped: list[tuple[str, str]],
    unlisted: list[tuple[str, str]],
) -> Iterator[str]:
    """Files first, then each sub-folder, in name order. Directory entries carry their type, so a regular
    file is listed without a stat of its own (incremental planning and detection stat it later)."""
    visited: set[str] = set()

    def walk(folder: str) -> Iterator[str]:
        visited.add(os.path.realpath(folder))
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            unlisted.append((folder, listing_failure(error)))
            return
        subfolders = []
        for entry in entries:
            if not entry.is_dir():
                continue
            reason = _skipped_folder(entry.path, follow_symlinks, visited)
            if reason is not None and recursive:
                skipped.append((entry.path, reason))
            elif recursive and (follow_symlinks or not entry.is_symlink()):
                subfolders.append(entry.path)
        for entry in entries:
            if entry.is_dir():
                continue
            if entry.is_file():
                yield entry.path
            elif entry.name.lower().endswith(suffixes):
                skipped.append((entry.path, BROKEN_LINK if entry.is_symlink() else "not a regular file"))
        for subfolder in subfolders:
            yield from walk(subfolder)

    yield from walk(root)


def listing_failure(error: OSError) -> str:
    """Why a folder could not be listed, in a few words."""
    return f"folder cannot be listed: {(error.strerror or str(error)).lower()}"


def _skipped_folder(path: str, follow_symlinks: bool, visited: set[str]) -> str | None:
    """Why a sub-folder is not walked (None: it is, or it is simply not descended into with --no-recursive)."""
    if os.path.islink(path):
        real = os.path.realpath(path)
        if under_roots(os.path.realpath(os.path.dirname(path)), [real]):
            return LINK_LOOP
        if real in visited:
            return LINK_ALREADY_LISTED
        if not follow_symlinks:
            return LINK_NOT_FOLLOWED
        visited.add(real)
    return None
