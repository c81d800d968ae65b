"""`fer report --format html` for a real job, rendered in headless Chromium.

The page is loaded by a real browser (`chromium --headless --dump-dom`), and the assertions
are on the DOM the browser built; a full-page screenshot is kept where FER_TEST_ARTIFACTS points.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import fer
from db.session import make_engine
from fer_model.files import write_atomically
from fer_model.registry import resolve_model
from reports.paths import display_path, file_uri
from reports.photo_dates import photo_date
from reports.thumbnails import Box, face_thumbnail
from tests.archives import EMPTY_FILE, EXIF_DATE, FAILED_IN_ARCHIVE, IMAGES_IN_ARCHIVE, MARKUP_FILE, MARKUP_FOLDER, NOT_AN_IMAGE
from workers.vision.images import read_image

# Real photos, real servers or whole benchmark runs: the full suite (`make test`), not the fast lane.
pytestmark = pytest.mark.slow

# Screenshots for a person to look at go where FER_TEST_ARTIFACTS says (CI can keep them), else into the test's tmp folder.
ARTIFACTS_DIR = os.environ.get("FER_TEST_ARTIFACTS")
SECTIONS = ("summary", "emotions", "folders", "time", "confidence", "faces", "failures")
WINDOW = (1280, 6000)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("Chromium is not installed (`make test` installs Debian's chromium package)")


def run_chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--hide-scrollbars", f"--user-data-dir={profile}", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


class Page(HTMLParser):
    """The elements of a DOM dump: each start tag with its attributes and the text inside it."""

    VOID = {"img", "meta", "link", "br", "hr", "input", "source"}

    def __init__(self, markup: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[dict] = []
        self._open: list[dict] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": "", "parents": [e["tag"] + "." + e["attrs"].get("class", "") for e in self._open]}
        element["classes"] = set((element["attrs"].get("class") or "").split())
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for element in self._open:
            element["text"] += data

    def find(self, tag: str | None = None, *, id: str | None = None, cls: str | None = None) -> list[dict]:
        return [e for e in self.elements if (tag is None or e["tag"] == tag)
                and (id is None or e["attrs"].get("id") == id) and (cls is None or cls in e["classes"])]

    def one(self, **kwargs) -> dict:
        [found] = self.find(**kwargs)
        return found

    @property
    def text(self) -> str:
        return self.one(tag="body")["text"]


def decoded(data_uri: str, kind: str) -> Image.Image:
    prefix = f"data:image/{kind};base64,"
    assert data_uri.startswith(prefix)
    picture = Image.open(io.BytesIO(base64.b64decode(data_uri[len(prefix):])))
    picture.load()
    return picture


def number(page: Page, card_id: str) -> int:
    """The big number on a headline card."""
    card = page.elements.index(page.one(id=card_id))
    figure = next(e for e in page.elements[card:] if "number" in e["classes"])
    return int(figure["text"].replace(",", ""))


@pytest.fixture(scope="module")
def report(annotated_sqlite, tmp_path_factory) -> dict:
    """The HTML report of the annotated sample archive, rendered by Chromium: DOM, screenshot, summary."""
    folder = tmp_path_factory.mktemp("html-report")
    output = folder / "report.html"
    result = CliRunner().invoke(fer, ["report", "--format", "html", "-o", str(output), "--db", annotated_sqlite])
    assert result.exit_code == 0, result.output
    assert f"Wrote {output}" in result.output.replace("\n", "")
    summary = CliRunner().invoke(fer, ["report", "--format", "json", "--db", annotated_sqlite])
    dom = run_chromium(folder / "profile", "--dump-dom", output.as_uri()).stdout
    artifacts = Path(ARTIFACTS_DIR) if ARTIFACTS_DIR else folder / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "html-report.png"
    screenshot.unlink(missing_ok=True)
    run_chromium(folder / "profile", f"--screenshot={screenshot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", output.as_uri())
    shutil.copy(output, artifacts / "html-report.html")
    return {"html": output.read_text(), "page": Page(dom), "screenshot": screenshot, "output": output,
            "summary": json.loads(summary.output)}


def test_every_section_is_rendered(report):
    page = report["page"]
    assert [section["attrs"]["id"] for section in page.find("section")] == list(SECTIONS)
    headings = [h2["text"] for h2 in page.find("h2")]
    for heading in ("Summary", "Emotions", "Emotions by folder", "Emotions over time", "Confidence", "Faces by emotion", "Failed images"):
        assert any(text.startswith(heading) for text in headings), heading
    assert page.one(tag="title")["text"].startswith(f"Job {report['summary']['job']}")


def test_headline_numbers_match_the_job(report):
    page, summary = report["page"], report["summary"]
    assert number(page, "headline-images") == IMAGES_IN_ARCHIVE == summary["images"]["total"]
    assert number(page, "headline-faces") == summary["faces"] > 0
    assert number(page, "headline-with-faces") == summary["images_with_faces"]
    assert number(page, "headline-failed") == FAILED_IN_ARCHIVE
    [model] = page.find(cls="headline-model")
    served = resolve_model("default")
    assert served.name in model["text"] and summary["model"]["version"] in model["text"]
    from workers.serving.classifier import model_identity

    accuracy = "%.1f" % (model_identity("default").metrics["val"]["accuracy"] * 100)  # the served graph's own figure
    assert f"{accuracy}% accuracy on FER2013 PublicTest" in " ".join(model["text"].split())
    changes = summary["changes"]
    assert summary["incremental"] and " ".join(page.one(id="changes")["text"].split()).startswith(
        f"incremental run: {changes['new']} new, {changes['changed']} changed, {changes['copied']} copies"
    )


def test_four_charts_are_embedded_pngs(report):
    charts = [img for img in report["page"].find("img") if "figure.chart" in img["parents"]]
    assert len(charts) == 4
    for chart in charts:
        picture = decoded(chart["attrs"]["src"], "png")
        assert picture.width > 400 and picture.height > 150
        assert chart["attrs"]["alt"]


def test_emotion_strips_hold_the_most_and_least_confident_faces_as_linked_thumbnails(report):
    page, summary = report["page"], report["summary"]
    for label, faces in summary["emotions"].items():
        block = page.one(id=f"faces-{label}")
        assert f"({faces} faces)" in " ".join(block["text"].split())
    thumbnails = [img for img in page.find("img") if any(p.startswith("figure.face") for p in img["parents"])]
    expected = sum(min(count, 8) + min(max(count - 8, 0), 8) for count in summary["emotions"].values())
    assert len(thumbnails) == expected > 0
    for thumbnail in thumbnails:
        picture = decoded(thumbnail["attrs"]["src"], "jpeg")
        assert 16 <= max(picture.size) <= 112
    links = [a for a in page.find("a") if any(p.startswith("figure.face") for p in a["parents"])]
    assert len(links) == len(thumbnails)
    for link in links:
        target = urlparse(link["attrs"]["href"])
        assert target.scheme == "file" and Path(unquote(target.path)).is_file()
    most = page.find(cls="most-confident")
    assert most and all(block["text"].count("%") >= 1 for block in most)


def test_folders_and_dates(report):
    page = report["page"]
    folders = [row["text"] for row in page.find("tr") if "table.folders" in row["parents"]]
    assert any(MARKUP_FOLDER in text for text in folders) and any("/family" in text for text in folders)
    periods = [row["text"] for row in page.find("tr") if "table.periods" in row["parents"]]
    months = {text.strip()[:7] for text in periods[1:]}
    assert {EXIF_DATE.strftime("%Y-%m"), "2021-03", "2022-08"} <= months
    note = " ".join(page.one(cls="dates")["text"].split())
    assert "1 from EXIF" in note


def test_failed_images_are_listed_with_their_errors(report):
    rows = [row["text"] for row in report["page"].find("tr") if "table.failures" in row["parents"]][1:]
    assert len(rows) == FAILED_IN_ARCHIVE
    assert any("empty.jpg" in row and EMPTY_FILE in row for row in rows)
    assert any("notes.jpg" in row and NOT_AN_IMAGE in row for row in rows)


def test_user_text_is_escaped(report):
    """A folder named `<script>evil() & co` and a file named `a&b <img src=x onerror=...>.jpg` stay text."""
    page, html = report["page"], report["html"]
    assert page.find("script") == []
    assert not any("onerror" in img["attrs"] for img in page.find("img"))
    assert "<script>" not in html and MARKUP_FILE not in html
    assert "&lt;script&gt;evil() &amp; co" in html and "a&amp;b &lt;img src=x onerror=alert(1)&gt;.jpg" in html
    # ...and the browser shows them as they are (every face of the small archive is in a strip).
    assert MARKUP_FOLDER in page.text and MARKUP_FILE in page.text


def test_the_report_is_self_contained(report):
    page = report["page"]
    for element in page.elements:
        for attribute in ("src", "href"):
            value = element["attrs"].get(attribute)
            if value and not value.startswith("#"):
                assert value.startswith(("data:", "file://")), value
    assert page.find("link") == []


def test_screenshot_is_kept_and_not_blank(report):
    screenshot = report["screenshot"]
    assert screenshot.is_file()
    with Image.open(screenshot) as picture:
        assert picture.size == WINDOW
        colours = picture.convert("L").resize((64, 300)).getextrema()
    assert colours[1] - colours[0] > 100


def test_a_missing_source_photo_becomes_a_placeholder(annotated_sqlite, tmp_path):
    copy = tmp_path / "moved.db"
    with sqlite3.connect(annotated_sqlite.removeprefix("sqlite:///")) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # (the WAL may hold rows not yet in the main file)
    with sqlite3.connect(copy) as connection:
        moved = connection.execute(
            "SELECT images.id FROM images JOIN faces ON faces.image_id = images.id ORDER BY faces.confidence DESC LIMIT 1"
        ).fetchone()[0]
        connection.execute("UPDATE images SET path = '/gone/away.jpg' WHERE id = ?", (moved,))
    output = tmp_path / "report.html"
    result = CliRunner().invoke(fer, ["report", "--format", "html", "-o", str(output), "--db", f"sqlite:///{copy}"])
    assert result.exit_code == 0, result.output
    page = Page(output.read_text())
    placeholders = page.find(cls="missing")
    assert placeholders and all(p["text"] == "source photo not found" for p in placeholders)


def test_unknown_job_is_an_error_and_writes_nothing(annotated_sqlite, tmp_path):
    output = tmp_path / "report.html"
    result = CliRunner().invoke(fer, ["report", "999", "--format", "html", "-o", str(output), "--db", annotated_sqlite])
    assert result.exit_code == 1 and "no job 999" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_an_error_and_an_old_report_survives(annotated_sqlite, tmp_path):
    result = CliRunner().invoke(fer, ["report", "--format", "html", "-o", str(tmp_path / "no" / "r.html"), "--db", annotated_sqlite])
    assert result.exit_code == 1 and "cannot write" in result.output and "Traceback" not in result.output
    old = tmp_path / "old.html"
    old.write_text("previous report")
    result = CliRunner().invoke(fer, ["report", "999", "--format", "html", "-o", str(old), "--db", annotated_sqlite])
    assert result.exit_code == 1 and old.read_text() == "previous report"


def test_without_output_the_html_goes_to_a_redirected_stdout_but_never_to_a_terminal(annotated_sqlite, monkeypatch):
    result = CliRunner().invoke(fer, ["report", "--format", "html", "--db", annotated_sqlite])
    assert result.exit_code == 0 and result.stdout.startswith("<!DOCTYPE html>") and result.stdout.rstrip().endswith("</html>")

    import cli.output

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(cli.output.click, "get_text_stream", lambda name: Terminal())
    result = CliRunner().invoke(fer, ["report", "--format", "html", "--db", annotated_sqlite])
    assert result.exit_code == 1 and "-o FILE" in result.output


# --- the parts, without a database ------------------------------------------------------------------

def test_photo_date_prefers_exif_then_file_time(sample_archive):
    assert read_image(sample_archive / "dated" / "exif.jpg").taken_at == EXIF_DATE
    assert read_image(sample_archive / "blank.png").taken_at is None
    assert photo_date(EXIF_DATE, 0.0) == (EXIF_DATE, "exif")
    assert photo_date(None, 1_600_000_000.0) == (dt.datetime(2020, 9, 13, 12, 26, 40), "file")
    assert photo_date(None, None) == (None, "unknown")


def test_the_report_data_opens_no_photo(annotated_sqlite, monkeypatch):
    """Photo dates come from the database (read when each photo was annotated), not from the files."""
    import PIL.Image

    from reports.data import collect_report

    def no_photo(*args, **kwargs):
        raise AssertionError("the report opened a photo")

    monkeypatch.setattr(PIL.Image, "open", no_photo)
    engine = make_engine(annotated_sqlite)
    data = collect_report(engine, 1)
    engine.dispose()
    assert data.dates.sources["exif"] == 1
    assert sum(data.dates.sources.values()) == data.summary["images_with_faces"]
    assert any(row["period"] == EXIF_DATE.strftime("%Y-%m") for row in data.dates.rows)


def test_thumbnail_crops_the_box_in_upright_coordinates(tmp_path):
    # A white square at (60, 20) of an upright 200x100 photo stored rotated (EXIF orientation 6).
    upright = Image.new("RGB", (200, 100), "black")
    upright.paste((255, 255, 255), (60, 20, 100, 60))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote; orientation 6 rotates it back
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)
    thumbnail = face_thumbnail(str(path), Box(60, 20, 40, 40))
    centre = decoded(thumbnail.data_uri, "jpeg").convert("L")
    assert centre.getpixel((centre.width // 2, centre.height // 2)) > 200
    assert face_thumbnail(str(path), Box(1000, 1000, 10, 10)).problem.startswith("face box outside")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    assert face_thumbnail(str(tmp_path / "broken.jpg"), Box(0, 0, 5, 5)).problem.startswith("source photo unreadable")


def test_paths_are_shown_relative_to_the_roots_and_linked_as_file_uris():
    assert display_path("/archive/photos/2020/a.jpg", ["/archive/photos"]) == "photos/2020/a.jpg"
    assert display_path("/elsewhere/a.jpg", ["/archive/photos"]) == "/elsewhere/a.jpg"
    assert file_uri("/a/<b> & c.jpg") == "file:///a/%3Cb%3E%20%26%20c.jpg"
    assert file_uri("relative.jpg") is None


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "r.html"
    write_atomically(target, "first")
    assert target.read_text() == "first" and oct(target.stat().st_mode & 0o777) == oct(0o644)

    with pytest.raises(TypeError):
        write_atomically(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]
    assert os.access(target, os.R_OK)


def test_atomic_writes_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    """Reports, exports and model files all write through fer_model.files: the new file's data is flushed to disk
    (fsync) before it is renamed over the old one, so a crash never leaves a renamed but empty file."""
    import reports.export

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}"))))
        real_fsync(descriptor)

    def replace(source, destination) -> None:
        events.append(("replace", os.path.basename(source)))
        real_replace(source, destination)

    def rows(engine, job_id, handle, output_format, failed, archive=None) -> int:
        handle.write("path,error\n")
        return 1

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(reports.export, "write_rows", rows)
    write_atomically(tmp_path / "report.html", "<html></html>")
    assert reports.export.write_export(None, 1, tmp_path / "faces.csv", "csv", True) == 1
    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync", "replace"]
    assert events[0][1] == events[1][1] and events[2][1] == events[3][1]  # the file renamed is the one flushed
    assert (tmp_path / "faces.csv").read_text() == "path,error\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.csv", "report.html"]
