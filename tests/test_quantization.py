"""Int8 graphs: made by `fer model quantize`, served under their own name, refused when stale."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import fer
from fer_model.model_card import read_card
from fer_model.registry import INT8_SUFFIX, ModelNotFound, available_models, resolve_model
from fer_model.served_graph import INT8, SOURCE_SHA256, int8_path_for
from tests.conftest import write_image_folders


def _faces(count: int = 96) -> np.ndarray:
    rng = np.random.default_rng(7)
    smooth = rng.integers(0, 256, size=(count, 12, 12), dtype=np.uint8).repeat(4, axis=1).repeat(4, axis=2)
    return np.clip(smooth + rng.integers(0, 30, size=smooth.shape), 0, 255).astype(np.uint8)[..., None]


@pytest.fixture(scope="module")
def quantized_run(tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the committed `seed` model in a run folder, quantized on tiny generated data by the CLI."""
    root = tmp_path_factory.mktemp("quantized")
    run = root / "run"
    run.mkdir()
    for name in ("model.keras", "model.onnx", "card.json"):
        shutil.copy(resolve_model("seed").folder / name, run / name)
    write_image_folders(root / "data", per_class=4, layout="prefixed")
    result = CliRunner().invoke(fer, ["model", "quantize", "--model", str(run), "--data", str(root / "data")])
    assert result.exit_code == 0, result.output
    assert f"serveitas{run}{INT8_SUFFIX}" in "".join(result.output.split())
    return run, root / "data"


def test_quantize_writes_an_int8_graph_and_its_card_entry(quantized_run):
    run, _ = quantized_run
    graph = int8_path_for(run / "model.keras")
    assert graph == run / "model.int8.onnx" and graph.is_file()
    assert graph.stat().st_size < (run / "model.onnx").stat().st_size / 2  # int8 weights: a quarter of float32's
    entry = read_card(run).int8
    assert entry["graph_file"] == "model.int8.onnx" and entry["calibration_faces"] == 28  # all the training faces
    assert entry["metrics"]["n"] == 28  # the generated PublicTest faces
    assert 0 <= entry["metrics"]["agreement"] <= 1 and 0 <= entry["metrics"]["accuracy"] <= 1
    assert entry["command"].startswith(f"fer model quantize --model {run} --data ")
    assert "## Int8 graph" in (run / "card.md").read_text()


def test_the_int8_model_serves_nearly_the_float_models_labels_under_its_own_identity(quantized_run):
    from workers.serving.classifier import model_identity
    from workers.serving.onnx_classifier import OnnxEmotionModel

    run, _ = quantized_run
    ref = resolve_model(f"{run}{INT8_SUFFIX}")
    assert ref.precision == INT8 and ref.name == "seed-int8" and ref.path == (run / "model.keras").resolve()
    faces = _faces()
    float_probabilities = OnnxEmotionModel(ref.path, threads=1).predict_faces(faces)
    int8_probabilities = OnnxEmotionModel(ref.path, threads=1, precision=INT8).predict_faces(faces)
    assert not np.array_equal(float_probabilities, int8_probabilities)  # it is another computation...
    assert (float_probabilities.argmax(1) == int8_probabilities.argmax(1)).mean() >= 0.9  # ...with nearly the labels
    assert np.abs(float_probabilities - int8_probabilities).max() < 0.1
    assert len(np.unique(int8_probabilities)) > len(int8_probabilities)  # probabilities in full resolution, not 1/255 steps
    int8_identity, float_identity = model_identity(f"{run}{INT8_SUFFIX}"), model_identity(str(run))
    assert int8_identity.name == "seed-int8" and float_identity.name == "seed"
    assert int8_identity.version != float_identity.version
    assert int8_identity.file_sha256 == read_card(run).int8["graph_sha256"]


def test_a_stale_int8_graph_is_refused_in_one_line(quantized_run, tmp_path, photos_dir):
    from workers.serving.onnx_classifier import OnnxEmotionModel

    run, _ = quantized_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.copy(resolve_model("seed-flip").path, copy / "model.keras")  # another model file, the same int8 graph
    with pytest.raises(ModelNotFound, match=r"model\.int8\.onnx was made from another version of model\.keras"):
        OnnxEmotionModel(copy / "model.keras", precision=INT8)
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(sorted(photos_dir.glob("*.jpg"))[0], folder / "a.jpg")
    result = CliRunner().invoke(fer, ["annotate", str(folder), "--model", f"{copy}{INT8_SUFFIX}", "--processes", "1",
                                      "--db", f"sqlite:///{tmp_path / 'fer.db'}"])
    assert result.exit_code == 1
    assert "model.int8.onnx was made from another version of model.keras: make it again with fer model quantize" in (
        " ".join(result.output.split()))
    assert "Traceback" not in result.output and "job 1" not in result.output  # refused before a job is recorded


