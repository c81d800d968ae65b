"""How large SQLite's write-ahead log grows during a long run, by the kind of readers beside the writer.

    python bench/wal.py [--images 60000] [--readers 2]

One process writes chunks of 32 images (one face each) with `record_chunk`, as `fer annotate`
does, while --readers other processes read the database without pause, as its detection
processes do. Three settings:

- readers that look up one row by index (the run's lookups: a file's or a content's latest
  annotation), SQLite's own checkpoints only;
- readers that read the whole images table each time (as run planning and content lookups did
  when they scanned every annotated image), SQLite's own checkpoints only;
- the same whole-table readers, with the writer's checkpoints (`db.session.checkpoint_if_large`).

Prints the largest size of the log during each run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEEK = "SELECT id FROM images WHERE sha256 = '00' AND model_id = 1 AND status = 'done' ORDER BY id DESC LIMIT 1"
WHOLE_TABLE = "SELECT COUNT(*) FROM images WHERE sha256 IS NOT NULL AND width IS NULL"
NEVER = 2**62


def read_forever(url: str, query: str, stop) -> None:
    from db.session import make_engine

    engine = make_engine(url)
    while not stop.is_set():
        with engine.connect() as connection:
            connection.exec_driver_sql(query).all()


def run(images: int, readers: int, query: str, writer_checkpoints: bool) -> tuple[float, float]:
    """(largest log in MB, seconds) for one setting."""
    import db.session
    from db.records import FaceResult, ImageResult, ModelIdentity
    from db.reads import image_ids
    from db.writes import create_job, ensure_model, record_chunk

    default = db.session.WAL_CHECKPOINT_BYTES
    if not writer_checkpoints:
        db.session.WAL_CHECKPOINT_BYTES = NEVER  # also lifts journal_size_limit: SQLite's defaults
    folder = Path(tempfile.mkdtemp(prefix="fer-wal-"))
    url = f"sqlite:///{folder / 'fer.db'}"
    engine = db.session.make_engine(url)
    db.session.upgrade(engine)
    model_id = ensure_model(engine, ModelIdentity("m", "v", "0" * 64, {}))
    job = create_job(engine, ["/p"], {"model": "m"}, [f"/p/{index:07d}.jpg" for index in range(images)])
    ids = image_ids(engine, job)
    stop = multiprocessing.get_context("fork").Event()
    processes = [multiprocessing.get_context("fork").Process(target=read_forever, args=(url, query, stop))
                 for _ in range(readers)]
    for process in processes:
        process.start()
    face = FaceResult(0, 1, 2, 30, 30, 0.9, [0.1, 0.1, 0.1, 0.4, 0.1, 0.1, 0.1], "happy", 0.4)
    largest = 0
    started = time.perf_counter()
    try:
        for start in range(0, len(ids), 32):
            record_chunk(engine, job, model_id, [ImageResult(image_id, "done", sha256=f"{image_id:064x}", faces=[face])
                                                 for image_id in ids[start : start + 32]])
            largest = max(largest, os.path.getsize(folder / "fer.db-wal"))
    finally:
        stop.set()
        for process in processes:
            process.join()
        engine.dispose()
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
        db.session.WAL_CHECKPOINT_BYTES = default
    return largest / 2**20, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--readers", type=int, default=2)
    args = parser.parse_args()
    settings = [
        ("index lookups", SEEK, False),
        ("whole-table reads", WHOLE_TABLE, False),
        ("whole-table reads", WHOLE_TABLE, True),
    ]
    rows = []
    for readers_kind, query, checkpoints in settings:
        largest, seconds = run(args.images, args.readers, query, checkpoints)
        rows.append((readers_kind, "SQLite's and the writer's" if checkpoints else "SQLite's only", largest, seconds))
        print(f"{readers_kind}, {rows[-1][1]} checkpoints: largest log {largest:.1f} MB ({seconds:.1f} s)", flush=True)
    print(f"\n{args.images:,} images written in chunks of 32, {args.readers} reader processes")
    print("| readers | checkpoints | largest write-ahead log |")
    print("|---|---|---|")
    for readers_kind, checkpoints, largest, _ in rows:
        print(f"| {readers_kind} | {checkpoints} | {largest:.1f} MB |")


if __name__ == "__main__":
    main()
