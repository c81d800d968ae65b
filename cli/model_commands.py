"""`fer model ...`: train, evaluate and list emotion models."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rich.markup import escape

from cli.output import console, fail, plural
from cli.params import FLOAT_MODEL, MODEL
from fer_model.model_card import comparison_row
from fer_model.registry import (
    FLOAT32, INT8_SUFFIX, MODEL_FILE, MODELS_DIR, ModelNotFound, ModelRef, available_models, load_model, resolve_model,
)
from fer_model.served_graph import INT8
from fer_model.run_folders import RunStateError, default_run_folder, remove_state, runs_home, unpack_run
from fer_model.run_folders import pack_run as pack_run_folder

DATA_HELP = "FER2013 as image folders (<split>/<class>/<image>) or the original fer2013.csv."


@click.group()
def model() -> None:
    """Train, evaluate and list emotion models."""


def _load_data(data: Path, skip_bad: bool):
    # Keras and NumPy load only in the command that needs them (`fer --help` and the other commands stay fast).
    from fer_model.data import DataError, load_fer2013

    if not data.exists():
        fail(f"{data}: no such file or directory")  # nothing to skip: --skip-bad is no help here
    with console.status(f"Reading {escape(str(data))} ..."):
        try:
            dataset = load_fer2013(data, skip_bad=skip_bad)
        except DataError as error:
            fail(f"{error}\n(pass --skip-bad to skip bad items and count them)" if not skip_bad else str(error))
    counts = ", ".join(f"{name} {len(split)}" for name, split in dataset.splits.items())
    console.print(f"Data: {counts}" + (" (cached)" if dataset.from_cache else ""))
    if dataset.skipped:
        console.print(f"[yellow]Skipped {dataset.skipped} bad item(s)[/], for example: {escape(str(dataset.skipped_examples[0]))}")
    return dataset


def _reproduce_command(recipe: str, data: Path, out: Path | None, epochs: int, seed: int, **flags: object) -> str:
    """The `fer model train` command that starts this run from scratch, every choice spelled out
    (``out`` None: the default run folder)."""
    words = ["fer", "model", "train", "--recipe", recipe, "--data", str(data)]
    words += ["--out", str(out)] if out is not None else []
    words += ["--epochs", str(epochs), "--seed", str(seed)]
    for name, value in flags.items():
        option = "--" + name.replace("_", "-")
        if value is True:
            words.append(option)
        elif value not in (None, False):
            words += [option, str(value)]
    return shlex.join(words)


def _model_argument(ref: ModelRef) -> str:
    """How a command names a model: a committed model by its name, any other by its folder."""

    return ref.folder.name if ref.folder.parent == MODELS_DIR.resolve() else str(ref.folder)


class _RichTrainingProgress:
    def __init__(self, progress: Progress):
        self.progress = progress
        self.task = None

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=steps, metrics="")

    def batch_done(self, step: int, logs: dict[str, float]) -> None:
        text = f"loss {logs.get('loss', 0):.3f} acc {logs.get('accuracy', 0):.3f}"
        self.progress.update(self.task, completed=step, metrics=text)

    def epoch_done(self, epoch: int, logs: dict[str, float]) -> None:
        val = f" val_loss {logs['val_loss']:.3f} val_acc {logs['val_accuracy']:.4f}" if "val_accuracy" in logs else ""
        self.progress.console.print(
            f"epoch {epoch}: loss {logs['loss']:.3f} acc {logs['accuracy']:.4f}{val} ({logs['seconds']:.0f}s)"
        )


class RecipeOption(click.Option):
    """--recipe, whose help lists the recipes: read only when the help is shown (the recipes import Keras)."""

    def get_help_record(self, ctx: click.Context):
        # Keras and NumPy load only in the command that needs them (`fer --help` and the other commands stay fast).
        from fer_model.recipes import RECIPES

        self.help = f"Named training recipe: {', '.join(sorted(RECIPES))}."
        return super().get_help_record(ctx)


@model.command()
@click.option("--recipe", cls=RecipeOption, default="seed", show_default=True, help="Named training recipe.")
@click.option("--data", type=click.Path(path_type=Path), required=True, help=DATA_HELP)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Folder for checkpoints, history, model and card  [default: RECIPE-SEED under $FER_RUNS_DIR, else "
    "~/.local/share/fer-pipeline/runs]",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs to train (default: the recipe's; with --resume, the run's).")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its last finished epoch (same settings); a missing run folder is first "
    "unpacked from its state packed by `fer model pack-run`.",
)
@click.option("--class-weights", is_flag=True, help="Weight the loss by inverse class frequency.")
@click.option(
    "--precision",
    type=click.Choice(["float32", "mixed_bfloat16"]),
    default="float32",
    show_default=True,
    help="Compute precision while training; mixed_bfloat16 trained up to 2.3x faster on a CPU with AVX-512 BF16 "
    "and AMX, and 2x slower on one without (emulated): measure with bench/training_speed.py. "
    "The saved model computes in float32.",
)
@click.option(
    "--teacher",
    type=FLOAT_MODEL,
    help="Distil from this model (an ensemble, say): learn its soft labels (soft_labels.npz beside it) as well as "
    "the true labels.",
)
@click.option("--distill-temperature", type=click.FloatRange(min=1), default=4.0, show_default=True,
              help="With --teacher: the temperature that softens teacher and student probabilities.")
@click.option("--distill-weight", type=click.FloatRange(0, 1), default=0.7, show_default=True,
              help="With --teacher: the soft labels' share of the loss (the true labels have the rest).")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable or malformed data and count it, instead of stopping.")
@click.option("--limit", type=click.IntRange(min=1), help="Train on a random subset of this many images (smoke runs).")
@click.option(
    "--compared-with",
    "compared_with",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="A finished comparison run folder; its recipe and PublicTest scores go into this run's card (repeatable).",
)
def train(
    recipe: str,
    data: Path,
    out: Path | None,
    epochs: int | None,
    seed: int,
    resume: bool,
    class_weights: bool,
    precision: str,
    teacher: ModelRef | None,
    distill_temperature: float,
    distill_weight: float,
    skip_bad: bool,
    limit: int | None,
    compared_with: tuple[Path, ...],
) -> None:
    """Train a recipe on FER2013; backs up every epoch and resumes a stopped run with --resume.

    \b
    Examples:
      fer model train --recipe seed-flip --data ../shared/data/fer2013
      fer model train --recipe seed-flip --data ../shared/data/fer2013 --resume
      fer model train --recipe default --data ../shared/data/fer2013 --out /big/disk/default --precision mixed_bfloat16
    """
    # Keras and NumPy load only in the command that needs them (`fer --help` and the other commands stay fast).
    from fer_model.recipes import get_recipe
    from fer_model.training import TrainingError, TrainingRun, started_settings
    from fer_model.training import train as run_training

    try:
        chosen = get_recipe(recipe)
    except KeyError as error:
        fail(str(error.args[0]))
    explicit_out = out
    out = out or default_run_folder(recipe, seed)
    if resume:
        try:
            if unpack_run(out):
                console.print(f"Unpacked the run's packed state into {escape(str(out))}")
        except (RunStateError, OSError) as error:
            fail(str(error))
    if resume and epochs is None:
        epochs = (started_settings(out) or {}).get("epochs")
    try:
        comparisons = [comparison_row(folder) for folder in compared_with]
    except (OSError, ValueError, TypeError) as error:
        fail(f"--compared-with: not a finished training run ({error})")
    dataset = _load_data(data, skip_bad)
    run = TrainingRun(
        recipe=chosen,
        out=out,
        epochs=epochs or chosen.epochs,
        seed=seed,
        resume=resume,
        class_weights=class_weights,
        precision=precision,
        teacher=teacher.folder if teacher else None,
        distill_temperature=distill_temperature,
        distill_weight=distill_weight,
        train_limit=limit,
        command=_reproduce_command(
            recipe, data, explicit_out, epochs or chosen.epochs, seed, class_weights=class_weights, skip_bad=skip_bad, limit=limit,
            precision=None if precision == "float32" else precision,
            **({"teacher": _model_argument(teacher), "distill_temperature": distill_temperature,
                "distill_weight": distill_weight} if teacher else {}),
        ),
        comparisons=comparisons,
        data_description={"source": str(data), "skipped_bad": dataset.skipped, "train_limit": limit},
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metrics]}"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            result = run_training(run, dataset, progress=_RichTrainingProgress(bar))
    except TrainingError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write to {out}: {error.strerror or error}")
    except KeyboardInterrupt:
        fail(f"interrupted; continue with the same command plus --resume (checkpoints in {out})", exit_code=130)
    remove_state(out)
    val = result.card.metrics.get("val")
    if val:
        console.print(
            f"PublicTest: accuracy {val['accuracy']:.4f}, macro F1 {val['macro_f1']:.4f}, weighted F1 {val['weighted_f1']:.4f}"
        )
    console.print(f"Model: {escape(str(result.model_path))}")


@model.command(name="pack-run")
@click.argument("run_folder", type=click.Path(path_type=Path, file_okay=False))
def pack_run(run_folder: Path) -> None:
    """Pack a training run's resumable state into one file in the source tree, to commit.

    The file (fer_model/run_states/<run>.tar.xz) is replaced at each pack. On a machine without the
    run folder, `fer model train ... --resume` unpacks it and continues; a finished run removes it.

    \b
    Example:
      fer model pack-run ~/.local/share/fer-pipeline/runs/seed-flip-1 && git add fer_model/run_states
    """

    try:
        packed = pack_run_folder(run_folder)
    except RunStateError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot pack {run_folder}: {error.strerror or error}")
    console.print(f"Packed {escape(str(run_folder))} into {escape(str(packed))} ({packed.stat().st_size / 1e6:.1f} MB)")


@model.command()
@click.option("--model", "ref", type=MODEL, default="default", show_default=True, help="Model name, run folder or .keras file.")
@click.option("--data", type=click.Path(path_type=Path), required=True, help=DATA_HELP)
@click.option(
    "--split",
    type=click.Choice(["val", "test"]),
    default="val",
    show_default=True,
    help="val = PublicTest, test = PrivateTest (falls back to PublicTest when withheld, and says so).",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the metrics, figures and report.")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable or malformed data and count it, instead of stopping.")
def evaluate(ref: ModelRef, data: Path, split: str, out: Path, skip_bad: bool) -> None:
    """Evaluate a model: metrics, classification report, confusion matrix, example faces."""
    from rich.table import Table

    # Keras and NumPy load only in the command that needs them (`fer --help` and the other commands stay fast).
    from fer_model.data import DataError
    from fer_model.evaluation_report import evaluate_model, flip_summary

    dataset = _load_data(data, skip_bad)
    try:
        with console.status(f"Evaluating {escape(ref.name)} ..."):
            result = evaluate_model(ref, dataset, split, out)
    except (DataError, ModelNotFound) as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write to {out}: {error.strerror or error}")
    if result.note:
        console.print(f"[yellow]Note:[/] {escape(result.note)}")
    metrics = result.metrics
    table = Table(title=f"{ref.name} on {metrics['split_title']} ({plural(metrics['n'], 'face')})")
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, m in metrics["per_class"].items():
        table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    table.add_section()
    table.add_row("accuracy", "", "", f"{metrics['accuracy']:.4f}", str(metrics["n"]))
    table.add_row("macro F1", "", "", f"{metrics['macro_f1']:.4f}", "")
    table.add_row("weighted F1", "", "", f"{metrics['weighted_f1']:.4f}", "")
    table.add_row("balanced accuracy", "", "", f"{metrics['balanced_accuracy']:.4f}", "")
    console.print(table)
    calibration = metrics["calibration"]
    console.print(flip_summary(metrics))
    console.print(
        f"Calibration: temperature {calibration['temperature']:.3f}, expected calibration error "
        f"{calibration['ece_uncalibrated']:.4f} uncalibrated, {calibration['ece']:.4f} as served"
    )
    console.print(f"Wrote {len(result.files)} files to {escape(str(out))}: {', '.join(f.name for f in result.files)}")


@model.command()
@click.option("--model", "ref", type=FLOAT_MODEL, required=True, help="Run folder (with its card), or a committed model's name "
                                                                "with --overwrite-committed.")
@click.option("--data", type=click.Path(path_type=Path), required=True, help=DATA_HELP)
@click.option("--skip-bad", is_flag=True, help="Skip unreadable or malformed data and count it, instead of stopping.")
@click.option("--overwrite-committed", is_flag=True,
              help="Allow rewriting a model committed with the package (fer_model/models/), which every run uses.")
def calibrate(ref: ModelRef, data: Path, skip_bad: bool, overwrite_committed: bool) -> None:
    """Fit the model's temperature on PublicTest and write it into the model file and card."""
    # Keras and NumPy load only in the command that needs them (`fer --help` and the other commands stay fast).
    from fer_model.calibrate_saved import CalibrationError, calibrate_saved_model

    committed = ref.committed
    if committed and not overwrite_committed:
        fail(f"refused: {ref.name} is a model committed with the package ({Path(ref.path).parent}); calibrating "
             "rewrites its file and card. Calibrate a run folder, or pass --overwrite-committed")
    dataset = _load_data(data, skip_bad)
    if not dataset.has("val"):
        fail(f"{data}: no PublicTest (val) split to fit the temperature on")
    had_int8 = ref.int8_graph.is_file()
    try:
        with console.status(f"Calibrating {escape(ref.name)} ..."):
            summary = calibrate_saved_model(ref, dataset["val"])
    except (CalibrationError, ModelNotFound) as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write {ref.path}: {error.strerror or error}")
    console.print(
        f"{ref.name}: temperature {summary['temperature']:.3f}; expected calibration error "
        f"{summary['ece_before']:.4f} -> {summary['ece_after']:.4f} "
        f"({summary['ece_after_cross_fitted']:.4f} cross-fitted) on {summary['n']} PublicTest faces"
    )
    if had_int8:
        console.print(
            f"[yellow]Note:[/] its int8 graph was made from the old file and is removed; make it again with fer model "
            f"quantize --model {escape(_model_argument(ref))} --data {escape(str(data))}"
            + (" --overwrite-committed" if committed else "")
        )


