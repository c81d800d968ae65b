"""`fer annotate` against the `fer` package, per machine, wall time with start-up on both sides, in one run.

    python bench/ratio.py [--peer-python PATH] [--only photos|mosaics|small-faces] [--processes N] [--detector NAME] [--model NAME]

Three archives, each timed on both sides one after the other:

- photos: the 1,000 250x250 photos of ../shared/data/photos;
- mosaics: the 200 4000x3000 mosaics of bench/pipeline.py's archive (built once, cached);
- small faces: 4000x3000 scenes of 40 faces each, 48-96 px wide (--small-scenes, default 25;
  built once, cached): recall near the default smallest face.

Our side is `fer annotate DIR` as a user runs it (its default processes, one per core;
fresh SQLite database). The peer is `FER().detect_emotions` over the same files in one
process (the package has no parallel mode), in its own venv (`make bench-peer`). Both are
timed from process start to exit; the peer's loop alone (after its model is loaded) is
printed too. Recall and precision use the known face positions (bench/pipeline.py): a box on
a face that is not among them (someone in a photo's background) counts against precision on
both sides alike. The detection rate (images with at least one face) is printed as well.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import (  # noqa: E402
    DEFAULT_PEER_PYTHON, PEER_INSTALL, PEER_SCRIPT, ROOT, boxes_from_database, build_archive, build_small_faces,
    fer_command, precision, recall,
)


def run_ours(folder: Path, truth: dict, workdir: Path, processes: int | None, detector: str | None,
             model: str | None) -> dict:
    url = f"sqlite:///{workdir / f'{folder.name}-{detector}-{model}.db'}"
    command = fer_command("annotate", str(folder), "--db", url, "--format", "json")
    if processes:
        command += ["--processes", str(processes)]
    if detector:
        command += ["--detector", detector]
    if model:
        command += ["--model", model]
    started = time.perf_counter()
    output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    seconds = time.perf_counter() - started
    summary = json.loads(output)
    found = {f"{folder.name}/{name}": boxes for name, boxes in boxes_from_database(url, folder).items()}
    return {"seconds": seconds, "found": found, "stages": summary["stage_seconds"], "faces": summary["faces"]}


def run_peer(folder: Path, names: list[str], python: Path) -> dict:
    started = time.perf_counter()
    output = subprocess.run(
        [str(python), "-c", PEER_SCRIPT, str(folder.parent)], input=json.dumps(names), capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, check=True,
    ).stdout
    seconds = time.perf_counter() - started
    result = json.loads(output.strip().splitlines()[-1])
    return {"seconds": seconds, "loop": result["seconds"], "found": result["found"],
            "faces": sum(map(len, result["found"].values()))}


def detection_rate(names: list[str], found: dict) -> float:
    return sum(bool(found.get(name)) for name in names) / len(names)


def accuracy(names: list[str], truth: dict, found: dict) -> str:
    return (f"recall {recall(truth, found):.3f}, precision {precision(truth, found):.3f}, "
            f"detection rate {detection_rate(names, found):.3f}")


def compare(label: str, folder: Path, truth: dict, args: argparse.Namespace, workdir: Path) -> None:
    names = sorted(truth)
    ours = run_ours(folder, truth, workdir, args.processes, args.detector, args.model)
    peer = run_peer(folder, names, args.peer_python)
    print(f"\n{label}: {len(names)} images, {sum(map(len, truth.values()))} true faces")
    detector = (f" --detector {args.detector}" if args.detector else "") + (f" --model {args.model}" if args.model else "")
    print(f"  fer annotate {folder}{detector} ({args.processes or os.cpu_count()} processes): {ours['seconds']:.1f} s, "
          f"{ours['faces']} faces, {accuracy(names, truth, ours['found'])}")
    print(f"  fer 25.10.3, 1 process: {peer['seconds']:.1f} s ({peer['loop']:.1f} s after start-up), "
          f"{peer['faces']} faces, {accuracy(names, truth, peer['found'])}")
    print("  stages (seconds, summed over processes): " + ", ".join(f"{k} {v:.1f}" for k, v in ours["stages"].items()))
    print(f"  ratio per machine, wall time with start-up on both sides: {peer['seconds'] / ours['seconds']:.2f}x "
          f"(against the peer's loop alone: {peer['loop'] / ours['seconds']:.2f}x)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = Path(os.environ.get("FER_DATA_DIR", ROOT.parent / "shared" / "data"))
    parser.add_argument("--photos-dir", type=Path, default=data / "photos")
    parser.add_argument("--archive", type=Path,
                        default=Path(os.environ.get("FER_CACHE_DIR", Path.home() / ".cache" / "fer-pipeline")) / "bench-archive")
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON, help="python of a venv with `fer`")
    parser.add_argument("--only", choices=["photos", "mosaics", "small-faces"])
    parser.add_argument("--small-scenes", type=int, default=25, help="scenes of small faces (40 faces each)")
    parser.add_argument("--processes", type=int, help="fer annotate --processes (default: its own, one per core)")
    parser.add_argument("--detector", help="fer annotate --detector (default: its own)")
    parser.add_argument("--model", help="fer annotate --model (default: its own)")
    args = parser.parse_args()
    if not args.peer_python.is_file():
        sys.exit(f"no peer venv at {args.peer_python}; create it with:\n  {PEER_INSTALL}")
    print(f"{os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d %H:%M %Z')}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        if args.only in (None, "photos"):
            photos = args.photos_dir.resolve()
            # The archive's photos/ are copies of these photos, with the same names and faces.
            truth = {f"{photos.name}/{name.split('/', 1)[1]}": boxes for name, boxes in
                     build_archive(photos, args.archive.resolve(), 1000, 200).items() if name.startswith("photos/")}
            compare("photos", photos, truth, args, workdir)
        if args.only in (None, "mosaics"):
            archive = args.archive.resolve()
            truth = {name: boxes for name, boxes in
                     build_archive(args.photos_dir, archive, 1000, 200).items() if name.startswith("mosaics/")}
            compare("mosaics", archive / "mosaics", truth, args, workdir)
        if args.only in (None, "small-faces"):
            folder = args.archive.resolve().with_name("bench-small-faces")
            truth = build_small_faces(args.photos_dir, folder, args.small_scenes)
            compare("small faces (48-96 px)", folder / "small-faces", truth, args, workdir)


if __name__ == "__main__":
    main()
