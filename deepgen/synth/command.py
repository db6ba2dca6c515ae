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
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
@click.option("--photos", multiple=True, type=click.Path(file_okay=False),
              help="Folder of real face photos/videos: the corpus's people are real (identities.csv, sub-folders "
                   "or one per file; split train/val/test by identity). Repeatable: one name is one person "
                   "across folders.")
@click.option("--same-person", "same_person", multiple=True, metavar="NAME=OTHER",
              help="With --photos: two names of one person (e.g. across folders); repeatable.")
@click.option("--landmarks", type=click.Choice(["auto", "dlib", "yunet"]), default="auto", show_default=True,
              help="With --photos: dlib's 68 points where installed (non-commercial model), else YuNet's 5.")
def synth(preset, out, videos, seed, frames, size, compressions, overwrite, quiet, photos, same_person,
          landmarks) -> None:
    """Render PRESET's dataset tree (real layout) plus deepgen_groundtruth.json under OUT."""
    from deepgen.errors import DeepgenError

    compressions = tuple(compressions) or ("c23",)
    if photos:
        from deepgen.synth.photos import render_photos

        source = photos[0] if len(photos) == 1 else list(photos)
        render_with_progress(preset, out, videos=videos, seed=seed, frames=frames, size=size,
                             compressions=compressions, overwrite=overwrite, log=click.echo, quiet=quiet,
                             render=lambda *a, **k: render_photos(source, *a, landmarks=landmarks,
                                                                  same_person=same_person, **k))
        click.echo(f"wrote {preset} tree of real people from {' and '.join(photos)} to {out}")
        return
    if same_person:
        raise DeepgenError("--same-person names people of --photos folders; pass --photos too, or drop it.")
    render_with_progress(preset, out, videos=videos, seed=seed, frames=frames, size=size,
                         compressions=compressions, overwrite=overwrite, log=click.echo, quiet=quiet)
    click.echo(f"wrote {preset} tree to {out}")


def render_with_progress(preset: str, out: str, videos: int = 20, quiet: bool = False, render=None, **kwargs) -> str:
    """:func:`render_preset` (or ``render``, same signature) with a progress line per rendered video (every 5 s)
    on stderr, unless ``quiet``."""
    from deepgen.progress import Progress
    from deepgen.synth.encode import on_media_written

    copies = len(kwargs.get("compressions") or ("c23",)) if preset == "ffpp" else 1
    with Progress(max(1, videos * copies), "synth", quiet=quiet, unit="videos") as progress:
        with on_media_written(progress.update):
            result = (render or render_preset)(preset, out, videos=videos, **kwargs)
        progress.total = progress.done  # videos is approximate: the final line counts what was written
    return result
