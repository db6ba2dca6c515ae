"""The ``deepgen`` command: one subcommand per arrow of the data flow, plus ``demo``.

Subcommands load lazily so ``deepgen --help`` stays fast (torch and Ray import only when used).
"""

from __future__ import annotations

import importlib
import sys

import click

from deepgen.errors import DeepgenError

# name -> ("module:attribute" of a click command, one-line help shown by `deepgen --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("deepgen.experiments.command:demo", "The whole flow from nothing on an embedded Ray (synth to report)."),
    "synth": ("deepgen.synth.command:synth", "Render procedural face videos and forgeries in a real dataset layout."),
    "manifest": ("deepgen.datasets.command:manifest", "Read a dataset tree (local or s3://) into a manifest."),
    "extract": ("deepgen.faces.command:extract", "Detect, track and crop faces for a manifest on Ray Data."),
    "train": ("deepgen.train.command:train", "Train a detector recipe on faces tables with Ray Train."),
    "evaluate": ("deepgen.evaluation.command:evaluate", "Cross-dataset metrics, calibration, shift: HTML report."),
    "tune": ("deepgen.tune.command:tune", "Ray Tune sweep of the loss weights, scored on held-out datasets."),
    "adapt": ("deepgen.adapt.command:adapt", "Adapt a checkpoint: feature alignment, few-shot, operating point on your real footage, protocol table."),
    "benchmark": ("deepgen.experiments.command:benchmark", "Leave-dataset-out generalization benchmark (recipes side by side)."),
    "score": ("deepgen.scoring.command:score", "Score media with a checkpoint bundle on Ray Data."),
    "rescore": ("deepgen.scoring.command:rescore", "Nightly incremental, idempotent, resumable rescoring."),
    "review": ("deepgen.evaluation.command:review", "One static HTML review page of a scores table for analysts."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deepgen")
def cli() -> None:
    """Detect face deepfakes in video at corpus scale, on an embedded Ray or a cluster."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn user errors into one line on stderr."""
    try:
        cli.main(args=argv, prog_name="deepgen", standalone_mode=False)
    except DeepgenError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Exception as e:  # an S3 failure no storage call translated: still one sentence, not a traceback
        if not type(e).__module__.startswith("botocore"):
            raise
        from deepgen.storage import remote_error

        click.echo(f"error: {remote_error('an s3:// location', e) or f'S3 failed ({e}); check the URI and credentials.'}",
                   err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
