"""End-to-end throughput on a photo archive, against the `fer` package, in one run.

    python bench/pipeline.py [--mosaics 200] [--photos 1000] [--peer-python PATH]

1. Builds (once, cached) an archive from ../shared/data/photos: the photos as they are,
   plus --mosaics 4000x3000 JPEGs (quality 90, three channels), each holding about ten
   of the photos, enlarged 1.2-2.6x and tinted, on a textured background. Every LFW
   photo has its subject's face at the centre, so the true face positions are known.
2. Decoding floor: the time to just decode every image as the pipeline does (one process).
3. Local: `fer annotate` with 1 and 2 local processes (start-up included), SQLite.
4. Distributed: `fer worker --concurrency N` for N = 1, 2 on Redis + PostgreSQL, started
   and warm before `fer submit --wait` is timed.
5. The peer: `FER().detect_emotions` (Haar + TFLite, its defaults) over the same files,
   one process, timed after its model is loaded, in its own virtual environment.

Detection recall: a true face counts as found when a reported box's centre lies within
half a face width of the true centre and its width is within 0.5-2x the true width.
Precision: the share of reported boxes that find a true face, each face credited once.
The figures are printed last. Needs PostgreSQL and Redis on 127.0.0.1 for step 4.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

MOSAIC_SIZE = (4000, 3000)
PHOTOS_PER_MOSAIC = 10
# LFW photos are 250x250 with the subject's face centred at about (125, 126), about 121 px wide
# (median Haar box over the photos).
LFW_SIDE, LFW_FACE_CENTRE, LFW_FACE_WIDTH = 250, (125.0, 126.0), 121.0
ARCHIVE_VERSION = 1
TRUTH_FILE = "truth.json"  # beside each benchmark set: its manifest and true face boxes
DEFAULT_PEER_PYTHON = ROOT / ".bench" / "fer-peer" / "bin" / "python"
PEER_INSTALL = (
    "python -m venv .bench/fer-peer && .bench/fer-peer/bin/pip install --no-deps fer==25.10.3 && "
    ".bench/fer-peer/bin/pip install 'tensorflow-cpu==2.21.*' opencv-contrib-python==4.14.0.94 "
    "pandas requests tqdm Pillow matplotlib 'setuptools<81'"
)


# ---------------------------------------------------------------- the archive


def build_archive(photos_dir: Path, archive: Path, photo_count: int, mosaic_count: int, seed: int = 0) -> dict[str, list]:
    """Write the archive (unless an identical one is there) and return {relative path: true face boxes}."""
    manifest = {"version": ARCHIVE_VERSION, "photos": photo_count, "mosaics": mosaic_count, "seed": seed,
                "source": str(photos_dir.resolve())}
    cached = _cached_truth(archive, manifest)
    if cached is not None:
        return cached
    sources = _sources(photos_dir)[:photo_count]
    (archive / "photos").mkdir(parents=True)
    (archive / "mosaics").mkdir()
    faces: dict[str, list] = {}
    for source in sources:
        shutil.copyfile(source, archive / "photos" / source.name)
        faces[f"photos/{source.name}"] = [_lfw_face_box(0, 0, 1.0)]
    rng = np.random.default_rng(seed)
    for number in range(mosaic_count):
        name = f"mosaics/mosaic_{number:04d}.jpg"
        picks = [sources[i] for i in rng.choice(len(sources), size=PHOTOS_PER_MOSAIC, replace=False)]
        image, boxes = _mosaic(picks, rng)
        cv2.imwrite(str(archive / name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        faces[name] = boxes
    (archive / TRUTH_FILE).write_text(json.dumps({"manifest": manifest, "faces": faces}))
    return faces


def _cached_truth(folder: Path, manifest: dict) -> dict[str, list] | None:
    """The true boxes of a set built earlier with the same manifest; otherwise None, and the folder is cleared."""
    truth_file = folder / TRUTH_FILE
    if truth_file.is_file():
        saved = json.loads(truth_file.read_text())
        if saved["manifest"] == manifest:
            return saved["faces"]
    shutil.rmtree(folder, ignore_errors=True)
    return None


def _sources(photos_dir: Path) -> list[Path]:
    sources = sorted(photos_dir.glob("*.jpg"))
    if not sources:
        sys.exit(f"no photos in {photos_dir} (set FER_DATA_DIR)")
    return sources


SMALL_FACES_VERSION = 1
SMALL_FACE_WIDTHS = (48.0, 96.0)  # the default smallest face to twice that
SMALL_FACES_PER_SCENE = 40


def build_small_faces(photos_dir: Path, folder: Path, scene_count: int, seed: int = 0) -> dict[str, list]:
    """Write (unless an identical set is there) 4000x3000 scenes of small faces and return {relative path: boxes}.

    Each scene holds SMALL_FACES_PER_SCENE of the photos, shrunk so that their faces are
    48-96 px wide, on the same textured background as the mosaics: the faces near the
    default --min-face, where detectors lose recall first.
    """
    manifest = {"version": SMALL_FACES_VERSION, "scenes": scene_count, "seed": seed, "source": str(photos_dir.resolve())}
    cached = _cached_truth(folder, manifest)
    if cached is not None:
        return cached
    sources = _sources(photos_dir)
    (folder / "small-faces").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    width, height = MOSAIC_SIZE
    columns, rows = 8, 5
    cell_w, cell_h = width // columns, height // rows
    faces: dict[str, list] = {}
    for number in range(scene_count):
        image = _background(rng)
        boxes = []
        for cell in range(SMALL_FACES_PER_SCENE):
            source = sources[rng.integers(len(sources))]
            side = int(LFW_SIDE * rng.uniform(*SMALL_FACE_WIDTHS) / LFW_FACE_WIDTH)
            left = int((cell % columns) * cell_w + rng.integers(0, cell_w - side))
            top = int((cell // columns) * cell_h + rng.integers(0, cell_h - side))
            photo = cv2.resize(cv2.imread(str(source)), (side, side), interpolation=cv2.INTER_AREA)
            image[top : top + side, left : left + side] = photo
            boxes.append(_lfw_face_box(left, top, side / LFW_SIDE))
        name = f"small-faces/scene_{number:04d}.jpg"
        cv2.imwrite(str(folder / name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        faces[name] = boxes
    (folder / TRUTH_FILE).write_text(json.dumps({"manifest": manifest, "faces": faces}))
    return faces


def _background(rng: np.random.Generator) -> np.ndarray:
    """Smooth colour gradients plus fine grain, so the background is not flat."""
    width, height = MOSAIC_SIZE
    coarse = rng.integers(40, 215, size=(6, 8, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.add(image, rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8))


def _lfw_face_box(left: float, top: float, scale: float) -> list[float]:
    width = LFW_FACE_WIDTH * scale
    cx, cy = left + LFW_FACE_CENTRE[0] * scale, top + LFW_FACE_CENTRE[1] * scale
    return [cx - width / 2, cy - width / 2, width, width]


def _mosaic(picks: list[Path], rng: np.random.Generator) -> tuple[np.ndarray, list[list[float]]]:
    width, height = MOSAIC_SIZE
    image = _background(rng)
    columns, rows = 5, 3
    cell_w, cell_h = width // columns, height // rows
    boxes = []
    for cell, path in zip(rng.choice(columns * rows, size=len(picks), replace=False), picks):
        scale = float(rng.uniform(1.2, 2.6))
        side = int(LFW_SIDE * scale)
        left = int((cell % columns) * cell_w + rng.integers(0, max(cell_w - side, 1)))
        top = int((cell // columns) * cell_h + rng.integers(0, max(cell_h - side, 1)))
        gray = cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (side, side), interpolation=cv2.INTER_CUBIC)
        tint = rng.uniform(0.75, 1.0, size=3)
        image[top : top + side, left : left + side] = np.clip(gray[..., None] * tint, 0, 255).astype(np.uint8)
        boxes.append(_lfw_face_box(left, top, side / LFW_SIDE))
    return image, boxes


# ---------------------------------------------------------------- measuring


def _matches(true_box: list[float], box: tuple) -> bool:
    """A reported box finds a true face: its centre within half a face width, its width 0.5-2x the face's."""
    tx, ty, tw, _ = true_box
    x, y, w, h = box[:4]
    return abs(x + w / 2 - tx - tw / 2) <= tw / 2 and abs(y + h / 2 - ty - tw / 2) <= tw / 2 and 0.5 <= w / tw <= 2


