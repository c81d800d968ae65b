"""Click parameter types shared by the commands."""

from __future__ import annotations

import click

from cli.output import CommandError
from fer_model.registry import FLOAT32, INT8_SUFFIX, ModelNotFound, ModelRef, resolve_model
from workers.vision.min_face import parse_min_face


class MinFaceType(click.ParamType):
    """`--min-face 48` (pixels) or `--min-face 2%` (of each photo's shorter side)."""

    name = "PIXELS|PERCENT"

    def convert(self, value, param, ctx):
        try:
            return parse_min_face(value)
        except ValueError as error:
            self.fail(str(error).replace("invalid literal for int() with base 10", "not a number"), param, ctx)


MIN_FACE = MinFaceType()
MIN_FACE_HELP = ("Smallest face to look for: pixels of the photo, at least 20 (the detectors' window; the model sees "
                 "48x48), or a share of each photo's shorter side such as 2%, which never goes under 24 px.")


class ModelType(click.ParamType):
    """`--model NAME|RUN_FOLDER|FILE.keras`, resolved to the model's files (fer_model.registry.ModelRef).

    ``float_only``: refuse a NAME-int8 model, for commands that read or rewrite the Keras model itself."""

    name = "MODEL"

    def __init__(self, float_only: bool = False):
        self.float_only = float_only

    def convert(self, value, param, ctx):
        if isinstance(value, ModelRef):
            return value
        try:
            ref = resolve_model(value)
        except ModelNotFound as error:
            raise CommandError(str(error)) from None
        if self.float_only and ref.precision != FLOAT32:
            base = str(value)[: -len(INT8_SUFFIX)] if str(value).endswith(INT8_SUFFIX) else ref.name[: -len(INT8_SUFFIX)]
            raise CommandError(f"{value} is the int8 graph of {base}, for serving only: give {base}")
        return ref


MODEL = ModelType()
FLOAT_MODEL = ModelType(float_only=True)
