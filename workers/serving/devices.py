"""The device the classifier runs on, and the batch size for it.

Only `configure_devices` imports the backend (TensorFlow, or JAX under KERAS_BACKEND=jax);
the rest is plain data, so device choices are testable on any machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

# Faces per model call. For Keras on a CPU, 256 48x48 faces already keep the cores busy; a GPU needs
# larger batches to amortise the launch and transfer cost of each call. ONNX Runtime, measured on one
# thread: about 0.5 ms of CPU a face for the seed net in batches of 16-256, fastest at 64.
CPU_BATCH_SIZE = 256
GPU_BATCH_SIZE = 2048
ONNX_BATCH_SIZE = 64


@dataclass(frozen=True)
class Device:
    kind: str  # "GPU" or "CPU"
    name: str


def batch_size_for(backend: str, devices: Sequence[Device]) -> int:
    """Faces per model call on ``backend`` ("keras" or "onnx") and ``devices``: ``FER_BATCH_SIZE`` when set, else
    ONNX_BATCH_SIZE on ONNX Runtime, GPU_BATCH_SIZE for Keras on a GPU, CPU_BATCH_SIZE for Keras on a CPU."""
    override = os.environ.get("FER_BATCH_SIZE")
    if override:
        return max(1, int(override))
    if backend == "onnx":
        return ONNX_BATCH_SIZE
    return GPU_BATCH_SIZE if any(device.kind == "GPU" for device in devices) else CPU_BATCH_SIZE


def describe(devices: Sequence[Device]) -> str:
    return ", ".join(f"{device.kind} {device.name}" if device.kind == "GPU" else "CPU" for device in devices) or "CPU"


def configure_devices() -> list[Device]:
    """Turn on memory growth on every visible GPU and return the devices the model will run on.

    Memory growth lets several worker processes share one card: each takes what its model
    needs instead of nearly all of the card's memory. Call it before the model loads.
    """
    if os.environ.get("KERAS_BACKEND") == "jax":
        import jax  # the backend loads only here, so that device choices are testable anywhere

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return [Device("GPU", d.device_kind) for d in gpus] or [Device("CPU", "CPU")]
    import tensorflow as tf  # the backend loads only here (see jax above)

    gpus = tf.config.list_physical_devices("GPU")
    devices = []
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # this process initialised the GPU already; the setting applies from the first call only
        details = tf.config.experimental.get_device_details(gpu)
        devices.append(Device("GPU", details.get("device_name", gpu.name)))
    return devices or [Device("CPU", "CPU")]


def visible_gpus() -> list[Device]:
    """The machine's NVIDIA GPUs as `nvidia-smi` lists them, without importing TensorFlow (empty when none)."""
    command = shutil.which("nvidia-smi")
    if not command:
        return []
    try:
        output = subprocess.run([command, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [Device("GPU", line.strip()) for line in output.splitlines() if line.strip()]
