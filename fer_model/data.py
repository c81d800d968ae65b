"""Read FER2013 from its two public formats into cached uint8 arrays.

Formats:
- image folders (Kaggle layout): ``<root>/<folder>/<class>/<file>`` with 48x48 gray images;
- the original CSV: ``emotion,pixels,Usage`` with 2304 space-separated pixel values a row.

Splits come from the FER2013 ``Usage`` (the CSV column, or a file-name prefix such as
``Training_123.jpg``): Training -> train, PublicTest -> val, PrivateTest -> test. Files
without a prefix fall back to their top folder's name (``train/``, ``val/``, ``test/``).

Decoding ~36k images takes a while, so the arrays are cached under a key made from the
source's content: a second load of unchanged data reads one ``.npz`` file.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_model.classes import CLASSES, CSV_CODE_TO_INDEX, FACE_SIZE
from fer_model.files import atomic_path, file_sha256

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_TITLES: dict[str, str] = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
USAGE_TO_SPLIT: dict[str, str] = {"training": "train", "publictest": "val", "privatetest": "test"}
FOLDER_TO_SPLIT: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "publictest": "val",
    "test": "test",
    "privatetest": "test",
}
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".webp", ".tif", ".tiff"})
CACHE_VERSION = 1


class DataError(Exception):
    """Bad FER2013 input; the message names the file or CSV line."""


@dataclass(frozen=True)
class Split:
    """One split: (N, 48, 48) uint8 faces, (N,) class indices into CLASSES, and where each came from."""

    images: np.ndarray
    labels: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(CLASSES))
        return {name: int(n) for name, n in zip(CLASSES, counts)}

    def subset(self, indices: np.ndarray) -> Split:
        return Split(self.images[indices], self.labels[indices], self.sources[indices])


@dataclass
class Dataset:
    """FER2013 splits read from one source. A split with no examples is empty, never missing."""

    source: Path
    splits: dict[str, Split]
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    from_cache: bool = False

    def __getitem__(self, name: str) -> Split:
        return self.splits[name]

    def has(self, name: str) -> bool:
        return len(self.splits[name]) > 0

    def evaluation_split(self, requested: str) -> tuple[str, str | None]:
        """The split to evaluate on, and a note when it differs from the one requested.

        FER2013's PrivateTest is often withheld; asking for ``test`` then falls back to
        PublicTest (``val``) and says so.
        """
        if requested not in SPLITS:
            raise DataError(f"unknown split {requested!r}; expected one of {', '.join(SPLITS)}")
        if self.has(requested):
            return requested, None
        if requested == "test" and self.has("val"):
            return "val", "PrivateTest (split 'test') is absent from this data; evaluating on PublicTest (split 'val')"
        raise DataError(f"split {requested!r} has no images in {self.source}")


class _BadData:
    """Collects bad items: raises on the first unless skipping, then counts."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.count = 0
        self.examples: list[str] = []

    def __call__(self, message: str, n: int = 1) -> None:
        if not self.skip_bad:
            raise DataError(message)
        self.count += n
        if len(self.examples) < 20:
            self.examples.append(message)


def default_cache_dir() -> Path:
    base = os.environ.get("FER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fer-pipeline"
    )
    return Path(base) / "datasets"


def split_from_name(file_name: str) -> str | None:
    """The split named by a FER2013 file-name prefix (``PublicTest_123.jpg`` -> ``val``), if any."""
    prefix = file_name.split("_", 1)[0].lower() if "_" in file_name else ""
    return USAGE_TO_SPLIT.get(prefix)