def test_saving_the_model_again_removes_its_int8_graph(quantized_run, tmp_path):
    from fer_model.onnx_export import save_served_model
    from fer_model.registry import load_model

    run, _ = quantized_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    save_served_model(load_model(resolve_model(copy)), copy / "model.keras")
    assert not int8_path_for(copy / "model.keras").exists()
    with pytest.raises(ModelNotFound, match="has no int8 graph .* make one with fer model quantize"):
        resolve_model(f"{copy}{INT8_SUFFIX}")


def test_a_model_without_an_int8_graph_says_how_to_make_one():
    with pytest.raises(ModelNotFound, match=r"seed has no int8 graph \(.*model\.int8\.onnx is missing\): make one "
                                            r"with fer model quantize --model seed --data FER2013_DIR --overwrite-committed"):
        resolve_model(f"seed{INT8_SUFFIX}")


def test_quantizing_a_committed_model_needs_the_overwrite_flag(tmp_path):
    write_image_folders(tmp_path / "data", per_class=3, layout="prefixed")
    result = CliRunner().invoke(fer, ["model", "quantize", "--model", "seed", "--data", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert "refused: seed is a model committed with the package" in " ".join(result.output.split())
    assert not int8_path_for(resolve_model("seed").path).exists()


def test_an_int8_model_refuses_the_keras_backend_before_a_job_starts(monkeypatch):
    from workers.jobs.errors import PipelineError
    from workers.jobs.starting import check_model

    int8_names = [ref.name for ref in available_models() if ref.precision == INT8]
    assert int8_names, "no committed model has an int8 graph"
    monkeypatch.setenv("FER_CLASSIFIER_BACKEND", "keras")
    with pytest.raises(PipelineError, match=f"model {int8_names[0]} is served by ONNX Runtime only"):
        check_model(int8_names[0])
    monkeypatch.setenv("FER_CLASSIFIER_BACKEND", "onnx")
    check_model(int8_names[0])


def test_committed_int8_graphs_were_made_from_their_model_files_and_are_listed():
    from fer_model.files import file_sha256
    from fer_model.served_graph import cpu_session

    int8_refs = [ref for ref in available_models() if ref.precision == INT8]
    assert int8_refs
    listed = {row["name"]: row for row in json.loads(CliRunner().invoke(fer, ["model", "list", "--format", "json"]).output)}
    for ref in int8_refs:
        metadata = cpu_session(str(ref.int8_graph)).get_modelmeta().custom_metadata_map
        assert metadata[SOURCE_SHA256] == file_sha256(ref.path)
        assert ref.card.int8["graph_sha256"] == file_sha256(ref.int8_graph)
        assert listed[ref.name]["precision"] == INT8 and listed[ref.name]["kind"] == ref.card.kind
        assert listed[ref.name]["val_accuracy"] == ref.card.int8["metrics"]["accuracy"]


@pytest.mark.slow  # two passes over PublicTest
def test_the_committed_int8_figures_are_what_the_graphs_give_on_publictest(fer2013_dir):
    from fer_model.data import load_fer2013
    from fer_model.quantization import int8_figures

    val = load_fer2013(fer2013_dir)["val"]
    for ref in (ref for ref in available_models() if ref.precision == INT8):
        recorded = ref.card.int8["metrics"]
        figures = int8_figures(ref, val.images, val.labels)
        assert figures["n"] == recorded["n"] == len(val)
        assert figures["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-9)
        assert figures["agreement"] == pytest.approx(recorded["agreement"], abs=1e-9)
        assert figures["accuracy"] >= ref.card.metrics["val"]["accuracy"] - 0.01  # int8 costs at most a point


def test_commands_that_read_the_keras_model_refuse_an_int8_name(tmp_path):
    int8_name = next(ref.name for ref in available_models() if ref.precision == INT8)
    base = int8_name[: -len(INT8_SUFFIX)]
    result = CliRunner().invoke(fer, ["model", "soft-labels", "--model", int8_name, "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{int8_name} is the int8 graph of {base}, for serving only: give {base}" in " ".join(result.output.split())


def test_a_model_file_without_its_float_graph_is_quantized_without_rewriting_it(tmp_path):
    from fer_model.files import file_sha256

    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.keras", "card.json"):
        shutil.copy(resolve_model("seed").folder / name, run / name)
    before = file_sha256(run / "model.keras")
    write_image_folders(tmp_path / "data", per_class=3, layout="prefixed")
    result = CliRunner().invoke(fer, ["model", "quantize", "--model", str(run), "--data", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert file_sha256(run / "model.keras") == before and not (run / "model.onnx").exists()
    assert resolve_model(f"{run}{INT8_SUFFIX}").precision == INT8


def test_an_int8_model_has_no_int8_model():
    int8_name = next(ref.name for ref in available_models() if ref.precision == INT8)
    with pytest.raises(ModelNotFound, match=f"{int8_name} is already an int8 model"):
        resolve_model(f"{int8_name}{INT8_SUFFIX}")
