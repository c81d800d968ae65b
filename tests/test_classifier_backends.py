"""The classifier on ONNX Runtime gives the Keras model's probabilities, without TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_model.recipes import RECIPES
from fer_model.registry import load_model, resolve_model
from workers.serving.onnx_classifier import OnnxEmotionModel, UnsupportedModel

ROOT = Path(__file__).resolve().parents[1]


def _faces(count: int = 64) -> np.ndarray:
    rng = np.random.default_rng(3)
    smooth = rng.integers(0, 256, size=(count, 12, 12), dtype=np.uint8).repeat(4, axis=1).repeat(4, axis=2)
    return np.clip(smooth + rng.integers(0, 30, size=smooth.shape), 0, 255).astype(np.uint8)[..., None]


@pytest.mark.slow  # loads a committed model through TensorFlow
def test_onnx_translation_matches_keras_on_the_committed_model():
    ref = resolve_model("default")
    faces = _faces()
    expected = np.asarray(load_model(ref).predict_on_batch(faces.astype(np.float32)))
    got = OnnxEmotionModel(ref.path).predict_faces(faces)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_onnx_translation_matches_keras_on_the_default_recipe_with_average_pooling(tmp_path):
    """Global average pooling, folded batch norms (with non-trivial statistics) and a baked temperature."""
    from fer_model.calibration import with_temperature
    from fer_model.recipes import get_recipe

    model = with_temperature(get_recipe("default").build(3), 1.3)
    rng = np.random.default_rng(5)
    for layer in model.layers:
        if "bn" in layer.name:
            layer.set_weights([rng.uniform(0.5, 1.5, size=w.shape).astype(np.float32) for w in layer.get_weights()])
    path = tmp_path / "default.keras"
    model.save(path)
    faces = _faces()
    expected = np.asarray(model.predict_on_batch(faces.astype(np.float32)))
    got = OnnxEmotionModel(path).predict_faces(faces)
    assert np.abs(got - expected).max() < 1e-4
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_a_flip_averaged_model_serves_the_mean_over_mirror_images_on_both_backends(tmp_path):
    """One file holds the averaging and the temperature; Keras and ONNX Runtime agree, and both equal the
    network's own predictions for each face and its mirror image, averaged, then rescaled."""
    from fer_model.calibration import rescale, with_temperature
    from fer_model.evaluation import predict_probabilities
    from fer_model.recipes import get_recipe
    from fer_model.flip_averaging import is_flip_averaged, single_pass, with_flip_averaging

    network = get_recipe("seed-flip").build(3)
    rng = np.random.default_rng(5)
    for layer in network.layers:
        if "bn" in layer.name:
            layer.set_weights([rng.uniform(0.5, 1.5, size=w.shape).astype(np.float32) for w in layer.get_weights()])
    path = tmp_path / "flip.keras"
    with_temperature(with_flip_averaging(network), 1.3).save(path)

    served = load_model(resolve_model(path))
    assert is_flip_averaged(served) and not is_flip_averaged(network)
    faces = _faces()
    inner = single_pass(served)
    averaged = (predict_probabilities(inner, faces) + predict_probabilities(inner, faces[:, :, ::-1])) / 2
    expected = np.asarray(served.predict_on_batch(faces.astype(np.float32)))
    np.testing.assert_allclose(expected, rescale(averaged, 1.3), atol=1e-5)
    assert np.abs(expected - predict_probabilities(inner, faces)).max() > 1e-3  # the mirror image counts
    got = OnnxEmotionModel(path).predict_faces(faces)
    assert np.abs(got - expected).max() < 1e-4


def test_a_layer_it_does_not_translate_leaves_the_model_to_keras(tmp_path, monkeypatch):
    import keras

    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.GlobalMaxPooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x))
    path = tmp_path / "gmp.keras"
    model.save(path)
    with pytest.raises(UnsupportedModel, match="GlobalMaxPooling2D"):
        OnnxEmotionModel(path)
    from workers.serving.classifier import EmotionClassifier

    monkeypatch.delenv("FER_CLASSIFIER_BACKEND", raising=False)
    classifier = EmotionClassifier(str(path), backend="onnx")
    assert classifier.backend == "keras"
    assert classifier.predict_faces(_faces(3)).shape == (3, 7)


