"""Entry point of the `fer` console script."""

from __future__ import annotations

import os

import click

# TensorFlow's C++ start-up chatter (and absl's) is noise for a command-line user; local worker
# processes inherit these.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
os.environ.setdefault("GLOG_minloglevel", "3")

from cli.db_commands import db  # noqa: E402
from cli.model_commands import model  # noqa: E402
from cli.output import EXIT_INTERRUPTED, fail  # noqa: E402
from cli.query_commands import query  # noqa: E402
from cli.report_commands import export, report, status  # noqa: E402
from cli.run_commands import annotate, cancel, retry, submit, worker  # noqa: E402
from cli.schedule_commands import beat, schedule  # noqa: E402


# Environment a command's own processes inherit: a worker's pool processes share one GPU, each TensorFlow taking
# memory as it needs it.
COMMAND_ENVIRONMENT = {"worker": {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}}


class FerGroup(click.Group):
    """The command group; an unexpected exception ends as one line (FER_DEBUG=1 shows the traceback)."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        for key, value in COMMAND_ENVIRONMENT.get(name or "", {}).items():
            os.environ.setdefault(key, value)
        return name, command, rest

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # A run's own handler marks its job and says how to finish it; this is Ctrl-C anywhere else.
            fail("interrupted", EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as error:  # noqa: BLE001 - the last line of defence of a command-line tool
            if os.environ.get("FER_DEBUG"):
                raise
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            fail(f"unexpected {type(error).__name__}: {first} (FER_DEBUG=1 shows the traceback)")


@click.group(cls=FerGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="fer-pipeline", prog_name="fer")
def fer() -> None:
    """Annotate photo archives with facial emotions.

    Faces are classified into angry, disgust, fear, happy, neutral, sad and
    surprise by a CNN this project trains on FER2013.
    """


for command in (annotate, submit, retry, cancel, worker, beat, status, report, export, query):
    fer.add_command(command)
fer.add_command(db)
fer.add_command(model)
fer.add_command(schedule)


def main() -> None:
    fer()


if __name__ == "__main__":
    main()
