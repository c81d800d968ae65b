"""The benchmark scripts run end to end on a tiny workload (figures are printed, not asserted on timing)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_classifier_bench_prints_faces_per_second_for_the_default_model():
    result = subprocess.run(
        [sys.executable, "bench/classifier.py", "--faces", "256", "--repeats", "1", "--recipe", "default"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert re.search(r"recipe default \(untrained architecture\): [\d,]+ faces/s", result.stdout)
    assert re.match(r"model \w+ \([0-9a-f]{12}\): [\d,]+ faces/s", lines[-1])
