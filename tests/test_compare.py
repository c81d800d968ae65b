"""`fer report --compare A B`: two committed models over the same small archive, checked against the raw rows."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from cli.main import fer
from fer_model.classes import CLASSES

pytestmark = pytest.mark.slow


@pytest.fixture
def compared(tmp_path, photos_dir, database_url):
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted(photos_dir.glob("*.jpg"))[:16]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    runner = CliRunner()
    for model in ("seed", "seed-flip"):
        result = runner.invoke(fer, ["annotate", str(folder), "--model", model, "--processes", "1", "--db", database_url])
        assert result.exit_code == 0, result.output
    return database_url


def _expected(database_url: str) -> dict:
    """The comparison worked out from the face_annotations view, face by face."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT model, path, x, y, w, h, label, " + ", ".join(f"p_{c}" for c in CLASSES) + " FROM face_annotations"
        )).all()
    engine.dispose()
    faces = {model: {(r.path, r.x, r.y, r.w, r.h): r for r in rows if r.model == model} for model in ("seed", "seed-flip")}
    common = faces["seed"].keys() & faces["seed-flip"].keys()
    confusion = Counter((faces["seed"][k].label, faces["seed-flip"][k].label) for k in common)
    moved = sorted(
        (0.5 * sum(abs(getattr(faces["seed"][k], f"p_{c}") - getattr(faces["seed-flip"][k], f"p_{c}")) for c in CLASSES), k[0])
        for k in common if faces["seed"][k].label != faces["seed-flip"][k].label
    )[::-1]
    return {"matched": len(common), "agree": sum(n for (a, b), n in confusion.items() if a == b),
            "confusion": confusion, "moved": moved, "faces_a": len(faces["seed"]), "faces_b": len(faces["seed-flip"])}


def test_compare_counts_agreement_confusion_and_the_faces_that_changed_most(compared):
    expected = _expected(compared)
    assert expected["matched"] >= 15
    result = CliRunner().invoke(fer, ["report", "--compare", "seed", "seed-flip", "--format", "json", "--top", "3",
                                      "--db", compared])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["images"] == 16
    assert (got["faces_a"], got["faces_b"]) == (expected["faces_a"], expected["faces_b"])
    assert got["faces_matched"] == expected["matched"] and got["faces_agree"] == expected["agree"]
    assert got["agreement"] == round(expected["agree"] / expected["matched"], 4)
    assert {(a, b): n for a, row in got["confusion"].items() for b, n in row.items() if n} == dict(expected["confusion"])
    assert [face["path"] for face in got["changed_most"]] == [path for _, path in expected["moved"][:3]]
    for face, (moved, _) in zip(got["changed_most"], expected["moved"]):
        assert face["moved"] == pytest.approx(moved, abs=1e-4) and face["label_a"] != face["label_b"]

    table = CliRunner().invoke(fer, ["report", "--compare", "seed", "seed-flip", "--db", compared])
    assert table.exit_code == 0
    assert f"Same label: {expected['agree']} of {expected['matched']} faces" in table.output

    as_csv = CliRunner().invoke(fer, ["report", "--compare", "seed", "seed-flip", "--format", "csv", "--db", compared])
    rows = list(csv.reader(io.StringIO(as_csv.output)))
    assert rows[0] == ["seed \\ seed-flip", *CLASSES]
    assert sum(int(n) for row in rows[1:] for n in row[1:]) == expected["matched"]


def test_compare_writes_a_self_contained_html_page(compared, tmp_path):
    out = tmp_path / "compare.html"
    result = CliRunner().invoke(fer, ["report", "--compare", "seed", "seed-flip", "--format", "html", "-o", str(out),
                                      "--db", compared])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    expected = _expected(compared)
    assert "<title>seed vs seed-flip: model comparison</title>" in page
    assert f'<div class="number">{expected["agree"]}</div><div class="what">same label</div>' in page
    assert page.count('src="data:image/jpeg;base64,') == min(10, len(expected["moved"]))
    assert "http://" not in page and "https://" not in page


def test_compare_refuses_unknown_models_and_other_options_in_one_line(compared):
    runner = CliRunner()
    unknown = runner.invoke(fer, ["report", "--compare", "seed", "nope", "--db", compared])
    assert unknown.exit_code == 1
    assert "no results of model 'nope' in this database (it has: seed, seed-flip)" in unknown.output
    same = runner.invoke(fer, ["report", "--compare", "seed", "seed", "--db", compared])
    assert same.exit_code == 1 and "the same model version" in same.output
    mixed = runner.invoke(fer, ["report", "1", "--compare", "seed", "seed-flip", "--db", compared])
    assert mixed.exit_code == 1 and "leave out JOB" in mixed.output
    assert "Traceback" not in unknown.output + same.output + mixed.output
