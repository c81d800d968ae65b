"""Train the face verifier: a small CNN that tells a face candidate from a false one.

    python -m workers.vision.verifier_training --fer2013 ../shared/data/fer2013 --photos ../shared/data/photos \\
        --out fer_model/verifiers/face-verifier

Faces: FER2013 faces (their 48x48 framing is the Haar box's: on 600 training faces the
cascade's box is a median 0.98 of the image, centred), each cut a little smaller at a random
place and mirrored at random; and, from ordinary photos at several scales, the candidates
that the shortened cascade proposes (``workers.vision.face_proposals``, the detector's own
settings) where they frame a face that the full cascade finds with fer's strict setting.
Non-faces: the other candidates and random windows of those photos, away from their faces
(a part of a face, or a face with much around it, is a non-face), and windows of 30-50% of a
FER2013 face. Both classes come from both sources, so that neither source's look (FER2013's
stretched contrast, the photos' JPEG) tells them apart. Every window lies inside a real photo,
never across the border of a pasted one, so the verifier cannot learn paste edges. Photos are
split by their sorted position: even ones train, odd ones validate (with FER2013 PublicTest).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from fer_model.files import write_atomically
from workers.vision.detection import PROPOSAL_CASCADE, PROPOSAL_SCALE_FACTOR, PROPOSAL_STAGES
from workers.vision.face_proposals import group_windows, raw_windows, truncated_cascade
from workers.vision.face_verifier import CROP, VERIFIER_FILE, crop_box

SCALES = (0.35, 0.45, 0.6, 0.8, 1.0, 1.5)  # photo scales the examples are mined at: faces of about 40-180 px
RANDOM_WINDOWS = 4  # per photo and scale, beside the cascade's candidates


def positive_crops(faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One crop per 48x48 face: a square of 80-100% of it at a random place, mirrored half the time."""
    crops = np.empty((len(faces), CROP, CROP), np.uint8)
    for index, face in enumerate(faces):
        side = int(round(face.shape[0] * rng.uniform(0.8, 1.0)))
        left, top = (int(rng.integers(0, face.shape[0] - side + 1)) for _ in range(2))
        crop = cv2.resize(face[top : top + side, left : left + side], (CROP, CROP), interpolation=cv2.INTER_AREA)
        crops[index] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return crops


def _faces_in(gray: np.ndarray, full_cascade: cv2.CascadeClassifier) -> np.ndarray:
    """Faces the full cascade finds with a strict setting (fer's: 1.1, 5 neighbours): kept out of the negatives."""
    boxes = full_cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def _near_a_face(box: tuple[float, float, float, float], faces: np.ndarray) -> bool:
    """Could the box pass for one of ``faces``: centre within 0.35 of its width, width 0.6-1.6x? Windows that
    frame a face badly (a part of it, or a face with as much again around it, as a whole small photo does)
    are non-faces."""
    x, y, w, h = box
    for fx, fy, fw, fh in faces:
        if (abs(x + w / 2 - fx - fw / 2) <= 0.35 * fw and abs(y + h / 2 - fy - fh / 2) <= 0.35 * fh
                and 0.6 <= w / fw <= 1.6):
            return True
    return False


def _on_a_face(box: tuple[float, float, float, float], faces: np.ndarray) -> bool:
    """Does the box frame one of ``faces`` closely (centre within 0.2 of its width, width 0.75-1.33x)?"""
    x, y, w, h = box
    return any(abs(x + w / 2 - fx - fw / 2) <= 0.2 * fw and abs(y + h / 2 - fy - fh / 2) <= 0.2 * fh
               and 0.75 <= w / fw <= 1.33 for fx, fy, fw, fh in faces)


def photo_crops(photos: list[Path], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(faces, non-faces) cut from ``photos`` as the detector would see them.

    At each of SCALES, the shortened cascade's candidates (the detector's own settings) that
    frame a face found by the full cascade at fer's strict setting are faces; those and
    random windows away from every such face are non-faces; candidates in between are left out.
    """
    proposals = truncated_cascade(PROPOSAL_CASCADE, PROPOSAL_STAGES)
    full = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / PROPOSAL_CASCADE))
    faces_out: list[np.ndarray] = []
    others: list[np.ndarray] = []
    for path in photos:
        original = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if original is None:
            continue
        found = _faces_in(original, full)
        for scale in SCALES:
            gray = cv2.resize(original, None, fx=scale, fy=scale,
                              interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            faces = found * scale
            boxes, weights = raw_windows(proposals, gray, PROPOSAL_SCALE_FACTOR, 24)
            windows = [(c.x, c.y, c.w, c.h) for c in group_windows(boxes, weights)]
            for _ in range(RANDOM_WINDOWS):
                side = float(rng.uniform(24, min(gray.shape) * 0.6))
                windows.append((float(rng.uniform(0, gray.shape[1] - side)), float(rng.uniform(0, gray.shape[0] - side)),
                                side, side))
            for fx, fy, fw, fh in faces:  # the face with too much around it, up to the whole photo
                for factor in (1.8, 2.2, 2.6):
                    side = min(fw * factor, min(gray.shape))
                    windows.append((fx + fw / 2 - side / 2, fy + fh / 2 - side / 2, side, side))
            windows.append((0.0, 0.0, float(min(gray.shape)), float(min(gray.shape))))
            for window in windows:
                crop = crop_box(gray, *window)
                if crop is None:
                    continue
                if _on_a_face(window, faces):
                    faces_out.append(crop)
                elif not _near_a_face(window, faces):
                    others.append(crop)
    empty = np.zeros((0, CROP, CROP), np.uint8)
    return (np.stack(faces_out) if faces_out else empty), (np.stack(others) if others else empty)


def partial_face_crops(faces: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Non-faces from FER2013 itself: windows of 30-50% of a face (an eye, a mouth, a cheek), ``count`` of them."""
    crops = np.empty((count, CROP, CROP), np.uint8)
    for index, face in enumerate(faces[rng.integers(0, len(faces), count)]):
        side = int(round(face.shape[0] * rng.uniform(0.3, 0.5)))
        left, top = (int(rng.integers(0, face.shape[0] - side + 1)) for _ in range(2))
        crops[index] = cv2.resize(face[top : top + side, left : left + side], (CROP, CROP), interpolation=cv2.INTER_LINEAR)
    return crops


