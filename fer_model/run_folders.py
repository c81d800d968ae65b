"""Where training runs live, and their compact resumable state.

A run folder (checkpoints, history, best epoch, final model) is written outside the source tree,
under the user's data directory, so a run survives a fresh checkout: by default
``$FER_RUNS_DIR`` or ``~/.local/share/fer-pipeline/runs/<recipe>-<seed>``.

A run that must outlive the machine itself can be packed into one compressed file in the source
tree (``fer_model/run_states/<run>.tar.xz``), which version control keeps: `fer model pack-run`
replaces it at each stop, `fer model train --resume` unpacks it when the run folder is missing,
and a finished run removes it.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

from fer_model.files import atomic_path, data_home

RUNS_ENV = "FER_RUNS_DIR"
STATES_DIR = Path(__file__).parent / "run_states"
STATE_SUFFIX = ".tar.xz"
# What a resumed run needs: its settings, history, best epoch so far and the last epoch's backup.
BEST_MEMBER = "best.keras"
STATE_MEMBERS = ("run.json", "history.csv", BEST_MEMBER, "backup")


class RunStateError(Exception):
    """A run folder or packed state that cannot be packed or unpacked; the message says why."""


def runs_home() -> Path:
    return Path(os.environ.get(RUNS_ENV) or data_home() / "runs").expanduser()


def default_run_folder(recipe: str, seed: int) -> Path:
    return runs_home() / f"{recipe}-{seed}"


def state_file(run_folder: Path) -> Path:
    """The packed state of the run in ``run_folder`` (whether or not it exists)."""
    return STATES_DIR / f"{run_folder.name}{STATE_SUFFIX}"


def pack_run(run_folder: Path) -> Path:
    """Write the run's resumable state into one compressed file (replacing an older one); returns its path."""
    if not (run_folder / "run.json").is_file():
        raise RunStateError(f"{run_folder} holds no training run (no run.json)")
    destination = state_file(run_folder)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(destination) as temporary, tempfile.TemporaryDirectory() as scratch:
        with tarfile.open(temporary, "w:xz") as archive:
            for name in STATE_MEMBERS:
                path = run_folder / name
                if path.exists():
                    archive.add(_without_optimizer(path, Path(scratch)) if name == BEST_MEMBER else path, arcname=name)
    return destination


def _without_optimizer(model_file: Path, scratch: Path) -> Path:
    """A copy of the checkpointed model without its optimizer state, which the run never reads back (the
    backup holds the optimizer to resume from): a third of the file for Adam."""
    from fer_model.registry import ModelRef, load_model  # Keras loads only for packing

    copy = scratch / model_file.name
    load_model(ModelRef(path=model_file, card=None)).save(copy)
    return copy


def unpack_run(run_folder: Path) -> bool:
    """Recreate a missing run folder from its packed state; False when there is none to unpack."""
    source = state_file(run_folder)
    if (run_folder / "run.json").exists() or not source.is_file():
        return False
    run_folder.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(source, "r:xz") as archive:
            archive.extractall(run_folder, filter="data")
    except (tarfile.TarError, EOFError) as error:
        raise RunStateError(f"{source}: not a packed training run ({error})") from error
    return True


def remove_state(run_folder: Path) -> None:
    """Forget the packed state of a finished run."""
    state_file(run_folder).unlink(missing_ok=True)
