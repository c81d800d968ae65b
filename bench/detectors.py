"""Detection rate and speed of each face detector on ../shared/data/photos (every photo has a face).

    python bench/detectors.py [--limit N] [DETECTOR ...]

Prints one line per detector: detection rate (photos with at least one face), faces found,
and photos per second for detection alone (decoding excluded), single process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from workers.vision.detection import DETECTOR_FACTORIES, UnknownDetector, get_detector  # noqa: E402
from workers.vision.images import read_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("detectors", nargs="*", default=list(DETECTOR_FACTORIES))
    parser.add_argument("--photos", type=Path, default=Path(os.environ.get("FER_DATA_DIR", "../shared/data")) / "photos")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos")
    args = parser.parse_args()
    paths = sorted(args.photos.glob("*.jpg"))[: args.limit or None]
    if not paths:
        sys.exit(f"no photos in {args.photos}")
    images = [read_image(path).gray for path in paths]
    print(f"{len(images)} photos from {args.photos}")
    for name in args.detectors:
        try:
            detector = get_detector(name)
        except UnknownDetector as error:
            print(f"{name:10s} skipped: {error}")
            continue
        detector.detect(images[0])
        started = time.perf_counter()
        counts = [len(detector.detect(image)) for image in images]
        elapsed = time.perf_counter() - started
        rate = sum(count > 0 for count in counts) / len(counts)
        print(f"{name:10s} detection rate {rate:.3f}  faces {sum(counts):5d}  {len(images) / elapsed:7.1f} photos/s")


if __name__ == "__main__":
    main()
