"""``deepgen train``: train a detector on faces tables with Ray Train and write a checkpoint bundle."""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager

import click


@contextmanager
def one_line_warnings():
    """Show warnings as one ``warning: ...`` line on stderr (no file and source line)."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        click.echo(f"warning: {message}", err=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


@click.command("train")
@click.option("--config", "config", required=True, help="A packaged recipe (erm, sbi, dann, supcon, full, artifacts, temporal) or a recipe YAML path/URI.")
@click.option("--faces", "faces", multiple=True, required=True,
              help="Faces table (path or s3:// URI); repeat to mix datasets.")
@click.option("--out", required=True, help="Run directory: <out>/bundle and <out>/checkpoints.")
@click.option("--workers", default=2, show_default=True, type=int, help="Ray Train workers.")
@click.option("--address", default=None, help="Ray cluster address (default: an embedded Ray).")
@click.option("--cpus-per-worker", default=1.0, show_default=True, type=float, help="CPUs reserved per worker.")
@click.option("--epochs", default=None, type=int, help="Override the recipe's epochs.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle in --out.")
@click.option("--quiet", is_flag=True, help="No per-epoch progress lines on stderr.")
def train(config: str, faces: tuple[str, ...], out: str, workers: int, address: str | None,
          cpus_per_worker: float, epochs: int | None, overwrite: bool, quiet: bool) -> None:
    """Train a deepfake detector (recipe from --config) and write a checkpoint bundle."""
    from deepgen.train.trainer import train as run_train

    overrides = {"epochs": epochs} if epochs is not None else None
    with one_line_warnings():
        result = run_train(config, list(faces), out, workers=workers, address=address, overrides=overrides,
                           cpus_per_worker=cpus_per_worker, overwrite=overwrite, quiet=quiet)
    metrics = result["metrics"]
    aucs = {k[len("val_auc_"):]: round(v, 4) for k, v in metrics.items() if k.startswith("val_auc_")}
    click.echo(f"epoch {metrics['epoch']} selected: val_mean_auc {metrics['val_mean_auc']:.4f} per dataset "
               f"{json.dumps(aucs)}; temperature {result['temperature']:.3f}; {result['seconds']:.0f} s")
    if result.get("validation_fakes") == "synthetic":
        click.echo("validated and calibrated on pseudo-fakes of the validation reals (the faces hold no fakes): "
                   "check the scores on real forgeries before trusting the threshold (README, \"Training from "
                   "real footage only\")")
    elif "val_synthetic_auc" in metrics:
        click.echo(f"pseudo-fakes of the validation reals (not selected on): AUC {metrics['val_synthetic_auc']:.4f}")
    click.echo(f"bundle {result['bundle']} (model_id {result['model_id']})")
