"""Ctrl-C and SIGTERM on a real `fer annotate`: the signal goes to the whole process group, as a terminal
sends it; the run ends in one line with exit 130, the job is `interrupted` (never left `running`), no
detection process prints a traceback or outlives the run, and `fer retry JOB --local` finishes the job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import fer
from db.models import Image, Job
from db.session import make_engine
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

PHOTOS = 300


@pytest.fixture(scope="module")
def archive(tmp_path_factory, photos_dir) -> Path:
    root = tmp_path_factory.mktemp("interrupt") / "photos"
    root.mkdir()
    for photo in sorted(photos_dir.glob("*.jpg"))[:PHOTOS]:
        shutil.copy(photo, root / photo.name)
    return root


def _state(url: str) -> tuple[str | None, int]:
    """The job's status and its images done so far (None before the job exists)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            status = connection.scalar(select(Job.status).where(Job.id == 1))
            done = connection.scalar(select(func.count(Image.id)).where(Image.job_id == 1, Image.status == "done"))
    except Exception:  # noqa: BLE001 - the schema may not exist yet
        return None, 0
    finally:
        engine.dispose()
    return status, done or 0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(("signal_sent", "when_done"), [
    (signal.SIGINT, 0),     # while the processes start and the model loads
    (signal.SIGINT, 24),    # mid-run, detection processes busy
    (signal.SIGTERM, 24),
])
def test_a_signal_to_the_process_group_ends_the_run_in_one_line(archive, tmp_path, signal_sent, when_done):
    url = f"sqlite:///{tmp_path / 'fer.db'}"
    run = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "annotate", str(archive), "--db", url, "--processes", "2",
         "--chunk-size", "8"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            status, done = _state(url)
            if status == "running" and done >= when_done:
                break
            time.sleep(0.05)
        assert run.poll() is None, "the run ended before it could be interrupted"
        os.killpg(run.pid, signal_sent)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 130, (stdout, stderr)
    assert stderr.splitlines() == ["Error: interrupted; job 1 keeps what was finished; finish it with "
                                   "`fer retry 1 --local`"], stderr
    assert "Traceback" not in stdout and "KeyboardInterrupt" not in stdout
    status, done = _state(url)
    assert status == "interrupted" and done < PHOTOS
    time.sleep(0.5)
    assert not _group_alive(run.pid), "a detection process outlived the run"
    finished = CliRunner().invoke(fer, ["retry", "1", "--local", "--processes", "2", "--db", url])
    assert finished.exit_code == 0, finished.output
    assert _state(url) == ("finished", PHOTOS)
