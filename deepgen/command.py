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
    from deepgen.demo import demo as run

    run(out, quick=quick, workers=workers, seed=seed, overwrite=overwrite, log=click.echo)
