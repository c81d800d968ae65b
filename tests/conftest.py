"""Shared fixtures: tiny generated FER2013 data in both formats, and the real data when present; the fast lane's
rules (tests/fast_lane.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fer_model.classes import CLASSES, CSV_CODE_NAMES  # noqa: E402
from tests.fast_lane import GUARD, mark_slow_what_needs_data_or_servers  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN_URL = os.environ.get("FER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_slow_what_needs_data_or_servers(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    with GUARD.watching(item):
        return (yield)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new PostgreSQL database on the real server (127.0.0.1:5432), dropped on exit; yields its URL."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"fer_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is required for these tests: {error}")
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database on the real server (127.0.0.1:5432), dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def database_url(request, tmp_path) -> str:
    """An empty database of each kind: a SQLite file, and a fresh database on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fer.db'}"
    return request.getfixturevalue("postgres_url")


def annotate_json(paths, database: str, *options: str, exit_code: int = 0) -> dict:
    """Run `fer annotate PATHS --db DATABASE --format json OPTIONS` in-process; check its exit code, return its report."""
    import json

    from click.testing import CliRunner

    from cli.main import fer

    targets = [str(paths)] if isinstance(paths, (str, os.PathLike)) else [str(p) for p in paths]
    result = CliRunner().invoke(fer, ["annotate", *targets, "--db", database, "--format", "json", *options])
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


def real_data_dir() -> Path:
    GUARD.refuse_unless_slow("the data under FER_DATA_DIR")
    return Path(os.environ.get("FER_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own dataset cache, so no test sees another's."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    path = real_data_dir() / "photos"
    if not path.is_dir():
        pytest.skip(f"photos not found at {path} (set FER_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def sample_archive(tmp_path_factory, photos_dir) -> Path:
    """A small archive of real photos with awkward names, dates, a group photo and failures (tests/archives.py)."""
    from tests.archives import build_sample_archive

    return build_sample_archive(tmp_path_factory.mktemp("sample-archive"), photos_dir)


@pytest.fixture(scope="session")
def annotated_sqlite(sample_archive, tmp_path_factory) -> str:
    """The URL of a SQLite database holding a real `fer annotate` run over the sample archive."""
    from tests.archives import annotate

    url = f"sqlite:///{tmp_path_factory.mktemp('annotated') / 'fer.db'}"
    annotate(sample_archive, url)
    return url


@pytest.fixture(scope="session")
def fer2013_dir() -> Path:
    path = real_data_dir() / "fer2013"
    if not (path / "train").is_dir():
        pytest.skip(f"FER2013 data not found at {path} (set FER_DATA_DIR)")
    return path


def face(seed: int, label: int) -> np.ndarray:
    """A 48x48 face-like test image whose brightness pattern depends on its class."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, size=(48, 48)).astype(np.uint8)
    image[label * 6 : label * 6 + 6, :] += 150
    return image


def write_image_folders(root: Path, per_class: int = 3, layout: str = "prefixed") -> dict[str, int]:
    """Kaggle-style folders. 'prefixed': Training_/PublicTest_/PrivateTest_ names under train/ and test/;
    'plain': no prefixes, split from the folder names train/, val/, test/. Returns images per split."""
    counts = {"train": 0, "val": 0, "test": 0}
    seed = 0
    for split in ("train", "val", "test"):
        for label, name in enumerate(CLASSES):
            if layout == "prefixed":
                folder = root / ("train" if split == "train" else "test") / name
                prefix = {"train": "Training_", "val": "PublicTest_", "test": "PrivateTest_"}[split]
            else:
                folder = root / split / name
                prefix = ""
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(per_class):
                seed += 1
                cv2.imwrite(str(folder / f"{prefix}{seed}.png"), face(seed, label))
                counts[split] += 1
    return counts


def write_csv(path: Path, rows_per_class: int = 2, usage: bool = True) -> list[tuple[int, str]]:
    """The original fer2013.csv format; returns (emotion code, usage) for each row."""
    code_of = {name: code for code, name in CSV_CODE_NAMES.items()}
    rows: list[tuple[int, str]] = []
    lines = ["emotion,pixels,Usage" if usage else "emotion,pixels"]
    seed = 1000
    for split_usage in ("Training", "PublicTest", "PrivateTest") if usage else ("Training",):
        for label, name in enumerate(CLASSES):
            for _ in range(rows_per_class):
                seed += 1
                pixels = " ".join(str(v) for v in face(seed, label).ravel())
                code = code_of[name]
                lines.append(f"{code},{pixels},{split_usage}" if usage else f"{code},{pixels}")
                rows.append((code, split_usage))
    path.write_text("\n".join(lines) + "\n")
    return rows