def recall(truth: dict[str, list], found: dict[str, list]) -> float:
    """The share of true faces that some reported box finds."""
    hits = total = 0
    for name, true_boxes in truth.items():
        reported = found.get(name, [])
        total += len(true_boxes)
        hits += sum(any(_matches(true_box, box) for box in reported) for true_box in true_boxes)
    return hits / max(total, 1)


def precision(truth: dict[str, list], found: dict[str, list]) -> float:
    """The share of reported boxes that find a true face, each true face credited to one box only.

    A second box on the same face counts as false, and so does a box on a face that is not
    among the known ones (another person in the background of a photo).
    """
    good = boxes = 0
    for name, reported in found.items():
        unmatched = list(truth.get(name, []))
        boxes += len(reported)
        for box in reported:
            match = next((true_box for true_box in unmatched if _matches(true_box, box)), None)
            if match is not None:
                unmatched.remove(match)
                good += 1
    return good / boxes if boxes else 1.0


def decoding_floor(archive: Path, names: list[str]) -> float:
    """Seconds to decode every image exactly as the pipeline does, one process."""
    from workers.chunks.annotate import read_for_detection

    started = time.perf_counter()
    for name in names:
        read_for_detection(archive / name)
    return time.perf_counter() - started


def boxes_from_database(url: str, archive: Path) -> dict[str, list]:
    from sqlalchemy import select

    from db.models import Face, Image
    from db.session import make_engine

    engine = make_engine(url)
    found: dict[str, list] = {}
    with engine.connect() as connection:
        for path, x, y, w, h in connection.execute(
            select(Image.path, Face.x, Face.y, Face.w, Face.h).join(Face, Face.image_id == Image.id)
        ):
            found.setdefault(Path(path).relative_to(archive.resolve()).as_posix(), []).append((x, y, w, h))
    engine.dispose()
    return found