@model.command()
@click.option("--model", "ref", type=MODEL, required=True, help="Run folder (with its card), or a committed model's name "
                                                                "with --overwrite-committed.")
@click.option("--data", type=click.Path(path_type=Path), required=True, help=DATA_HELP)
@click.option("--calibration-faces", type=click.IntRange(16, 28709), default=512, show_default=True,
              help="Training faces whose activations set the int8 ranges.")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable or malformed data and count it, instead of stopping.")
@click.option("--overwrite-committed", is_flag=True,
              help="Allow writing into a model committed with the package (fer_model/models/).")
def quantize(ref: ModelRef, data: Path, calibration_faces: int, skip_bad: bool, overwrite_committed: bool) -> None:
    """Make the model's int8 graph, served as NAME-int8, and check it on PublicTest.

    The graph (model.int8.onnx beside the model) runs about 2.5 times as fast on CPUs with int8
    instructions; its PublicTest figures and its agreement with the float model go into the card.

    \b
    Example:
      fer model quantize --model ~/.local/share/fer-pipeline/runs/seed-deep-1 --data ../shared/data/fer2013
      fer annotate photos/ --model ~/.local/share/fer-pipeline/runs/seed-deep-1-int8
    """
    # NumPy and ONNX Runtime load only in the command that needs them (`fer --help` and the other commands stay fast).
    from fer_model.data import DataError
    from fer_model.quantization import calibration_faces as draw_faces
    from fer_model.quantization import int8_figures, quantize_model, record_int8

    committed = ref.committed
    if committed and not overwrite_committed:
        fail(f"refused: {ref.name} is a model committed with the package ({Path(ref.path).parent}); quantizing writes "
             "into its folder and card. Quantize a run folder, or pass --overwrite-committed")
    ref = ModelRef(path=ref.path, card=ref.card, precision=FLOAT32)
    argument = _model_argument(ref) if ref.path.name == MODEL_FILE else str(ref.path)
    dataset = _load_data(data, skip_bad)
    if not dataset.has("train") or not dataset.has("val"):
        fail(f"{data}: quantizing needs the Training split (for the ranges) and PublicTest (for the check)")
    try:
        faces = draw_faces(dataset["train"].images, calibration_faces)
        with console.status(f"Quantizing {escape(ref.name)} on {len(faces)} Training faces ..."):
            graph = quantize_model(ref, faces)
        with console.status("Checking it on PublicTest ..."):
            figures = int8_figures(ref, dataset["val"].images, dataset["val"].labels)
        words = ["fer", "model", "quantize", "--model", argument, "--data", str(data), "--calibration-faces",
                 str(calibration_faces)]
        record_int8(ref, figures, shlex.join(words + (["--overwrite-committed"] if committed else [])), len(faces))
    except (DataError, ModelNotFound) as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write beside {ref.path}: {error.strerror or error}")
    console.print(
        f"Wrote {escape(str(graph))}: serve it as {escape(argument + INT8_SUFFIX)}. PublicTest: accuracy "
        f"{figures['accuracy']:.4f} (float {figures['float_accuracy']:.4f}), macro F1 {figures['macro_f1']:.4f}, "
        f"ECE {figures['ece']:.4f}; same label as the float model for {figures['agreement']:.2%} of "
        f"{plural(figures['n'], 'face')}"
    )