def test_cpu_machines_classify_on_onnx_unless_told_otherwise(monkeypatch):
    from workers.serving import classifier

    monkeypatch.delenv("FER_CLASSIFIER_BACKEND", raising=False)
    monkeypatch.setattr("workers.serving.classifier.visible_gpus", lambda: [])
    assert classifier.backend_for() == "onnx"
    monkeypatch.setenv("FER_CLASSIFIER_BACKEND", "keras")
    assert classifier.backend_for() == "keras"
    monkeypatch.setenv("FER_CLASSIFIER_BACKEND", "onnx")
    assert classifier.backend_for() == "onnx"


def test_gpu_machines_classify_with_keras(monkeypatch):
    from workers.serving import classifier
    from workers.serving.devices import Device

    monkeypatch.delenv("FER_CLASSIFIER_BACKEND", raising=False)
    monkeypatch.setattr("workers.serving.classifier.visible_gpus", lambda: [Device("GPU", "NVIDIA H100")])
    assert classifier.backend_for() == "keras"


def test_gpu_machines_classify_an_int8_model_on_onnx_runtime(monkeypatch):
    """One model name, one computation: the int8 graph serves on the CPU even where Keras would take the GPU."""
    from fer_model.registry import available_models
    from fer_model.served_graph import INT8
    from workers.serving import classifier
    from workers.serving.devices import Device

    monkeypatch.delenv("FER_CLASSIFIER_BACKEND", raising=False)
    monkeypatch.setattr("workers.serving.classifier.visible_gpus", lambda: [Device("GPU", "NVIDIA H100")])
    name = next(ref.name for ref in available_models() if ref.precision == INT8)
    served = classifier.EmotionClassifier(name, classifier.backend_for())
    assert classifier.backend_for() == "keras" and served.backend == "onnx"
    assert served.predict_faces(_faces(3)).shape == (3, 7)


