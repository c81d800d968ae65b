"""What each nightly command costs on an archive database of a million annotated images, against 100,000.

    python bench/scale.py [--images 1000000] [--baseline 100000] [--backends sqlite,postgresql]
                          [--broker redis://127.0.0.1:6379/0] [--workdir /tmp/fer-scale] [--photos 1000] [--keep]

1. Templates: `fer annotate` over the first --photos photos of ../shared/data/photos (all 1,000
   by default; once, cached in the work folder): each photo's real faces and labels.
2. Files: a tree of hard links to those photos, one of each a folder (WORKDIR/archive/pNN/bNN/sNN/:
   10 folders a batch, 10 batches a part), as many as --images; a new batch of links whose
   content the database knows (10,000 files); a new folder of the photos with one byte added
   (content never seen, 1,000 files).
3. For each backend and for --baseline and --images: a fresh database holding that many annotated
   images of the tree (bench/scale_archive.py: the project's tables, core inserts on SQLite, COPY
   on PostgreSQL; one finished job per part of 100,000 images), then every command a nightly user
   runs, each as its own `fer` process, timed from start to exit (the best of 3 for those that
   change nothing), with the CPU time of its processes:
   `fer status`, `fer report` of the latest job, `--all`, `--by folder`, `--format html`,
   `fer export` (rows/s and the process's peak memory, against a 1,000-photo job's), the example
   queries of docs/sql.md and both views counted whole (`fer query`'s code, in this process),
   `fer annotate` of the new batch of known content (files/s) and of the unknown photos, the rerun
   of an unchanged batch (10,000 files) and of the whole archive, `fer status` after that quiet
   night, `fer submit` of two parts (200,000 files, --reannotate) and `fer cancel` of that job
   while a worker runs it: the time until the broker holds none of its messages.
   On SQLite the write-ahead log's largest size during each command is sampled too.
4. One table per backend: each figure at both sizes, their ratio, and the target it must meet.

Needs PostgreSQL (--postgres-admin) and Redis (--broker). The databases, the tree and the
templates are removed at the end unless --keep. Sizes above are for --photos 1000.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from scale_archive import (  # noqa: E402
    FOLDERS_PER_BATCH, FOLDERS_PER_PART, Template, build_archive, folder_of, link_tree, part_root,
    templates_from_database,
)

PHOTOS = Path(os.environ.get("FER_DATA_DIR") or ROOT.parent / "shared" / "data") / "photos"
SQL_DOC = ROOT / "docs" / "sql.md"
DEFAULT_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# The targets at --images, by figure: (what the table says, check on the figure at --images and at --baseline).
TARGETS = {
    "copy rate": (">= 1,000 files/s, within 1.5x of the baseline", lambda full, base: full >= 1000 and base / full <= 1.5),
    "rerun folder": ("< 3 s", lambda full, base: full < 3),
    "status": ("< 10 s", lambda full, base: full < 10),
    "status quiet": ("< 10 s", lambda full, base: full < 10),
    "report": ("< 10 s", lambda full, base: full < 10),
    "report all": ("< 10 s", lambda full, base: full < 10),
    "report folder": ("< 10 s", lambda full, base: full < 10),
    "report html": ("< 30 s", lambda full, base: full < 30),
    "queries slowest": ("< 10 s", lambda full, base: full < 10),
    "export memory": ("flat: within 1.25x of the baseline's", lambda full, base: full <= 1.25 * base),
    "cancel free": ("< 10 s", lambda full, base: full < 10),
}
# Commands that change nothing (or only add an empty job) are timed this many times (--repeats); the best counts.
REPEATS = 3


@dataclass
class Figure:
    label: str
    value: float
    unit: str
    note: str = ""
    cpu: float | None = None  # CPU seconds of the command's processes, for wall times


@dataclass(frozen=True)
class Sizes:
    """The archive's shape for --photos photos: a folder holds each photo once."""

    photos: int

    @property
    def batch(self) -> int:  # the files of one batch folder: the rerun folder, and the new folder of known content
        return FOLDERS_PER_BATCH * self.photos

    @property
    def part(self) -> int:  # the files of one part: one generated job
        return FOLDERS_PER_PART * self.photos

    @property
    def submitted(self) -> int:  # the files submitted and cancelled: two parts
        return 2 * self.part


