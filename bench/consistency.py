"""Faces in photos against face crops: does the pipeline label a face as the model labels its crop?

    python bench/consistency.py [--model NAME ...] [--scenes N] [--margins 0,0.1,0.2]

Pastes PublicTest faces (upscaled to 80-300 px, at random positions) into the photos of
``$FER_DATA_DIR/photos`` (half the scenes) or onto plain noisy backgrounds (the other half),
writes each scene as a JPEG, and annotates the scenes with the workers' own code (decode,
detect, crop, classify). A pasted face counts as found when a detection overlaps it
(intersection over union >= 0.3). It prints:

- the share of pasted faces found;
- accuracy on the found faces through the pipeline, against the true labels, and the
  direct accuracy of the model on the same faces' original 48x48 crops (and on all);
- for each crop margin in --margins, the accuracy through the pipeline with that margin;
- the accuracy on crops cut at the pasted squares themselves, which separates what the
  detector's framing costs from what rescaling and JPEG cost.

The last line is the gap between direct and pipeline accuracy with the served crop. Several
``--model`` options share one detection pass (the boxes do not depend on the model): the first
model annotates the scenes, the others classify the same served crops.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.vision.detector_names import DEFAULT_DETECTOR  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

CANVAS = 640
MATCH_IOU = 0.3


@dataclass(frozen=True)
class Scene:
    path: Path
    box: tuple[int, int, int, int]  # x, y, w, h of the pasted face
    face_index: int  # into the PublicTest split


def build_scenes(faces: np.ndarray, photos: list[Path], count: int, folder: Path, seed: int) -> list[Scene]:
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(faces), size=min(count, len(faces)), replace=False)
    scenes = []
    for number, face_index in enumerate(chosen):
        if photos and number % 2 == 0:
            background = cv2.imread(str(photos[rng.integers(len(photos))]), cv2.IMREAD_GRAYSCALE)
            canvas = cv2.resize(background, (CANVAS, CANVAS), interpolation=cv2.INTER_CUBIC)
        else:
            level = int(rng.integers(40, 220))
            canvas = np.clip(rng.normal(level, 12, size=(CANVAS, CANVAS)), 0, 255).astype(np.uint8)
        side = int(rng.integers(80, 301))
        x, y = (int(v) for v in rng.integers(0, CANVAS - side + 1, size=2))
        canvas[y : y + side, x : x + side] = cv2.resize(faces[face_index], (side, side), interpolation=cv2.INTER_CUBIC)
        path = folder / f"scene_{number:05d}.jpg"
        cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])
        scenes.append(Scene(path, (x, y, side, side), int(face_index)))
    return scenes


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / float(aw * ah + bw * bh - inter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help="model name, run folder or .keras file (repeatable; "
                                                          "default: the default model)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("FER_DATA_DIR", "../shared/data")))
    parser.add_argument("--scenes", type=int, default=1000, help="scenes, one pasted PublicTest face each")
    parser.add_argument("--margins", default="0,0.05,0.1,0.15,0.2,0.3", help="crop margins to compare")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from fer_model.data import load_fer2013
    from workers.chunks.annotate import PathPolicy, annotate_images, read_for_detection
    from workers.serving.classifier import EmotionClassifier, backend_for
    from workers.vision.cropping import FACE_MARGIN, face_crop
    from workers.vision.detection import get_detector
    from fer_model.faces import stack_faces

    val = load_fer2013(args.data_dir / "fer2013")["val"]
    photos = sorted((args.data_dir / "photos").glob("*.jpg"))
    classifiers = [EmotionClassifier(name, backend_for()) for name in args.model or ["default"]]
    detector = get_detector(args.detector)
    margins = sorted({float(m) for m in args.margins.split(",")} | {FACE_MARGIN})

    with tempfile.TemporaryDirectory() as folder:
        scenes = build_scenes(val.images, photos, args.scenes, Path(folder), args.seed)
        results = annotate_images(
            [(i, str(scene.path)) for i, scene in enumerate(scenes)], detector, classifiers[0], PathPolicy((folder,))
        )
        found: list[tuple[Scene, object]] = []
        for scene, result in zip(scenes, results):
            matches = [face for face in result.faces if iou((face.x, face.y, face.w, face.h), scene.box) >= MATCH_IOU]
            if matches:
                found.append((scene, max(matches, key=lambda f: iou((f.x, f.y, f.w, f.h), scene.box))))
        crops: dict[float, list[np.ndarray]] = {margin: [] for margin in margins}
        pasted_squares = []
        for scene, face in found:  # each scene decoded once, all its crops cut from it
            gray = read_for_detection(scene.path).gray
            for margin in margins:
                crops[margin].append(face_crop(gray, face.x, face.y, face.w, face.h, margin))
            pasted_squares.append(face_crop(gray, *scene.box, 0.0))

    print(f"Detector {args.detector}, {len(scenes)} scenes, one PublicTest face pasted in each at 80-300 px")
    print(f"Pasted faces found: {len(found)}/{len(scenes)} ({len(found) / len(scenes):.3f})")
    if not found:
        print("No pasted face was found: nothing to compare")
        return
    truth = np.array([val.labels[scene.face_index] for scene, _ in found])
    sampled = np.array([s.face_index for s in scenes])
    for number, classifier in enumerate(classifiers):
        by_margin = {margin: classifier.predict(crops[margin]).argmax(axis=1) for margin in margins}
        if number == 0:  # the labels the pipeline itself stored
            served = np.array([np.argmax(face.probabilities) for _, face in found])
        else:
            served = by_margin[FACE_MARGIN]
        direct_found = classifier.predict_faces(stack_faces([val.images[s.face_index] for s, _ in found]))
        direct_all = float(np.mean(classifier.predict_faces(stack_faces(list(val.images[sampled]))).argmax(axis=1)
                                   == val.labels[sampled]))
        direct = float(np.mean(direct_found.argmax(axis=1) == truth))
        pipeline = float(np.mean(served == truth))
        print(f"\nModel {classifier.identity.name} ({classifier.identity.version})")
        print(f"Direct accuracy on the original crops: {direct_all:.4f} (all sampled), {direct:.4f} (the found faces)")
        for margin, labels in by_margin.items():
            accuracy = float(np.mean(labels == truth))
            marker = "  <- served" if margin == FACE_MARGIN else ""
            print(f"  crop margin {margin:.2f}: pipeline accuracy {accuracy:.4f}{marker}")
        at_pasted_square = float(np.mean(classifier.predict(pasted_squares).argmax(axis=1) == truth))
        print(f"  crop at the pasted square itself (no detector error): {at_pasted_square:.4f}")
        print(f"Pipeline accuracy {pipeline:.4f} vs direct {direct:.4f} on the same faces: "
              f"gap {100 * (direct - pipeline):.1f} points")


if __name__ == "__main__":
    main()