@model.command(name="list")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_models(output_format: str) -> None:
    """The committed models with the PublicTest metrics from their cards."""
    import json

    from rich import box
    from rich.table import Table


    refs = available_models()
    default = resolve_model("default")
    rows = []
    for ref in refs:
        int8 = ref.precision == INT8
        val = (ref.card.metrics.get("val") if ref.card else None) or {}
        ece = ((ref.card.calibration if ref.card else None) or {}).get("ece_after")
        if int8:
            val = ref.card.int8.get("metrics", {}) if ref.card else {}
            ece = val.get("ece")
        rows.append(
            {
                "name": ref.name,
                "default": (ref.path, ref.precision) == (default.path, default.precision),
                "kind": ref.card.kind if ref.card else "network",
                "precision": ref.precision,
                "recipe": ref.card.recipe if ref.card else "",
                "members": [member["name"] for member in ref.card.members] if ref.card else [],
                "date": ref.card.date if ref.card else "",
                "val_accuracy": val.get("accuracy"),
                "val_macro_f1": val.get("macro_f1"),
                "val_weighted_f1": val.get("weighted_f1"),
                "ece": ece,
                "path": str(ref.path),
            }
        )
    if output_format == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Models (* = the default, used unless --model says otherwise)", box=box.SIMPLE_HEAD,
                  caption="Scores on FER2013 PublicTest; ECE: expected calibration error.\n"
                          "--format json adds weighted F1 and each model's file.")
    table.add_column("name", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("recipe", overflow="fold", min_width=9)
    table.add_column("trained", no_wrap=True)
    for column in ("accuracy", "macro F1", "ECE"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            row["name"] + (" *" if row["default"] else ""), row["kind"],
            f"{len(row['members'])} members" if row["members"] else row["recipe"], row["date"],
            *(f"{row[k]:.4f}" if row[k] is not None else "-" for k in ("val_accuracy", "val_macro_f1", "ece")),
        )
    console.print(table)


@model.command(name="soft-labels")
@click.option("--model", "ref", type=FLOAT_MODEL, required=True, help="Model name, run folder or .keras file.")
@click.option("--data", type=click.Path(path_type=Path), required=True, help=DATA_HELP)
@click.option("--skip-bad", is_flag=True, help="Skip unreadable or malformed data and count it, instead of stopping.")
def soft_labels(ref: ModelRef, data: Path, skip_bad: bool) -> None:
    """Write a model's probabilities for every Training and PublicTest face beside it (soft_labels.npz).

    Ensembles average them and students learn from them. Training writes them for every new run.

    \b
    Example:
      fer model soft-labels --model seed-flip --data ../shared/data/fer2013
    """
    # Keras and NumPy load only in the command that needs them (`fer --help` and the other commands stay fast).
    import numpy as np

    from fer_model.soft_labels import model_soft_labels, write_soft_labels

    dataset = _load_data(data, skip_bad)
    try:
        with console.status(f"Predicting {escape(ref.name)} on every face ..."):
            splits = model_soft_labels(load_model(ref), dataset)
            path = write_soft_labels(ref.folder, splits)
    except ModelNotFound as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write beside {ref.path}: {error.strerror or error}")
    for name, (split, probabilities) in splits.items():
        accuracy = float(np.mean(probabilities.argmax(axis=1) == split.labels))
        console.print(f"{name}: {plural(len(split), 'face')}, accuracy {accuracy:.4f}")
    console.print(f"Wrote {escape(str(path))}")


@model.command()
@click.option("--member", "members", type=FLOAT_MODEL, multiple=True, required=True,
              help="A member: model name, run folder or .keras file with soft labels beside it (repeat, at least 2).")
@click.option("--name", required=True, help="The ensemble's name (its card's and the folder's).")
@click.option("--data", type=click.Path(path_type=Path), required=True, help=DATA_HELP)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the ensemble  [default: NAME under the runs folder, as for training]")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable or malformed data and count it, instead of stopping.")
def ensemble(members: tuple[ModelRef, ...], name: str, data: Path, out: Path | None, skip_bad: bool) -> None:
    """Average trained members into one served model, with its temperature fitted on PublicTest.

    Prints each member's PublicTest accuracy and the ensemble's accuracy as members are added
    (forward selection from the members' soft labels), then writes model.keras, model.onnx, the
    card and the ensemble's soft labels into the folder.

    \b
    Example:
      fer model ensemble --name ensemble --member seed --member seed-flip --member seed-wide \\
          --data ../shared/data/fer2013
    """
    # Keras and NumPy load only in the command that needs them (`fer --help` and the other commands stay fast).
    from fer_model.ensemble_maker import EnsembleError, make_ensemble

    out = out or runs_home() / name
    if (out / "model.keras").exists():
        fail(f"{out} already holds a model; choose another --out or --name")
    dataset = _load_data(data, skip_bad)
    words = ["fer", "model", "ensemble", "--name", name, *[w for ref in members for w in ("--member", _model_argument(ref))]]
    try:
        with console.status(f"Making {escape(name)} from {plural(len(members), 'member')} ..."):
            result = make_ensemble(list(members), dataset, out, name, shlex.join([*words, "--data", str(data)]))
    except (EnsembleError, ModelNotFound) as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write to {out}: {error.strerror or error}")
    for row in result.card.members:
        console.print(f"+ {row['name']}: alone {row['accuracy']:.4f}; ensemble of {row['k']}: {row['ensemble_accuracy']:.4f}")
    val = result.card.metrics["val"]
    console.print(f"{escape(name)} on PublicTest: accuracy {val['accuracy']:.4f}, macro F1 {val['macro_f1']:.4f}")
    console.print(f"Model: {escape(str(result.model_path))}")