@dataclass
class Run:
    """One backend at one size: its figures by name, in the order measured."""

    backend: str
    images: int
    faces: int = 0
    figures: dict[str, Figure] = field(default_factory=dict)


# ---------------------------------------------------------------- commands

@dataclass
class Result:
    seconds: float  # wall time, start to exit
    cpu: float  # CPU seconds of the fer process and the processes it waited for
    peak_mb: float  # peak resident memory of the fer process
    stdout: str
    wal_mb: float  # the largest size of the SQLite write-ahead log meanwhile


def fer(args: list[str], database: str, wal: Path | None = None) -> Result:
    """Run `fer ARGS --db DATABASE` as its own process and measure it."""
    command = [sys.executable, "-m", "cli.main", *args, "--db", database]
    watcher = WalWatcher(wal) if wal else None
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out,
                                   stderr=err)
        _, status, usage = os.wait4(process.pid, 0)  # reaped here, for its resource usage
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    largest = watcher.stop() if watcher else 0.0
    if process.returncode not in (0, 23):
        raise SystemExit(f"`fer {' '.join(args)}` failed ({process.returncode}): {stderr.strip()[-2000:]}")
    return Result(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout, largest)


class WalWatcher:
    """Samples the size of a SQLite write-ahead log every 50 ms, in a thread, until stopped."""

    def __init__(self, path: Path):
        self.path, self.largest, self.running = path, 0, True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while self.running:
            try:
                self.largest = max(self.largest, self.path.stat().st_size)
            except OSError:
                pass
            time.sleep(0.05)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return self.largest / 2**20


# ---------------------------------------------------------------- the files

def seed_templates(workdir: Path, photos: int) -> list[Template]:
    """The first ``photos`` shared photos, annotated once (cached in the work folder): every copy in the archive
    has their results. They are linked (or copied) into WORKDIR/seed, and the archive's files link to those."""
    from db.session import make_engine

    url = f"sqlite:///{workdir / 'seed.db'}"
    cached = workdir / "seed.json"
    if not cached.is_file() or json.loads(cached.read_text())["images"]["done"] < photos:
        folder = workdir / "seed"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for photo in sorted(PHOTOS.glob("*.jpg"))[:photos]:
            try:
                os.link(photo, folder / photo.name)
            except OSError:  # another file system: the archive's links point at these copies
                shutil.copy2(photo, folder / photo.name)
        (workdir / "seed.db").unlink(missing_ok=True)
        result = fer(["annotate", str(folder), "--format", "json"], url)
        cached.write_text(result.stdout)
        print(f"templates: annotated {photos:,} photos in {result.seconds:.1f} s", flush=True)
    engine = make_engine(url)
    templates = templates_from_database(engine, json.loads(cached.read_text())["job"])
    engine.dispose()
    return templates[:photos]


def unknown_photos(templates: list[Template], folder: Path) -> None:
    """Copies of the photos with one byte appended after the image: same pixels, content never seen."""
    folder.mkdir(parents=True, exist_ok=True)
    for template in templates:
        target = folder / template.name
        if not target.exists():
            target.write_bytes(Path(template.source).read_bytes() + b"\0")


# ---------------------------------------------------------------- databases

def sqlite_database(workdir: Path, images: int) -> tuple[str, Path]:
    path = workdir / f"archive-{images}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}", Path(f"{path}-wal")


def postgres_database(admin_url: str, images: int) -> str:
    name = f"fer_scale_{images}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_postgres(admin_url: str, url: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def build(url: str, archive: Path, templates: list[Template], images: int, model) -> tuple[int, int, float]:
    from db.session import make_engine, upgrade

    engine = make_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    built = build_archive(engine, str(archive), templates, images, model)
    seconds = time.perf_counter() - started
    engine.dispose()
    return built.images, built.faces, seconds


