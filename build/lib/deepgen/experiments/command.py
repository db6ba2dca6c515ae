"""``deepgen demo`` and ``deepgen benchmark``: the commands that run the whole flow."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--out", default="demo-out", show_default=True, help="Directory for everything the demo writes.")
@click.option("--quick", is_flag=True, help="Smaller corpus and fewer epochs (under 3 minutes on 2 cores).")
@click.option("--workers", default=2, show_default=True, help="Ray Train workers.")
@click.option("--seed", default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Reuse a non-empty --out.")
def demo(out, quick, workers, seed, overwrite) -> None:
    """Synth -> manifest -> extract -> train -> evaluate -> score, with a summary table."""
    from deepgen.experiments.demo import demo as run

    run(out, quick=quick, workers=workers, seed=seed, overwrite=overwrite, log=click.echo)


@click.group("benchmark")
def benchmark() -> None:
    """Benchmarks that print a table (the performance ones live in benchmarks/)."""


@benchmark.command("generalization")
@click.option("--out", default="bench-out", show_default=True, help="Directory for data, runs, table and plots.")
@click.option("--recipe", "recipes", multiple=True, default=("erm", "sbi", "dann", "supcon", "full"),
              show_default=True, help="Recipes (configs/<name>.yaml) to train and compare.")
@click.option("--videos", default=100, show_default=True, help="Media items per synth preset.")
@click.option("--frames", default=8, show_default=True, help="Frames per clip (all sampled).")
@click.option("--epochs", default=60, show_default=True, type=int, help="Every recipe's epochs (0: the recipe's own).")
@click.option("--crop-size", default=160, show_default=True, help="Side of the extracted face crops.")
@click.option("--image-size", default=128, show_default=True, help="Every recipe's model input side (0: the recipe's own).")
@click.option("--workers", default=2, show_default=True, help="Ray Train workers.")
@click.option("--seed", default=0, show_default=True)
@click.option("--backbone", default=None, help="Override every recipe's timm backbone (e.g. resnet10t).")
def generalization(out, recipes, videos, frames, epochs, workers, seed, backbone, crop_size, image_size) -> None:
    """Train on the FF++-like preset, test on the four others; recipes side by side."""
    from deepgen.experiments.benchmark import generalization as run

    run(out, tuple(recipes), videos=videos, frames=frames, epochs=epochs or None, workers=workers, seed=seed,
        backbone=backbone, crop_size=crop_size, image_size=image_size or None, log=click.echo)
