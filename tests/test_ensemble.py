"""Ensembles, soft labels and the ONNX graph saved beside every model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import fer
from fer_model.ensemble import SelectionStep, forward_selection
from tests.conftest import write_image_folders


def _faces(count: int = 32) -> np.ndarray:
    rng = np.random.default_rng(3)
    smooth = rng.integers(0, 256, size=(count, 12, 12), dtype=np.uint8).repeat(4, axis=1).repeat(4, axis=2)
    return np.clip(smooth + rng.integers(0, 30, size=smooth.shape), 0, 255).astype(np.uint8)[..., None]


def _member(recipe_name: str, seed: int, temperature: float):
    """A served model of the recipe with random, non-trivial batch-norm statistics."""
    from fer_model.calibration import with_temperature
    from fer_model.recipes import get_recipe

    recipe = get_recipe(recipe_name)
    network = recipe.build(seed)
    rng = np.random.default_rng(seed)
    for layer in network.layers:
        if "bn" in layer.name:
            layer.set_weights([rng.uniform(0.5, 1.5, size=w.shape).astype(np.float32) for w in layer.get_weights()])
    return with_temperature(recipe.for_serving(network), temperature)


def test_an_ensemble_serves_its_members_mean_rescaled_alike_on_keras_and_onnx(tmp_path):
    from fer_model.calibration import rescale, with_temperature
    from fer_model.ensemble import build_ensemble, is_ensemble
    from fer_model.files import file_sha256
    from fer_model.onnx_export import save_served_model
    from fer_model.registry import load_model, resolve_model
    from fer_model.served_graph import SOURCE_SHA256
    from workers.serving.onnx_classifier import OnnxEmotionModel

    members = {"a": _member("seed", 1, 1.3), "b": _member("seed-wide", 2, 0.8), "c": _member("default", 3, 1.0)}
    faces = _faces()
    alone = [np.asarray(m.predict_on_batch(faces.astype(np.float32))) for m in members.values()]
    path = tmp_path / "ensemble.keras"
    onnx_path = save_served_model(with_temperature(build_ensemble(members), 1.7), path)

    assert onnx_path == tmp_path / "ensemble.onnx" and onnx_path.is_file()
    import onnx

    properties = {p.key: p.value for p in onnx.load_model(onnx_path).metadata_props}
    assert properties[SOURCE_SHA256] == file_sha256(path)
    served = load_model(resolve_model(path))
    assert is_ensemble(served)
    expected = rescale(np.mean(alone, axis=0), 1.7)
    keras_output = np.asarray(served.predict_on_batch(faces.astype(np.float32)))
    np.testing.assert_allclose(keras_output, expected, atol=1e-5)
    np.testing.assert_allclose(OnnxEmotionModel(path).predict_faces(faces), keras_output, atol=1e-4)


def test_a_graph_exported_from_another_version_of_the_file_is_not_served(tmp_path):
    from fer_model.onnx_export import save_served_model
    from workers.serving.onnx_classifier import OnnxEmotionModel

    path = tmp_path / "model.keras"
    old = _member("seed", 1, 1.0)
    save_served_model(old, path)
    stale = (tmp_path / "model.onnx").read_bytes()
    new = _member("seed", 5, 1.0)
    save_served_model(new, path)
    (tmp_path / "model.onnx").write_bytes(stale)  # e.g. a .keras file replaced by hand
    faces = _faces(8)
    expected = np.asarray(new.predict_on_batch(faces.astype(np.float32)))
    np.testing.assert_allclose(OnnxEmotionModel(path).predict_faces(faces), expected, atol=1e-4)


def test_forward_selection_adds_the_member_that_helps_most_first():
    labels = np.array([0, 1, 2, 0])
    confident = np.eye(3)[[0, 1, 2, 1]] * 0.9 + 0.1 / 3  # right on 3 of 4
    fixer = np.full((4, 3), 1 / 3)  # no opinion but on the last face, which it gets right
    fixer[3] = [0.99, 0.005, 0.005]
    wrong = np.eye(3)[[1, 2, 0, 1]]
    steps = forward_selection({"wrong": wrong, "fixer": fixer, "confident": confident}, labels)
    assert [s.member for s in steps] == ["confident", "fixer", "wrong"]
    assert steps[0] == SelectionStep("confident", 1, 0.75)
    assert steps[1].accuracy == 1.0


def test_soft_labels_line_up_by_file_name_and_refuse_other_data(tmp_path):
    from fer_model.data import load_fer2013
    from fer_model.soft_labels import SoftLabelError, read_soft_labels, write_soft_labels

    write_image_folders(tmp_path / "data", per_class=2)
    dataset = load_fer2013(tmp_path / "data")
    train = dataset["train"]
    probabilities = np.random.default_rng(0).dirichlet(np.ones(7), size=len(train))
    write_soft_labels(tmp_path, {"train": (train, probabilities)})
    reordered = train.subset(np.arange(len(train))[::-1])
    got = read_soft_labels(tmp_path).for_split("train", reordered)
    np.testing.assert_allclose(got, probabilities[::-1], atol=1e-3)  # float16 on disk

    write_image_folders(tmp_path / "other", per_class=3)
    other = load_fer2013(tmp_path / "other")["train"]
    with pytest.raises(SoftLabelError, match=r"soft labels cover 14 of the 21 train faces .*made from other data"):
        read_soft_labels(tmp_path).for_split("train", other)
    with pytest.raises(SoftLabelError, match="run `fer model soft-labels`"):
        read_soft_labels(tmp_path / "data")


@pytest.mark.slow
def test_fer_model_ensemble_makes_a_served_model_with_card_members_and_soft_labels(tmp_path):
    write_image_folders(tmp_path / "data", per_class=3)
    data = str(tmp_path / "data")
    runner = CliRunner()
    for recipe, out in (("seed", "a"), ("seed-flip", "b")):
        result = runner.invoke(fer, ["model", "train", "--recipe", recipe, "--data", data, "--out", str(tmp_path / out),
                                     "--epochs", "1"])
        assert result.exit_code == 0, result.output
        for name in ("model.keras", "model.onnx", "soft_labels.npz"):
            assert (tmp_path / out / name).is_file(), name

    made = runner.invoke(fer, ["model", "ensemble", "--name", "pair", "--member", str(tmp_path / "a"),
                               "--member", str(tmp_path / "b"), "--data", data, "--out", str(tmp_path / "pair")])
    assert made.exit_code == 0, made.output
    assert "ensemble of 2:" in made.output
    card = json.loads((tmp_path / "pair" / "card.json").read_text())
    assert card["recipe"] == "ensemble" and [m["k"] for m in card["members"]] == [1, 2]
    assert {m["name"] for m in card["members"]} == {"a", "b"}
    assert "## Members" in (tmp_path / "pair" / "card.md").read_text()
    for name in ("model.keras", "model.onnx", "soft_labels.npz"):
        assert (tmp_path / "pair" / name).is_file(), name

    evaluated = runner.invoke(fer, ["model", "evaluate", "--model", str(tmp_path / "pair"), "--data", data,
                                    "--out", str(tmp_path / "eval")])
    assert evaluated.exit_code == 0, evaluated.output
    assert "An ensemble of 2 members" in evaluated.output

    again = runner.invoke(fer, ["model", "ensemble", "--name", "pair", "--member", str(tmp_path / "a"),
                                "--member", str(tmp_path / "b"), "--data", data, "--out", str(tmp_path / "pair")])
    assert again.exit_code == 1 and "already holds a model" in again.output
    lonely = runner.invoke(fer, ["model", "ensemble", "--name", "one", "--member", str(tmp_path / "a"), "--data", data,
                                 "--out", str(tmp_path / "one")])
    assert lonely.exit_code == 1 and "at least two members" in lonely.output and "Traceback" not in lonely.output


@pytest.mark.slow
def test_committed_models_serve_their_onnx_graphs_like_keras_on_real_faces(fer2013_dir):
    from fer_model.data import load_fer2013
    from fer_model.files import file_sha256
    from fer_model.registry import available_models, load_model
    from fer_model.served_graph import SOURCE_SHA256, onnx_path_for
    from workers.serving.onnx_classifier import OnnxEmotionModel
    import onnx

    faces = load_fer2013(fer2013_dir)["val"].images[:256][..., None]
    for ref in available_models():
        graph = onnx.load_model(onnx_path_for(ref.path))
        assert {p.key: p.value for p in graph.metadata_props}[SOURCE_SHA256] == file_sha256(ref.path), ref.name
        expected = np.asarray(load_model(ref).predict(faces.astype(np.float32), verbose=0))
        np.testing.assert_allclose(OnnxEmotionModel(ref.path).predict_faces(faces), expected, atol=1e-4)


def test_the_distillation_loss_is_cross_entropy_plus_the_softened_divergence():
    import keras

    from fer_model.distillation import DistillationLoss, distillation_targets

    rng = np.random.default_rng(0)
    student = rng.dirichlet(np.ones(7), size=5).astype(np.float32)
    teacher = rng.dirichlet(np.ones(7), size=5).astype(np.float32)
    labels = rng.integers(0, 7, size=5)
    targets = distillation_targets(labels, teacher)
    cross_entropy = float(np.mean(-np.log(student[np.arange(5), labels])))
    hard_only = float(DistillationLoss(temperature=3, weight=0.0)(targets, student))
    assert hard_only == pytest.approx(cross_entropy, rel=1e-5)
    # A student that matches its teacher pays only the hard term's share.
    matched = float(DistillationLoss(temperature=3, weight=0.6)(distillation_targets(labels, student), student))
    assert matched == pytest.approx(0.4 * cross_entropy, rel=1e-4)

    def softened(p, t):
        z = np.log(p) / t
        return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)

    t_soft, s_soft = softened(teacher, 3), softened(student, 3)
    kl = np.mean(np.sum(t_soft * (np.log(t_soft) - np.log(s_soft)), axis=1))
    full = float(DistillationLoss(temperature=3, weight=0.6)(targets, student))
    assert full == pytest.approx(0.6 * 9 * kl + 0.4 * cross_entropy, rel=1e-4)
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(DistillationLoss(2.0, 0.5))).weight == 0.5


@pytest.mark.slow
def test_a_student_trains_on_a_teachers_soft_labels_and_says_so_in_its_card(tmp_path):
    write_image_folders(tmp_path / "data", per_class=3)
    data = str(tmp_path / "data")
    runner = CliRunner()
    teacher = runner.invoke(fer, ["model", "train", "--data", data, "--out", str(tmp_path / "teacher"), "--epochs", "1"])
    assert teacher.exit_code == 0, teacher.output
    student = runner.invoke(fer, ["model", "train", "--recipe", "seed-flip", "--data", data, "--out",
                                  str(tmp_path / "student"), "--epochs", "2", "--teacher", str(tmp_path / "teacher"),
                                  "--distill-temperature", "3"])
    assert student.exit_code == 0, student.output
    assert "val_acc" in student.output
    card = json.loads((tmp_path / "student" / "card.json").read_text())
    assert card["training"]["teacher"] == "teacher" and card["training"]["distill_temperature"] == 3.0
    assert f"--teacher {tmp_path / 'teacher'}" in card["command"]
    from fer_model.model_card import read_card

    assert read_card(tmp_path / "student").kind == "student"
    run = json.loads((tmp_path / "student" / "run.json").read_text())
    assert run["teacher"] == "teacher" and run["distill_weight"] == 0.7

    (tmp_path / "teacher" / "soft_labels.npz").unlink()
    orphan = runner.invoke(fer, ["model", "train", "--data", data, "--out", str(tmp_path / "orphan"), "--epochs", "1",
                                 "--teacher", str(tmp_path / "teacher")])
    assert orphan.exit_code == 1 and "has no soft_labels.npz" in orphan.output and "Traceback" not in orphan.output