def test_a_cpu_machine_classifies_without_importing_tensorflow():
    code = (
        "import sys; from workers.serving.classifier import EmotionClassifier, backend_for; import numpy as np\n"
        "c = EmotionClassifier('default', backend_for()); p = c.predict_faces(np.zeros((2, 48, 48, 1), np.uint8))\n"
        "print(c.backend, p.shape, 'tensorflow' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                            env={"PATH": "/usr/bin:/bin", "FER_CLASSIFIER_BACKEND": "auto"}).stdout
    assert output.split() == ["onnx", "(2,", "7)", "False"]


@pytest.mark.parametrize("content", [b"not a zip", b"PK\x05\x06" + b"\x00" * 18])
def test_a_damaged_model_file_is_named_as_not_loadable(tmp_path, content):
    from fer_model.registry import ModelNotFound

    path = tmp_path / "damaged.keras"
    path.write_bytes(content)
    with pytest.raises(ModelNotFound, match=r"damaged\.keras: not a loadable Keras model"):
        OnnxEmotionModel(path)


def test_annotate_with_a_damaged_model_fails_in_one_line(tmp_path, photos_dir):
    from click.testing import CliRunner

    from cli.main import fer

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(next(iter(sorted(photos_dir.glob("*.jpg")))).read_bytes())
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(b"not a zip")
    result = CliRunner().invoke(fer, ["annotate", str(folder), "--model", str(damaged), "--processes", "1",
                                      "--db", f"sqlite:///{tmp_path / 'fer.db'}"])
    assert result.exit_code == 1
    assert "damaged.keras: not a loadable Keras model (" in result.output
    assert "Traceback" not in result.output


def test_an_unknown_backend_name_is_refused(monkeypatch):
    from workers.serving import classifier

    monkeypatch.setenv("FER_CLASSIFIER_BACKEND", "opencv")
    with pytest.raises(ValueError, match="FER_CLASSIFIER_BACKEND is 'opencv': use one of auto, keras, onnx"):
        classifier.backend_for()


def test_the_session_uses_as_many_threads_as_opencv_may(monkeypatch):
    import cv2

    path = resolve_model("seed").path
    previous = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        assert OnnxEmotionModel(path).session.get_session_options().intra_op_num_threads == 1
        assert OnnxEmotionModel(path, threads=2).session.get_session_options().intra_op_num_threads == 2
    finally:
        cv2.setNumThreads(previous)


def test_the_batch_size_follows_the_backend_and_fer_batch_size(monkeypatch):
    from workers.serving.devices import CPU_BATCH_SIZE, GPU_BATCH_SIZE, ONNX_BATCH_SIZE, Device, batch_size_for

    monkeypatch.delenv("FER_BATCH_SIZE", raising=False)
    assert batch_size_for("onnx", []) == ONNX_BATCH_SIZE
    assert batch_size_for("keras", []) == CPU_BATCH_SIZE
    assert batch_size_for("keras", [Device("GPU", "any")]) == GPU_BATCH_SIZE
    monkeypatch.setenv("FER_BATCH_SIZE", "16")
    assert batch_size_for("onnx", []) == 16


@pytest.mark.slow
def test_annotate_labels_the_same_faces_alike_on_both_backends(tmp_path, photos_dir, monkeypatch):
    """The GPU machines' path (Keras, batch norms folded) and the CPU machines' (ONNX Runtime) agree."""
    import sqlite3

    from click.testing import CliRunner

    from cli.main import fer

    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted(photos_dir.glob("*.jpg"))[:12]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    rows = {}
    for backend in ("keras", "onnx"):
        monkeypatch.setenv("FER_CLASSIFIER_BACKEND", backend)
        database = tmp_path / f"{backend}.db"
        # a float model: the default's int8 graph runs on ONNX Runtime only
        result = CliRunner().invoke(fer, ["annotate", str(folder), "--processes", "1", "--model", "seed-deep",
                                          "--db", f"sqlite:///{database}"])
        assert result.exit_code == 0, result.output
        with sqlite3.connect(database) as connection:
            rows[backend] = connection.execute(
                "SELECT images.path, faces.x, faces.y, faces.label, faces.p_angry, faces.p_disgust, faces.p_fear, "
                "faces.p_happy, faces.p_neutral, faces.p_sad, faces.p_surprise FROM faces "
                "JOIN images ON images.id = faces.image_id ORDER BY images.path, faces.x").fetchall()
    assert len(rows["onnx"]) >= 10
    assert [row[:4] for row in rows["keras"]] == [row[:4] for row in rows["onnx"]]
    for keras_row, onnx_row in zip(rows["keras"], rows["onnx"]):
        np.testing.assert_allclose(keras_row[4:], onnx_row[4:], atol=2e-4)  # stored to 4 decimals


@pytest.mark.slow
@pytest.mark.parametrize("recipe_name", sorted(RECIPES))
def test_every_recipe_serves_alike_on_onnx_and_folded_keras(recipe_name, tmp_path):
    from fer_model.calibration import with_temperature
    from fer_model.inference import folded_for_inference
    from fer_model.recipes import get_recipe

    recipe = get_recipe(recipe_name)
    network = recipe.build(4)
    rng = np.random.default_rng(6)
    for layer in network.layers:
        if "bn" in layer.name:
            layer.set_weights([rng.uniform(0.5, 1.5, size=w.shape).astype(np.float32) for w in layer.get_weights()])
    model = with_temperature(recipe.for_serving(network), 1.2)
    path = tmp_path / f"{recipe_name}.keras"
    model.save(path)
    faces = _faces(16)
    expected = np.asarray(model.predict_on_batch(faces.astype(np.float32)))
    np.testing.assert_allclose(OnnxEmotionModel(path).predict_faces(faces), expected, atol=1e-4)
    np.testing.assert_allclose(folded_for_inference(model).predict_on_batch(faces.astype(np.float32)), expected,
                               atol=1e-5)
