"""``deepgen synth``: render a procedural corpus in a real dataset's layout."""

from __future__ import annotations

import click

from deepgen.synth.presets import PRESETS, render_preset


@click.command("synth")
@click.option(
    "--preset", type=click.Choice(PRESETS), required=True, help="Dataset layout to write."
)
@click.option("--out", required=True, help="Output directory or s3:// prefix.")
@click.option(
    "--videos", type=int, default=20, show_default=True, help="Approximate number of media items."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--frames", type=int, default=None, help="Frames per clip (preset default 24).")
@click.option("--size", type=int, default=None, help="Shorter frame side in pixels (even).")
@click.option(
    "--compression",
    "compressions",
    multiple=True,
    type=click.Choice(["raw", "c23", "c40"]),
    help="FF++ compression folders to write (repeatable; default c23).",
)
@click.option("--overwrite", is_flag=True, help="Replace a previous synth tree at --out.")
def synth(preset, out, videos, seed, frames, size, compressions, overwrite) -> None:
    """Render PRESET's dataset tree (real layout) plus deepgen_groundtruth.json under OUT."""
    render_preset(
        preset,
        out,
        videos=videos,
        seed=seed,
        frames=frames,
        size=size,
        compressions=tuple(compressions) or ("c23",),
        overwrite=overwrite,
        log=click.echo,
    )
    click.echo(f"wrote {preset} tree to {out}")
