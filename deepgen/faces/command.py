"""``deepgen extract``: manifest -> faces table (and per-media status table) on Ray."""

from __future__ import annotations

import json

import click

from deepgen.faces.detect import DETECTORS
from deepgen.video import DEFAULT_SAMPLING, SAMPLINGS


@click.command("extract")
@click.option("--manifest", "manifest", required=True, help="Manifest Parquet (path or s3://).")
@click.option("--out", "out", required=True, help="Output directory: writes faces/, status/ and extract.json (work in progress: OUT.partial).")
@click.option("--frames", default=32, show_default=True, help="Frames sampled per video.")
@click.option("--sampling", type=click.Choice(SAMPLINGS), default=DEFAULT_SAMPLING, show_default=True,
              help="clips (the default): --frames/--clip-len runs of consecutive frames spread over the whole video, each from a keyframe where one is near (decodes about --frames frames where keyframes are frequent); uniform: frames spread evenly.")
@click.option("--clip-len", default=8, show_default=True, help="Frames per run with --sampling clips.")
@click.option("--size", default=224, show_default=True, help="Side of the square face crops.")
@click.option("--margin", default=0.3, show_default=True, help="Margin around the face box.")
@click.option("--detector", type=click.Choice(DETECTORS), default="yunet", show_default=True, help="Face detector: yunet (CNN, 5 landmarks; falls back to haar without the yuface wheel), haar or dlib.")
@click.option("--all-faces", is_flag=True, help="Keep every face, not only the main face track.")
@click.option("--predictor", default=None, help="dlib 68-landmark predictor file (with --detector dlib).")
@click.option("--align", is_flag=True, help="Rotate crops so the eyes are level (needs landmarks).")
@click.option("--workers", type=int, default=None, help="Actors (default: all CPUs of the cluster).")
@click.option("--address", default=None, help="Ray address (ray://… or auto); embedded Ray if unset.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output (and any interrupted run).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last committed chunk.")
@click.option("--chunk-size", default=256, show_default=True, help="Items per committed chunk.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
def extract(manifest, out, frames, sampling, clip_len, size, margin, detector, all_faces, predictor, align, workers, address,
            overwrite, resume, chunk_size, quiet) -> None:
    """Detect, track and crop faces for every manifest item into a faces table."""
    from deepgen.faces.extract import extract_faces

    summary = extract_faces(
        manifest, out, frames=frames, size=size, margin=margin, detector=detector, all_faces=all_faces,
        address=address, overwrite=overwrite, num_workers=workers, predictor_path=predictor, align=align,
        resume=resume, chunk_size=chunk_size, quiet=quiet, sampling=sampling, clip_len=clip_len,
    )
    click.echo(json.dumps(summary, indent=2))
