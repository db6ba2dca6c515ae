"""``deepgen score`` and ``deepgen rescore``."""

from __future__ import annotations

import json
import sys

import click

from deepgen.faces.detect import DETECTORS
from deepgen.video import DEFAULT_SAMPLING, SAMPLINGS

_common = [
    click.option("--checkpoint", "checkpoints", multiple=True, required=True,
                 help="Checkpoint bundle (path or s3://); repeat for an equal-weight ensemble."),
    click.option("--frames", default=32, show_default=True, help="Frames sampled per video."),
    click.option("--sampling", type=click.Choice(SAMPLINGS), default=DEFAULT_SAMPLING, show_default=True,
                 help="clips (the default): runs of --clip-len frames spread over the video, each from a keyframe "
                      "where one is near; uniform: frames spread evenly."),
    click.option("--clip-len", default=8, show_default=True, help="Frames per run with --sampling clips."),
    click.option("--detector", type=click.Choice(DETECTORS), default="yunet", show_default=True),
    click.option("--mc-passes", default=0, show_default=True, help="MC-dropout passes (0 = off)."),
    click.option("--evidence", is_flag=True, help="Add artifact evidence columns (frequency score)."),
    click.option("--explain", default=0, show_default=True,
                 help="Save heat-map overlays of the top K frames of every flagged item (0 = off)."),
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


def _cfg(frames, detector, mc_passes, evidence, model_batch, explain=0, sampling=DEFAULT_SAMPLING, clip_len=8,
         gpu_decode=False, gpu_slices=1):
    from deepgen.scoring.pipeline import ScoreConfig

    if explain < 0:
        from deepgen.errors import DeepgenError

        raise DeepgenError(f"--explain is {explain}; give the number of frames to explain per item (0 = off).")
    return ScoreConfig(frames=frames, detector=detector, mc_passes=mc_passes, evidence=evidence,
                       model_batch=model_batch, explain=explain, sampling=sampling, clip_len=clip_len,
                       gpu_decode=gpu_decode, gpu_slices=gpu_slices)


@click.command("score")
@click.argument("media", required=False)
@click.option("--manifest", default=None, help="Manifest Parquet, or a folder / s3:// prefix of media.")
@click.option("--out", default=None, help="Output scores table directory (path or s3://); needed with --manifest.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--json", "as_json", is_flag=True, help="One file: print its scores row as JSON instead of text.")
@common
def score(media, manifest, out, overwrite, as_json, checkpoints, frames, sampling, clip_len, detector, mc_passes,
          evidence, explain, model_batch, gpu_decode, gpu_slices, allowed_roots, address, quiet) -> None:
    """Score every media item of a manifest (one row per item, failures as status rows), or one MEDIA
    file: `deepgen score clip.mp4 --checkpoint C` prints its verdict (exit status 1 when it gets no score)."""
    from deepgen.errors import DeepgenError

    cfg = _cfg(frames, detector, mc_passes, evidence, model_batch, explain, sampling, clip_len, gpu_decode,
               gpu_slices)
    if media is not None:
        if manifest is not None:
            raise DeepgenError("give either one MEDIA file or --manifest, not both.")
        import pyarrow as pa

        from deepgen import storage
        from deepgen.scoring.pipeline import scores_schema
        from deepgen.scoring.score import format_verdict, score_file

        if out is not None:  # refused before any work, like every output
            storage.check_output_path(out, inputs=[media, *checkpoints], overwrite=overwrite)
        row = score_file(media, list(checkpoints), cfg)
        if out is not None:
            with storage.atomic_dir(out, overwrite=overwrite, inputs=[media, *checkpoints]) as tmp:
                storage.write_table(pa.Table.from_pylist([row], schema=scores_schema()),
                                    storage.join(tmp, "part-00000.parquet"))
        if as_json:
            skip = ("features", "face_crops", "heatmaps")
            click.echo(json.dumps({k: v for k, v in row.items() if k not in skip}, indent=2, default=str))
        else:
            click.echo(format_verdict(row))
        if row.get("score") is None:  # not scored (no face, damaged, ...): the status line above says why
            sys.exit(1)
        return
    if manifest is None or out is None:
        raise DeepgenError("pass --manifest M and --out SCORES to score many items, or one MEDIA file to score it.")
    from deepgen.scoring.score import score as run

    summary = run(manifest, list(checkpoints), out, cfg,
                  address=address, overwrite=overwrite, allowed_roots=list(allowed_roots) or None, quiet=quiet)
    click.echo(json.dumps(summary, indent=2))


@click.command("rescore")
@click.option("--incoming", required=True, help="Manifest Parquet, or a folder / s3:// prefix of new media.")
@click.option("--store", "store_uri", required=True, help="Results store (path or s3://).")
@click.option("--date", default=None, help="Partition date, YYYY-MM-DD (default: today, UTC).")
@click.option("--chunk-size", default=32, show_default=True, help="Rows per committed chunk.")
@click.option("--alpha", default=0.01, show_default=True, help="Significance level of the shift alarm.")
@click.option("--lease-wait", default=600.0, show_default=True,
              help="Seconds to wait while another rescore of the same store and model runs.")
@common
def rescore(incoming, store_uri, date, chunk_size, alpha, lease_wait, checkpoints, frames, sampling, clip_len,
            detector, mc_passes, evidence, explain, model_batch, gpu_decode, gpu_slices, allowed_roots, address,
            quiet) -> None:
    """Nightly: score only new or changed items, idempotent and resumable; print the run summary."""
    from deepgen.scoring.nightly import rescore as run

    summary = run(incoming, list(checkpoints), store_uri,
                  _cfg(frames, detector, mc_passes, evidence, model_batch, explain, sampling, clip_len, gpu_decode,
                       gpu_slices),
                  address=address, allowed_roots=list(allowed_roots) or None, date=date,
                  chunk_size=chunk_size, alpha=alpha, quiet=quiet, lease_wait_s=lease_wait)
    click.echo(json.dumps(summary, indent=2, default=str))
