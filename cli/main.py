"""Entry point of the `fer` console script."""

from __future__ import annotations

import os

import click

# TensorFlow's C++ start-up chatter is noise for a command-line user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cli.db_commands import db  # noqa: E402
from cli.model_commands import model  # noqa: E402
from cli.pipeline_commands import annotate, export, report, retry, status, submit, worker  # noqa: E402
from cli.query_commands import query  # noqa: E402
from cli.schedule_commands import beat, schedule  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="fer-pipeline", prog_name="fer")
def fer() -> None:
    """Annotate photo archives with facial emotions.

    Faces are classified into angry, disgust, fear, happy, neutral, sad and
    surprise by a CNN this project trains on FER2013.
    """


for command in (annotate, submit, retry, worker, beat, status, report, export, query):
    fer.add_command(command)
fer.add_command(db)
fer.add_command(model)
fer.add_command(schedule)


def main() -> None:
    fer()


if __name__ == "__main__":
    main()