# ---------------------------------------------------------------- the measurements

def documented_queries(dialect: str) -> list[tuple[str, str]]:
    """(heading, sql) of docs/sql.md's example queries for this dialect, then each view counted whole."""
    examples = SQL_DOC.read_text().split("## Example queries", 1)[1]
    queries = []
    for section in re.split(r"^### ", examples, flags=re.MULTILINE)[1:]:
        heading = section.splitlines()[0].strip()
        for sql in re.findall(r"^```sql\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL):
            marked = {"-- SQLite": "sqlite", "-- PostgreSQL": "postgresql"}.get(sql.splitlines()[0].strip())
            if marked not in (None, dialect):
                continue
            queries.append((heading, sql))
    return queries + [("face_annotations, counted whole", "SELECT COUNT(*) FROM face_annotations"),
                      ("latest_annotations, counted whole", "SELECT COUNT(*) FROM latest_annotations")]


def queue_messages(broker: str) -> int:
    """Messages in the default queue and held unacknowledged by workers."""
    import redis

    client = redis.Redis.from_url(broker)
    try:
        return client.llen("celery") + client.hlen("unacked")
    finally:
        client.close()


def measure(run: Run, url: str, wal: Path | None, workdir: Path, archive_root: str, args: argparse.Namespace,
            sizes: Sizes) -> None:
    """Every command, in the order a night goes; figures into ``run.figures``."""
    from db.query import run_read_only_query

    def timed(key: str, label: str, command: list[str], repeats: int = 1) -> Result:
        best = min((fer(command, url, wal=wal) for _ in range(max(1, min(repeats, args.repeats)))),
                   key=lambda result: result.seconds)
        note = f"log {best.wal_mb:.0f} MB" if wal else ""
        run.figures[key] = Figure(label, best.seconds, "s", note, cpu=best.cpu)
        print(f"  {label}: {best.seconds:.2f} s, CPU {best.cpu:.2f} s" + (f", {note}" if note else ""), flush=True)
        return best

    timed("status", "fer status", ["status"], REPEATS)
    timed("report", "fer report (latest job)", ["report"], REPEATS)
    timed("report all", "fer report --all", ["report", "--all"], REPEATS)
    timed("report folder", "fer report --by folder", ["report", "--by", "folder"], REPEATS)
    timed("report html", "fer report --format html", ["report", "--format", "html", "-o", str(workdir / "report.html")],
          REPEATS)
    export = workdir / "faces.csv"
    result = timed("export", "fer export (latest job)", ["export", "-o", str(export)], REPEATS)
    rows = sum(1 for _ in export.open()) - 1
    run.figures["export rate"] = Figure("export rows/s", rows / result.seconds, "rows/s", f"{rows:,} rows")
    run.figures["export memory"] = Figure("export peak memory", result.peak_mb, "MB", f"{rows:,} rows")

    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    slowest, total = (0.0, ""), 0.0
    for heading, sql in documented_queries(dialect):
        seconds = min(_query_seconds(run_read_only_query, sql, url) for _ in range(args.repeats))
        total += seconds
        slowest = max(slowest, (seconds, heading))
        if "counted whole" in heading:
            run.figures[heading] = Figure(heading, seconds, "s")
    run.figures["queries slowest"] = Figure("docs/sql.md queries and views, slowest", slowest[0], "s", slowest[1])
    run.figures["queries all"] = Figure("docs/sql.md queries and views, all", total, "s")
    print(f"  documented queries and views: {total:.2f} s in all, slowest {slowest[0]:.2f} s ({slowest[1]})",
          flush=True)

    result = timed("copy", f"known-content copy ({sizes.batch:,} files)",
                   ["annotate", str(workdir / "new-known"), "--format", "json"])
    assert json.loads(result.stdout)["changes"]["copied"] == sizes.batch, result.stdout[:500]
    run.figures["copy rate"] = Figure("known-content copy", sizes.batch / result.seconds, "files/s")
    result = timed("unknown", f"new folder of {sizes.photos:,} unknown photos",
                   ["annotate", str(workdir / "new-unknown"), "--format", "json"])
    small = fer(["export", str(json.loads(result.stdout)["job"]), "-o", str(workdir / "small.csv")], url)
    small_rows = sum(1 for _ in (workdir / "small.csv").open()) - 1
    run.figures["export memory small"] = Figure("export peak memory, small job", small.peak_mb, "MB",
                                                f"{small_rows:,} rows")

    result = timed("rerun folder", f"rerun of an unchanged {sizes.batch:,}-file folder",
                   ["annotate", folder_of(archive_root, 0).rsplit("/", 1)[0], "--format", "json"], REPEATS)
    assert json.loads(result.stdout)["changes"]["unchanged"] == sizes.batch, result.stdout[:500]
    parts = run.images // sizes.part
    whole = [archive_root] if run.images == args.images else [part_root(archive_root, p) for p in range(parts)]
    result = timed("rerun all", "rerun of the whole archive", ["annotate", *whole, "--format", "json"])
    assert json.loads(result.stdout)["changes"]["unchanged"] == run.images, result.stdout[:500]
    timed("status quiet", "fer status after a quiet night", ["status"], REPEATS)

    broker = args.broker
    submitted = [part_root(archive_root, part) for part in range(sizes.submitted // sizes.part)]
    result = timed("submit", f"fer submit of {sizes.submitted:,} files",
                   ["submit", *submitted, "--reannotate", "--broker", broker])
    job = int(re.search(r"^Job (\d+)", result.stdout, re.MULTILINE).group(1))
    cancel_while_a_worker_runs(run, url, broker, job)


def _query_seconds(run_query, sql: str, url: str) -> float:
    started = time.perf_counter()
    run_query(sql, url)
    return time.perf_counter() - started


def cancel_while_a_worker_runs(run: Run, url: str, broker: str, job: int) -> None:
    """Start a worker on the job, cancel the job once the worker has written a chunk, and time how long until
    the broker holds none of its messages (queued or held by the worker)."""
    from db.session import make_engine

    worker = subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "--concurrency", "1", "--pool", "solo",
                               "--broker", broker, "--db", url, "--loglevel", "WARNING"], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        engine = make_engine(url)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                if connection.execute(text("SELECT id FROM images WHERE job_id = :job AND status = 'done' LIMIT 1"),
                                      {"job": job}).first():
                    break
            time.sleep(0.5)
        engine.dispose()
        before = queue_messages(broker)
        started = time.perf_counter()
        result = fer(["cancel", str(job), "--broker", broker], url)
        while queue_messages(broker) and time.perf_counter() - started < 600:
            time.sleep(0.1)
        free = time.perf_counter() - started
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=300)
    taken = re.search(r"([\d,]+) queued chunks? taken off", result.stdout)
    run.figures["cancel"] = Figure("fer cancel", result.seconds, "s",
                                   f"{taken.group(1) if taken else 0} chunks taken off", cpu=result.cpu)
    run.figures["cancel free"] = Figure("cancel: queue free after", free, "s", f"{before:,} messages when cancelled")
    print(f"  fer cancel: {result.seconds:.2f} s; queue free after {free:.2f} s ({before:,} messages before)",
          flush=True)


# ---------------------------------------------------------------- the table

def print_table(backend: str, baseline: Run, full: Run) -> None:
    print(f"\n{backend}: {baseline.images:,} annotated images ({baseline.faces:,} faces) and "
          f"{full.images:,} ({full.faces:,} faces); wall time (CPU time of the command's processes)")
    print(f"| figure | {baseline.images:,} images | {full.images:,} images | ratio | target |")
    print("|---|---|---|---|---|")
    for key, figure in full.figures.items():
        base = baseline.figures.get(key)
        ratio = f"{figure.value / base.value:.2f}x" if base and base.value else "-"
        target = ""
        if key in TARGETS and base is not None:
            text_, check = TARGETS[key]
            target = f"{text_}: {'met' if check(figure.value, base.value) else '**not met**'}"
        print(f"| {figure.label} | {_shown(base)} | {_shown(figure)} | {ratio} | {target} |")


def _shown(figure: Figure | None) -> str:
    if figure is None:
        return "-"
    value = f"{figure.value:,.0f}" if figure.value >= 100 else f"{figure.value:.2f}"
    extra = [f"CPU {figure.cpu:.1f} s"] if figure.cpu is not None else []
    extra += [figure.note] if figure.note else []
    return f"{value} {figure.unit}" + (f" ({'; '.join(extra)})" if extra else "")


# ---------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--broker", default=os.environ.get("FER_BROKER_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--postgres-admin", default=os.environ.get("FER_TEST_POSTGRES_URL", DEFAULT_ADMIN))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fer-scale"))
    parser.add_argument("--photos", type=int, default=1000,
                        help="Photos per folder (the first N shared photos): the other sizes follow from it.")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="Runs of each command that changes nothing.")
    parser.add_argument("--keep", action="store_true", help="Keep the tree and the databases.")
    args = parser.parse_args()
    sizes = Sizes(args.photos)
    if args.images % sizes.part or args.baseline % sizes.part:
        raise SystemExit(f"--images and --baseline must be multiples of {sizes.part:,} (one job of "
                         f"{FOLDERS_PER_PART} folders of {args.photos:,} photos each)")
    if args.images < sizes.submitted:
        raise SystemExit(f"--images must be at least {sizes.submitted:,}: the submit step sends that many files")

    from db.records import ModelIdentity
    from workers.serving.classifier import model_identity

    started = time.perf_counter()
    args.workdir.mkdir(parents=True, exist_ok=True)
    templates = seed_templates(args.workdir, args.photos)
    if len(templates) != args.photos:
        raise SystemExit(f"--photos {args.photos}: only {len(templates)} photos were annotated in {PHOTOS}")
    archive = args.workdir / "archive"
    links = time.perf_counter()
    made = link_tree(archive, templates, args.images // len(templates))
    link_tree(args.workdir / "new-known", templates, FOLDERS_PER_BATCH)
    unknown_photos(templates, args.workdir / "new-unknown")
    print(f"tree: {made:,} new hard links under {archive} in {time.perf_counter() - links:.1f} s", flush=True)
    model: ModelIdentity = model_identity("default")

    runs: dict[str, list[Run]] = {}
    try:
        for backend in args.backends.split(","):
            for images in (args.baseline, args.images):
                if backend == "sqlite":
                    url, wal = sqlite_database(args.workdir, images)
                else:
                    url, wal = postgres_database(args.postgres_admin, images), None
                try:
                    count, faces, seconds = build(url, archive, templates, images, model)
                    print(f"{backend}, {images:,} images: built {count:,} images and {faces:,} faces in "
                          f"{seconds:.1f} s", flush=True)
                    run = Run(backend, count, faces)
                    run.figures["build"] = Figure("build", seconds, "s")
                    measure(run, url, wal, args.workdir, str(archive), args, sizes)
                    runs.setdefault(backend, []).append(run)
                finally:
                    if backend == "postgresql" and not args.keep:
                        drop_postgres(args.postgres_admin, url)
                    elif backend == "sqlite" and not args.keep:
                        for suffix in ("", "-wal", "-shm"):
                            Path(f"{url[len('sqlite:///'):]}{suffix}").unlink(missing_ok=True)
    finally:
        if not args.keep:
            for name in ("archive", "new-known", "new-unknown", "seed", "seed.db", "seed.json", "report.html",
                         "faces.csv", "small.csv"):
                path = args.workdir / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    print(f"\npython bench/scale.py --images {args.images} --baseline {args.baseline} "
          f"({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {time.perf_counter() - started:.0f} s in all)")
    for backend, (baseline, full) in runs.items():
        print_table(backend, baseline, full)


if __name__ == "__main__":
    main()
