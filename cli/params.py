"""Click parameter types shared by the commands."""

from __future__ import annotations

import click

from cli.output import CommandError
from fer_model.registry import ModelNotFound, ModelRef, resolve_model
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
    """`--model NAME|RUN_FOLDER|FILE.keras`, resolved to the model's files (fer_model.registry.ModelRef)."""

    name = "MODEL"

    def convert(self, value, param, ctx):
        if isinstance(value, ModelRef):
            return value
        try:
            return resolve_model(value)
        except ModelNotFound as error:
            raise CommandError(str(error)) from None


MODEL = ModelType()
