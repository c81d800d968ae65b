"""Reading FER2013 in both formats: class mapping, split rules, caching and bad data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_model.classes import CLASSES, CSV_CODE_TO_INDEX
from fer_model.data import DataError, load_fer2013, split_from_name
from tests.conftest import face, write_csv, write_image_folders


def test_csv_codes_map_to_canonical_classes_by_name():
    # FER2013's CSV order is angry, disgust, fear, happy, sad, surprise, neutral.
    expected = {0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral"}
    assert {code: CLASSES[index] for code, index in CSV_CODE_TO_INDEX.items()} == expected
    assert CLASSES == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


@pytest.mark.parametrize(
    ("name", "split"),
    [("Training_1.jpg", "train"), ("PublicTest_9.jpg", "val"), ("PrivateTest_3.png", "test"), ("face_1.jpg", None), ("x.jpg", None)],
)
def test_split_from_file_name_prefix(name, split):
    assert split_from_name(name) == split


def test_prefixed_folders_split_by_prefix_not_folder(tmp_path):
    counts = write_image_folders(tmp_path, per_class=2, layout="prefixed")
    dataset = load_fer2013(tmp_path)
    assert {name: len(split) for name, split in dataset.splits.items()} == counts
    # PublicTest and PrivateTest files share the test/ folder but land in different splits.
    assert all("PublicTest_" in source for source in dataset["val"].sources)
    assert all("PrivateTest_" in source for source in dataset["test"].sources)
    assert dataset["train"].class_counts() == {name: 2 for name in CLASSES}


def test_plain_folders_split_by_folder_name(tmp_path):
    counts = write_image_folders(tmp_path, per_class=1, layout="plain")
    dataset = load_fer2013(tmp_path)
    assert {name: len(split) for name, split in dataset.splits.items()} == counts


def test_images_keep_their_pixels_and_labels(tmp_path):
    write_image_folders(tmp_path, per_class=1, layout="plain")
    dataset = load_fer2013(tmp_path)
    train = dataset["train"]
    assert train.images.shape == (7, 48, 48) and train.images.dtype == np.uint8
    for image, label, source in zip(train.images, train.labels, train.sources):
        assert Path(source).parent.name == CLASSES[label]
        seed = int(Path(source).stem)
        np.testing.assert_array_equal(image, face(seed, label))


def test_csv_with_usage_column(tmp_path):
    csv_path = tmp_path / "fer2013.csv"
    rows = write_csv(csv_path, rows_per_class=2)
    dataset = load_fer2013(csv_path)
    assert len(dataset["train"]) == len(dataset["val"]) == len(dataset["test"]) == 14
    # Row order is preserved, so labels follow the CSV codes through the by-name mapping.
    expected = [CSV_CODE_TO_INDEX[code] for code, usage in rows if usage == "Training"]
    assert dataset["train"].labels.tolist() == expected
    assert dataset["train"].sources[0] == "fer2013.csv:2"


def test_csv_found_inside_a_folder_and_without_usage(tmp_path):
    write_csv(tmp_path / "fer2013.csv", rows_per_class=1, usage=False)
    dataset = load_fer2013(tmp_path)
    assert len(dataset["train"]) == 7 and not dataset.has("val") and not dataset.has("test")


def test_both_formats_give_the_same_pixels(tmp_path):
    write_csv(tmp_path / "a.csv", rows_per_class=1, usage=False)
    from_csv = load_fer2013(tmp_path / "a.csv")["train"]
    folder = tmp_path / "folders"
    for image, label in zip(from_csv.images, from_csv.labels):
        (folder / "train" / CLASSES[label]).mkdir(parents=True)
        cv2.imwrite(str(folder / "train" / CLASSES[label] / "x.png"), image)
    from_folders = load_fer2013(folder)["train"]
    order = np.argsort(from_folders.labels)
    np.testing.assert_array_equal(from_folders.images[order], from_csv.images[np.argsort(from_csv.labels)])


def test_second_load_comes_from_cache_and_changed_content_does_not(tmp_path):
    write_image_folders(tmp_path, per_class=1, layout="plain")
    first = load_fer2013(tmp_path)
    second = load_fer2013(tmp_path)
    assert not first.from_cache and second.from_cache
    np.testing.assert_array_equal(first["train"].images, second["train"].images)
    np.testing.assert_array_equal(first["val"].labels, second["val"].labels)

    target = next((tmp_path / "train" / "happy").iterdir())
    cv2.imwrite(str(target), np.full((48, 48), 7, np.uint8))
    third = load_fer2013(tmp_path)
    assert not third.from_cache
    assert (third["train"].images == 7).all(axis=(1, 2)).sum() == 1


def test_evaluation_split_falls_back_to_public_test_and_says_so(tmp_path):
    write_image_folders(tmp_path, per_class=1, layout="prefixed")
    for file in tmp_path.rglob("PrivateTest_*"):
        file.unlink()
    dataset = load_fer2013(tmp_path)
    assert dataset.evaluation_split("val") == ("val", None)
    split, note = dataset.evaluation_split("test")
    assert split == "val" and "PrivateTest" in note and "absent" in note


# --- bad data: a clear error naming the file or line, or a count with skip_bad ---------------


def _one_good_image(root: Path) -> None:
    (root / "train" / "happy").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "train" / "happy" / "Training_1.png"), face(1, 3))


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda root: (root / "train" / "sad" / "Training_2.jpg").write_bytes(b"not an image"), "Training_2.jpg: unreadable image"),
        (lambda root: (root / "train" / "sad" / "Training_3.jpg").write_bytes(b""), "Training_3.jpg: unreadable image"),
        (
            lambda root: cv2.imwrite(str(root / "train" / "sad" / "Training_4.png"), np.zeros((64, 48), np.uint8)),
            "Training_4.png: wrong size 48x64, expected 48x48",
        ),
        (
            lambda root: cv2.imwrite(str(root / "train" / "contempt" / "Training_5.png"), face(5, 0)),
            "unknown class folder 'contempt'",
        ),
        (
            lambda root: cv2.imwrite(str(root / "misc" / "happy" / "face.png"), face(6, 0)),
            "cannot tell its split",
        ),
    ],
)
def test_bad_image_data_names_the_file(tmp_path, make_bad, message):
    _one_good_image(tmp_path)
    for sub in ("train/sad", "train/contempt", "misc/happy"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    make_bad(tmp_path)
    with pytest.raises(DataError, match=message.replace(".", r"\.")):
        load_fer2013(tmp_path)
    skipped = load_fer2013(tmp_path, skip_bad=True)
    assert skipped.skipped == 1 and len(skipped["train"]) == 1
    assert message in skipped.skipped_examples[0]


GOOD_PIXELS = " ".join(["10"] * 2304)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (f"9,{GOOD_PIXELS},Training", "line 3: emotion '9' is not a FER2013 code 0-6"),
        (f"x,{GOOD_PIXELS},Training", "line 3: emotion 'x' is not a FER2013 code 0-6"),
        ("3,1 2 3,Training", "line 3: 3 pixels, expected 2304"),
        (f"3,{GOOD_PIXELS} a,Training", "line 3: pixels must be space-separated integers"),
        (f"3,{' '.join(['300'] * 2304)},Training", "line 3: pixel values must lie in 0-255"),
        (f"3,{GOOD_PIXELS}", "line 3: expected 3 columns, got 2"),
        (f"3,{GOOD_PIXELS},Holdout", "line 3: unknown Usage 'Holdout'"),
    ],
)
def test_malformed_csv_rows_name_the_line(tmp_path, row, message):
    path = tmp_path / "fer2013.csv"
    path.write_text(f"emotion,pixels,Usage\n3,{GOOD_PIXELS},Training\n{row}\n")
    with pytest.raises(DataError, match=message):
        load_fer2013(path)
    skipped = load_fer2013(path, skip_bad=True)
    assert skipped.skipped == 1 and len(skipped["train"]) == 1


def test_csv_without_required_columns(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("label,image\n1,2\n")
    with pytest.raises(DataError, match="line 1: expected a header with 'emotion' and 'pixels'"):
        load_fer2013(path)


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        load_fer2013(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no images found"):
        load_fer2013(tmp_path)


def test_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FER_CACHE_DIR", str(cache))
    write_image_folders(tmp_path / "data", per_class=1, layout="plain")
    load_fer2013(tmp_path / "data")
    for file in cache.rglob("*.npz"):
        file.write_bytes(b"garbage")
    again = load_fer2013(tmp_path / "data")
    assert not again.from_cache and len(again["train"]) == 7
