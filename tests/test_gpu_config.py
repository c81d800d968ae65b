"""The GPU worker's configuration, checked without a GPU: batch sizes by device, the compose service."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


from workers.serving.devices import CPU_BATCH_SIZE, GPU_BATCH_SIZE, Device, batch_size_for, describe

ROOT = Path(__file__).resolve().parents[1]


def test_batch_size_follows_the_device(monkeypatch):
    monkeypatch.delenv("FER_BATCH_SIZE", raising=False)
    assert batch_size_for("keras", [Device("CPU", "CPU")]) == CPU_BATCH_SIZE
    assert batch_size_for("keras", [Device("GPU", "NVIDIA H100 80GB HBM3")]) == GPU_BATCH_SIZE
    assert batch_size_for("keras", []) == CPU_BATCH_SIZE
    monkeypatch.setenv("FER_BATCH_SIZE", "64")
    assert batch_size_for("keras", [Device("GPU", "any")]) == 64


def test_device_description():
    assert describe([Device("CPU", "CPU")]) == "CPU"
    assert describe([Device("GPU", "NVIDIA A10")]) == "GPU NVIDIA A10"


def test_the_classifier_reports_its_device_and_batch_size():
    from workers.serving.classifier import get_classifier

    classifier = get_classifier("seed", "keras")  # a float model: an int8 one serves on ONNX Runtime only
    assert classifier.devices and classifier.batch_size == batch_size_for("keras", classifier.devices)


def _compose_service(text: str, name: str) -> str:
    """The service's block of docker-compose.yml (the file is checked as text: no YAML library is a dependency)."""
    match = re.search(rf"^  {re.escape(name)}:\n((?:    .*\n|\n)+)", text, re.MULTILINE)
    assert match, f"no service {name}"
    return match.group(1)


def test_compose_has_a_gpu_worker_under_the_gpu_profile():
    text = (ROOT / "docker-compose.yml").read_text()
    service = _compose_service(text, "worker-gpu")
    assert 'profiles: ["gpu"]' in service
    assert "driver: nvidia" in service and "capabilities: [gpu]" in service
    assert "BASE_IMAGE: tensorflow/tensorflow:2.21.0-gpu" in service and "TENSORFLOW: image" in service
    assert "profiles" not in _compose_service(text, "worker")  # the CPU worker starts by default


def test_compose_file_is_valid_yaml():
    import yaml

    config = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    gpu = config["services"]["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"


def test_gpu_image_dependencies_leave_out_tensorflow_cpu():
    listed = subprocess.run([sys.executable, str(ROOT / "docker" / "install-deps.py"), str(ROOT / "pyproject.toml")],
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed and not any(line.startswith("tensorflow") for line in listed)
    assert any(line.startswith("keras") for line in listed)