def load_fer2013(
    source: str | os.PathLike,
    *,
    skip_bad: bool = False,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Load FER2013 from an image-folder root or a CSV file, using the content-keyed cache."""
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_dir():
        csv_files = sorted(path.glob("*.csv"))
        has_folders = any(p.is_dir() for p in path.iterdir())
        if not has_folders and len(csv_files) == 1:
            path = csv_files[0]
    if path.is_file():
        content_key, build = _csv_key(path), lambda: _read_csv(path, _BadData(skip_bad))
    else:
        files = _image_files(path)
        if not files:
            raise DataError(f"{path}: no images found (expected <split>/<class>/<image> folders or a CSV file)")
        content_key, build = _folder_key(path, files), lambda: _read_folders(path, files, _BadData(skip_bad))

    key = hashlib.sha256(f"v{CACHE_VERSION}|skip_bad={skip_bad}|{content_key}".encode()).hexdigest()[:32]
    cache_file = Path(cache_dir or default_cache_dir()) / f"fer2013-{key}.npz"
    if use_cache and cache_file.exists():
        try:
            return _read_cache(path, cache_file)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    dataset = build()
    if use_cache:
        _write_cache(dataset, cache_file)
    return dataset


def _image_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _folder_key(root: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return "folders:" + digest.hexdigest()


def _csv_key(path: Path) -> str:
    return "csv:" + file_sha256(path)


def _read_folders(root: Path, files: list[Path], bad: _BadData) -> Dataset:
    collected: dict[str, list[tuple[np.ndarray, int, str]]] = {name: [] for name in SPLITS}
    for file in files:
        relative = file.relative_to(root)
        if len(relative.parts) != 3:
            bad(f"{file}: expected <split>/<class>/<image> below {root}")
            continue
        folder, class_folder, name = relative.parts
        split = split_from_name(name) or FOLDER_TO_SPLIT.get(folder.lower())
        if split is None:
            bad(f"{file}: cannot tell its split: no Training_/PublicTest_/PrivateTest_ prefix and folder {folder!r} is not train, val or test")
            continue
        if class_folder.lower() not in CLASSES:
            bad(f"{file}: unknown class folder {class_folder!r}; expected one of {', '.join(CLASSES)}")
            continue
        image = _decode(file, bad)
        if image is not None:
            collected[split].append((image, CLASSES.index(class_folder.lower()), str(file)))
    return _dataset(root, collected, bad)


def _decode(file: Path, bad: _BadData) -> np.ndarray | None:
    data = np.fromfile(file, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        bad(f"{file}: unreadable image")
        return None
    if image.shape != (FACE_SIZE, FACE_SIZE):
        bad(f"{file}: wrong size {image.shape[1]}x{image.shape[0]}, expected {FACE_SIZE}x{FACE_SIZE}")
        return None
    return image


def _read_csv(path: Path, bad: _BadData) -> Dataset:
    collected: dict[str, list[tuple[np.ndarray, int, str]]] = {name: [] for name in SPLITS}
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        header = [column.strip().lower() for column in next(reader, [])]
        if "emotion" not in header or "pixels" not in header:
            raise DataError(f"{path} line 1: expected a header with 'emotion' and 'pixels' columns, got {header}")
        emotion_at, pixels_at = header.index("emotion"), header.index("pixels")
        usage_at = header.index("usage") if "usage" in header else None
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            where = f"{path} line {line}"
            parsed = _parse_row(row, len(header), emotion_at, pixels_at, usage_at, where, bad)
            if parsed is not None:
                image, label, split = parsed
                collected[split].append((image, label, f"{path.name}:{line}"))
    return _dataset(path, collected, bad)


def _parse_row(
    row: list[str],
    width: int,
    emotion_at: int,
    pixels_at: int,
    usage_at: int | None,
    where: str,
    bad: Callable[[str], None],
) -> tuple[np.ndarray, int, str] | None:
    if len(row) != width:
        bad(f"{where}: expected {width} columns, got {len(row)}")
        return None
    try:
        code = int(row[emotion_at])
        label = CSV_CODE_TO_INDEX[code]
    except (ValueError, KeyError):
        bad(f"{where}: emotion {row[emotion_at]!r} is not a FER2013 code 0-6")
        return None
    try:
        pixels = np.array([int(value) for value in row[pixels_at].split()], dtype=np.int64)
    except ValueError:
        bad(f"{where}: pixels must be space-separated integers")
        return None
    if pixels.size != FACE_SIZE * FACE_SIZE:
        bad(f"{where}: {pixels.size} pixels, expected {FACE_SIZE * FACE_SIZE} (48x48)")
        return None
    if pixels.min() < 0 or pixels.max() > 255:
        bad(f"{where}: pixel values must lie in 0-255")
        return None
    usage = row[usage_at].strip().lower() if usage_at is not None else "training"
    split = USAGE_TO_SPLIT.get(usage)
    if split is None:
        bad(f"{where}: unknown Usage {row[usage_at]!r}; expected Training, PublicTest or PrivateTest")
        return None
    return pixels.astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE), label, split


def _dataset(source: Path, collected: dict[str, list[tuple[np.ndarray, int, str]]], bad: _BadData) -> Dataset:
    splits = {name: _split(items) for name, items in collected.items()}
    if not any(len(split) for split in splits.values()):
        raise DataError(f"{source}: no usable images" + (f" ({bad.count} skipped as bad)" if bad.count else ""))
    return Dataset(source=source, splits=splits, skipped=bad.count, skipped_examples=bad.examples)


def _split(items: Iterable[tuple[np.ndarray, int, str]]) -> Split:
    items = list(items)
    if not items:
        return Split(
            np.zeros((0, FACE_SIZE, FACE_SIZE), np.uint8), np.zeros((0,), np.int64), np.zeros((0,), dtype="<U1")
        )
    images, labels, sources = zip(*items)
    return Split(np.stack(images), np.array(labels, dtype=np.int64), np.array(sources))


def _write_cache(dataset: Dataset, cache_file: Path) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"skipped": np.array(dataset.skipped)}
    for name, split in dataset.splits.items():
        arrays[f"{name}_images"] = split.images
        arrays[f"{name}_labels"] = split.labels
        arrays[f"{name}_sources"] = split.sources
    with atomic_path(cache_file) as temporary:
        np.savez(temporary, **arrays)


def _read_cache(source: Path, cache_file: Path) -> Dataset:
    with np.load(cache_file, allow_pickle=False) as arrays:
        splits = {
            name: Split(arrays[f"{name}_images"], arrays[f"{name}_labels"], arrays[f"{name}_sources"]) for name in SPLITS
        }
        skipped = int(arrays["skipped"])
    return Dataset(source=source, splits=splits, skipped=skipped, from_cache=True)