def build_model(filters: int = 8):
    """Three 3x3 convolutions (``filters``, twice and four times as many, each followed by 2x2 max pooling),
    ``filters`` x 4 dense units, face / not a face."""
    # Keras, and TensorFlow under it, load only to build or train the verifier.
    import keras

    from fer_model.preprocessing import FaceMinMaxScaling

    return keras.Sequential([
        keras.Input((CROP, CROP, 1)),
        FaceMinMaxScaling(),
        keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(2 * filters, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(4 * filters, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(4 * filters, activation="relu"),
        keras.layers.Dense(2, activation="softmax"),
    ])


def _split_photos(photos_dir: Path) -> tuple[list[Path], list[Path]]:
    photos = sorted(photos_dir.glob("*.jpg"))
    return photos[0::2], photos[1::2]


def _examples(fer_faces: np.ndarray, photos: list[Path], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Faces and non-faces from both sources, so that neither source's look tells the classes apart."""
    photo_faces, photo_others = photo_crops(photos, rng)
    faces = np.concatenate([positive_crops(fer_faces, rng), photo_faces, photo_faces[:, :, ::-1]])
    negatives = np.concatenate([photo_others, partial_face_crops(fer_faces, len(fer_faces) // 3, rng)])
    x = np.concatenate([faces, negatives])[..., np.newaxis]
    y = np.concatenate([np.ones(len(faces), np.int64), np.zeros(len(negatives), np.int64)])
    return x, y


def _rates(model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    scores = model.predict(x, batch_size=1024, verbose=0)[:, 1]
    return {"faces_accepted": float((scores[y == 1] >= 0.5).mean()),
            "non_faces_rejected": float((scores[y == 0] < 0.5).mean()),
            "faces": int((y == 1).sum()), "non_faces": int((y == 0).sum())}


def train(fer2013: Path, photos_dir: Path, out: Path, epochs: int, seed: int, filters: int = 16) -> dict:
    """Fit the verifier and write ``out``/model.keras and its card; returns the card."""
    # Keras, and TensorFlow under it, load only to build or train the verifier.
    import keras

    from fer_model.data import load_fer2013

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    started = time.time()
    data = load_fer2013(fer2013)
    train_photos, validation_photos = _split_photos(photos_dir)
    x, y = _examples(data["train"].images, train_photos, rng)
    validation = _examples(data["val"].images, validation_photos, rng)
    model = build_model(filters)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # Both classes weigh the same, whatever their counts.
    weights = {label: len(y) / (2 * max(int((y == label).sum()), 1)) for label in (0, 1)}
    model.fit(x, y, batch_size=256, epochs=epochs, class_weight=weights, validation_data=validation, verbose=2)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    card = {
        "name": out.name,
        "task": "face candidate verifier (index 1: face)",
        "input": f"{CROP}x{CROP} gray crop of a candidate box",
        "data": {"faces": f"FER2013 Training ({len(data['train'])} faces), one jittered crop each; shortened-cascade "
                          f"candidates framing the faces that the full cascade finds (1.1 step, 5 neighbours) in the "
                          f"even-numbered {len(train_photos)} of {photos_dir.name}/ (sorted), at scales {list(SCALES)}",
                 "non_faces": "shortened-cascade candidates and random windows of those photos away from their faces; "
                              "windows of 30-50% of a FER2013 Training face (one for every third face)",
                 "validation": f"the same from FER2013 PublicTest and the odd-numbered {len(validation_photos)} photos"},
        "command": (f"python -m workers.vision.verifier_training --fer2013 {fer2013} --photos {photos_dir} --out {out} "
                    f"--epochs {epochs} --seed {seed} --filters {filters}"),
        "parameters": int(model.count_params()),
        "training": _rates(model, x, y),
        "validation": _rates(model, *validation),
        "epochs": epochs,
        "seed": seed,
        "minutes": round((time.time() - started) / 60, 1),
        "date": time.strftime("%Y-%m-%d"),
    }
    write_atomically(out / "card.json", json.dumps(card, indent=2) + "\n")
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = Path(os.environ.get("FER_DATA_DIR", "../shared/data"))
    parser.add_argument("--fer2013", type=Path, default=data / "fer2013")
    parser.add_argument("--photos", type=Path, default=data / "photos")
    parser.add_argument("--out", type=Path, default=VERIFIER_FILE.parent)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--filters", type=int, default=16, help="the first convolution's filters (then 2x, 4x)")
    args = parser.parse_args()
    card = train(args.fer2013, args.photos, args.out, args.epochs, args.seed, args.filters)
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