@dataclass
class RunResult:
    name: str
    seconds: float
    images: int
    faces: int
    recall: float
    stages: dict[str, float] | None = None

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


def fer_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *arguments]


def run_local(archive: Path, truth: dict, processes: int, workdir: Path) -> RunResult:
    url = f"sqlite:///{workdir / f'local-{processes}.db'}"
    started = time.perf_counter()
    output = subprocess.run(
        fer_command("annotate", str(archive), "--db", url, "--processes", str(processes), "--format", "json"),
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    seconds = time.perf_counter() - started
    summary = json.loads(output)
    return RunResult(f"fer-pipeline local, {processes} process{'es' if processes > 1 else ''}", seconds,
                     summary["images"]["done"], summary["faces"], recall(truth, boxes_from_database(url, archive)),
                     summary["stage_seconds"])


def run_distributed(archive: Path, truth: dict, concurrency: int, workdir: Path, broker: str) -> RunResult:
    import redis
    from sqlalchemy import create_engine, text

    admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT")
    name = f"fer_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    redis.Redis.from_url(broker).flushdb()
    environment = {**os.environ, "FER_BROKER_URL": broker, "FER_DATABASE_URL": url}
    subprocess.run(fer_command("db", "upgrade", "--db", url), cwd=ROOT, env=environment, check=True, capture_output=True)
    log = open(workdir / f"worker-{concurrency}.log", "w")
    worker = subprocess.Popen(
        fer_command("worker", "--concurrency", str(concurrency), "--db", url, "--loglevel", "INFO"),
        cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        _wait_for_log(workdir / f"worker-{concurrency}.log", "ready", timeout=120)
        started = time.perf_counter()
        subprocess.run(fer_command("submit", str(archive), "--db", url, "--wait"), cwd=ROOT, env=environment,
                       check=True, capture_output=True)
        seconds = time.perf_counter() - started
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
        log.close()
    found = boxes_from_database(url, archive)
    images = len(list(archive.rglob("*.jpg")))
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return RunResult(f"fer-pipeline distributed, {concurrency} worker process{'es' if concurrency > 1 else ''}",
                     seconds, images, sum(map(len, found.values())), recall(truth, found))


def _wait_for_log(path: Path, word: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if word in path.read_text():
            return
        time.sleep(0.5)
    raise RuntimeError(f"worker not ready after {timeout:.0f}s; see {path}")


PEER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import cv2
    from fer.fer import FER

    archive, names = sys.argv[1], json.loads(sys.stdin.read())
    detector = FER()
    detector.detect_emotions(cv2.imread(f"{archive}/{names[0]}"))  # load and warm the model
    found, started = {}, time.perf_counter()
    for name in names:
        found[name] = [[int(v) for v in face["box"]] for face in detector.detect_emotions(cv2.imread(f"{archive}/{name}"))]
    print(json.dumps({"seconds": time.perf_counter() - started, "found": found}))
    """
)


def run_peer(archive: Path, truth: dict, python: Path) -> RunResult:
    names = sorted(truth)
    output = subprocess.run(
        [str(python), "-c", PEER_SCRIPT, str(archive)], input=json.dumps(names), capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, check=True,
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    found = result["found"]
    return RunResult("fer 25.10.3 (FER().detect_emotions, 1 process)", result["seconds"], len(names),
                     sum(map(len, found.values())), recall(truth, found))


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = Path(os.environ.get("FER_DATA_DIR", ROOT.parent / "shared" / "data"))
    parser.add_argument("--photos-dir", type=Path, default=data / "photos")
    parser.add_argument("--photos", type=int, default=1000, help="plain photos in the archive")
    parser.add_argument("--mosaics", type=int, default=200, help="4000x3000 mosaics in the archive")
    parser.add_argument("--archive", type=Path, default=Path(os.environ.get("FER_CACHE_DIR", Path.home() / ".cache" / "fer-pipeline")) / "bench-archive")
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON, help="python of a venv with `fer`")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-distributed", action="store_true")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()

    archive = args.archive.resolve()
    print(f"Building the archive in {archive} ...", flush=True)
    truth = build_archive(args.photos_dir, archive, args.photos, args.mosaics)
    names = sorted(truth)
    megapixels = sum(cv2.imread(str(archive / n), cv2.IMREAD_REDUCED_GRAYSCALE_8).size * 64 for n in names) / 1e6
    print(f"{len(names)} images ({args.photos} photos 250x250, {args.mosaics} mosaics 4000x3000), "
          f"{sum(map(len, truth.values()))} true faces, {megapixels:,.0f} megapixels", flush=True)

    floor = decoding_floor(archive, names)
    runs: list[RunResult] = []
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        for processes in (1, 2):
            runs.append(run_local(archive, truth, processes, workdir))
            print(f"  done: {runs[-1].name}", flush=True)
        if not args.skip_distributed:
            for concurrency in (1, 2):
                runs.append(run_distributed(archive, truth, concurrency, workdir, args.broker))
                print(f"  done: {runs[-1].name}", flush=True)
    peer = None
    if not args.skip_peer:
        if not args.peer_python.is_file():
            sys.exit(f"no peer venv at {args.peer_python}; create it with:\n  {PEER_INSTALL}\n(or pass --skip-peer)")
        peer = run_peer(archive, truth, args.peer_python)
        print(f"  done: {peer.name}", flush=True)

    print()
    print(f"Machine: {os.cpu_count()} CPU cores; {time.strftime('%Y-%m-%d')}")
    print(f"Decoding floor (decode only, as the pipeline decodes, 1 process): {len(names) / floor:,.1f} images/s")
    print(f"{'run':58s} {'seconds':>8s} {'images/s':>9s} {'faces':>6s} {'recall':>7s}")
    for run in runs + ([peer] if peer else []):
        print(f"{run.name:58s} {run.seconds:8.1f} {run.images_per_second:9.1f} {run.faces:6d} {run.recall:7.3f}")
    local_one = runs[0]
    stages = local_one.stages or {}
    busy = sum(stages.values())
    print(f"Stages (local, 1 process; seconds, share of stage time): "
          + ", ".join(f"{k} {v:.1f} ({v / busy:.0%})" for k, v in stages.items()))
    print(f"Decoding floor over the 1-process local run: {floor / local_one.seconds:.0%} of its wall time")
    if not args.skip_distributed:
        one, two = runs[2], runs[3]
        print(f"Scaling, distributed 2 workers over 1: {two.images_per_second / one.images_per_second:.2f}x")
    print(f"Scaling, local 2 processes over 1: {runs[1].images_per_second / runs[0].images_per_second:.2f}x")
    if peer:
        print(f"Ratio over fer, per process (local 1 process, start-up included): "
              f"{local_one.images_per_second / peer.images_per_second:.1f}x")
        print(f"Ratio over fer, per machine (local default, 2 processes, start-up included): "
              f"{runs[1].images_per_second / peer.images_per_second:.1f}x")


if __name__ == "__main__":
    main()
