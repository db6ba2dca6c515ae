"""``deepgen score`` and ``deepgen rescore``."""

from __future__ import annotations

import json

import click

from deepgen.faces.detect import DETECTORS

_common = [
    click.option("--checkpoint", "checkpoints", multiple=True, required=True,
                 help="Checkpoint bundle (path or s3://); repeat for an equal-weight ensemble."),
    click.option("--frames", default=32, show_default=True, help="Frames sampled per video."),
    click.option("--sampling", type=click.Choice(["uniform", "clips"]), default="uniform", show_default=True,
                 help="uniform: frames spread evenly; clips: runs of --clip-len frames, each from a keyframe."),
    click.option("--clip-len", default=8, show_default=True, help="Frames per run with --sampling clips."),
    click.option("--detector", type=click.Choice(DETECTORS), default="yunet", show_default=True),
    click.option("--mc-passes", default=0, show_default=True, help="MC-dropout passes (0 = off)."),
    click.option("--evidence", is_flag=True, help="Add artifact evidence columns (frequency score)."),
    click.option("--model-batch", default=8, show_default=True, help="Media per model call."),
    click.option("--gpu-decode", is_flag=True,
                 help="With GPUs: one fused actor per GPU slice decodes on NVDEC (torchcodec), crops on the GPU "
                      "and scores; PyAV decodes on the CPU where torchcodec or NVDEC is missing."),
    click.option("--gpu-slices", default=1, show_default=True, help="Fused actors per GPU with --gpu-decode."),
    click.option("--allowed-roots", multiple=True, help="Only read URIs under these prefixes (repeatable)."),
    click.option("--address", default=None, help="Ray address (ray://… or auto); embedded Ray if unset."),
    click.option("--quiet", is_flag=True, help="No progress lines on stderr."),
]


def common(f):
    for opt in reversed(_common):
        f = opt(f)
    return f


def _cfg(frames, detector, mc_passes, evidence, model_batch, sampling="uniform", clip_len=8, gpu_decode=False,
         gpu_slices=1):
    from deepgen.scoring.pipeline import ScoreConfig

    return ScoreConfig(frames=frames, detector=detector, mc_passes=mc_passes, evidence=evidence,
                       model_batch=model_batch, sampling=sampling, clip_len=clip_len, gpu_decode=gpu_decode,
                       gpu_slices=gpu_slices)


@click.command("score")
@click.option("--manifest", required=True, help="Manifest Parquet, or a folder / s3:// prefix of media.")
@click.option("--out", required=True, help="Output scores table directory (path or s3://).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@common
def score(manifest, out, overwrite, checkpoints, frames, sampling, clip_len, detector, mc_passes, evidence,
          model_batch, gpu_decode, gpu_slices, allowed_roots, address, quiet) -> None:
    """Score every media item of a manifest: one row per item, failures as status rows."""
    from deepgen.scoring.score import score as run

    summary = run(manifest, list(checkpoints), out,
                  _cfg(frames, detector, mc_passes, evidence, model_batch, sampling, clip_len, gpu_decode, gpu_slices),
                  address=address, overwrite=overwrite, allowed_roots=list(allowed_roots) or None, quiet=quiet)
    click.echo(json.dumps(summary, indent=2))


@click.command("rescore")
@click.option("--incoming", required=True, help="Manifest Parquet, or a folder / s3:// prefix of new media.")
@click.option("--store", "store_uri", required=True, help="Results store (path or s3://).")
@click.option("--date", default=None, help="Partition date (default: today, UTC).")
@click.option("--chunk-size", default=32, show_default=True, help="Rows per committed chunk.")
@click.option("--alpha", default=0.01, show_default=True, help="Significance level of the shift alarm.")
@common
def rescore(incoming, store_uri, date, chunk_size, alpha, checkpoints, frames, sampling, clip_len, detector,
            mc_passes, evidence, model_batch, gpu_decode, gpu_slices, allowed_roots, address, quiet) -> None:
    """Nightly: score only new or changed items, idempotent and resumable; print the run summary."""
    from deepgen.scoring.nightly import rescore as run

    summary = run(incoming, list(checkpoints), store_uri,
                  _cfg(frames, detector, mc_passes, evidence, model_batch, sampling, clip_len, gpu_decode, gpu_slices),
                  address=address, allowed_roots=list(allowed_roots) or None, date=date,
                  chunk_size=chunk_size, alpha=alpha, quiet=quiet)
    click.echo(json.dumps(summary, indent=2, default=str))
