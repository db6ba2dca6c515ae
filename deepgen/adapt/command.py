"""``deepgen adapt align|fewshot|threshold|protocol``: adapt a checkpoint bundle to a new domain, method or
operating point."""

from __future__ import annotations

import json

import click


@click.group("adapt")
def adapt() -> None:
    """Adapt a checkpoint to an unseen dataset (alignment) or manipulation (few-shot)."""


@adapt.command("align")
@click.option("--checkpoint", required=True, help="Source checkpoint bundle.")
@click.option("--target-faces", multiple=True, required=True, help="Unlabelled faces of the target domain.")
@click.option("--out", required=True, help="Output bundle directory.")
@click.option("--method", type=click.Choice(["coral", "moment"]), default="coral", show_default=True)
@click.option("--eps", default=0.1, show_default=True, help="CORAL regularization (relative to feature variance).")
@click.option("--address", default=None, help="Ray address; embedded Ray if unset.")
@click.option("--overwrite", is_flag=True)
def align(checkpoint, target_faces, out, method, eps, address, overwrite) -> None:
    """Align target features to the training features (CORAL or moment matching) inside the head."""
    from deepgen.adapt.bundles import align_bundle

    click.echo(json.dumps(align_bundle(checkpoint, list(target_faces), out, method, eps, address, overwrite), indent=2))


@adapt.command("fewshot")
@click.option("--checkpoint", required=True, help="Source checkpoint bundle.")
@click.option("--support", multiple=True, required=True,
              help="Labelled faces of the new manipulation and reals (faces tables or extract outputs).")
@click.option("--labels", default=None,
              help="Verdicts CSV from the review page's Download verdicts: the support set becomes the --support "
                   "faces of the items marked real or fake, labelled as the analyst marked them (the tables' "
                   "labels are ignored, unsure items dropped). Needs --scores.")
@click.option("--scores", default=None, help="With --labels: the scores table the review page was made from.")
@click.option("--out", required=True, help="Output bundle directory.")
@click.option("--k", default=5, show_default=True, help="Support faces per class.")
@click.option("--method", type=click.Choice(["fomaml", "finetune"]), default="finetune", show_default=True)
@click.option("--meta-faces", multiple=True, help="Faces of several known methods (meta-training, fomaml).")
@click.option("--seed", default=0, show_default=True)
@click.option("--address", default=None, help="Ray address; embedded Ray if unset.")
@click.option("--overwrite", is_flag=True)
def fewshot(checkpoint, support, labels, scores, out, k, method, meta_faces, seed, address, overwrite) -> None:
    """Adapt the head to a new manipulation from k labelled faces per class.

    With --labels/--scores the labels are an analyst's verdicts from `deepgen review`: no re-extraction,
    the faces come from --support (extracted from the same manifest, so media_ids match).
    """
    from deepgen.adapt.bundles import fewshot_bundle

    click.echo(json.dumps(fewshot_bundle(checkpoint, list(support), out, k=k, method=method,
                                         meta_faces=list(meta_faces) or None, seed=seed, address=address,
                                         overwrite=overwrite, labels=labels, scores=scores), indent=2))


@adapt.command("threshold")
@click.option("--checkpoint", multiple=True, required=True,
              help="Checkpoint bundle; repeat for an ensemble (then OUT/member-<i> is written for each member).")
@click.option("--faces", multiple=True,
              help="Faces table of your own REAL footage (label 0); repeat to add more.")
@click.option("--labels", default=None,
              help="Verdicts CSV downloaded from the review page: the items marked real join the fit (needs --scores).")
@click.option("--scores", default=None, help="The scores table the review page (and --labels) was made from.")
@click.option("--false-alarm", default=0.05, show_default=True, type=float,
              help="Largest share of these real videos allowed to score P(fake) >= 0.5.")
@click.option("--out", required=True, help="Output bundle directory.")
@click.option("--address", default=None, help="Ray address; embedded Ray if unset.")
@click.option("--overwrite", is_flag=True)
@click.option("--quiet", is_flag=True, help="No progress lines.")
def threshold(checkpoint, faces, labels, scores, false_alarm, out, address, overwrite, quiet) -> None:
    """Set the decision point on your own real videos: at most --false-alarm of them are flagged."""
    from deepgen.adapt.threshold import threshold_bundle

    res = threshold_bundle(list(checkpoint), list(faces), out, false_alarm, address, overwrite, quiet,
                           labels=labels, scores=scores)
    click.echo(f"operating point: {res['n_videos']} real videos, flagged {res['flagged_before']:.3f} -> "
               f"{res['flagged_after']:.3f} (asked <= {res['false_alarm']:g}); video logit shift "
               f"{res['shift']:+.4f}; model {res['model_id']}", err=True)
    click.echo(json.dumps(res, indent=2))


@adapt.command("protocol")
@click.option("--checkpoint", required=True, help="Checkpoint bundle whose features are adapted.")
@click.option("--faces", multiple=True, required=True, help="Faces with several manipulation methods.")
@click.option("--out", required=True, help="Output directory: protocol.csv and protocol.html.")
@click.option("--k", "ks", multiple=True, type=int, default=(0, 1, 5, 20), show_default=True)
@click.option("--repeats", default=1, show_default=True)
@click.option("--address", default=None, help="Ray address; embedded Ray if unset.")
@click.option("--overwrite", is_flag=True, help="Replace a protocol directory deepgen wrote before.")
def protocol(checkpoint, faces, out, ks, repeats, address, overwrite) -> None:
    """Leave one manipulation out: AUC vs k for none / CORAL / moment / fine-tune / FOMAML."""
    from deepgen import storage
    from deepgen.adapt.bundles import protocol_table
    from deepgen.adapt.protocol import summarize

    inputs = [checkpoint, *faces]
    storage.check_output_path(out, inputs=inputs, overwrite=overwrite)  # before any work
    table = protocol_table(checkpoint, list(faces), tuple(ks), repeats=repeats, address=address)
    summary = summarize(table)
    page = ("<html><body><h1>Leave-one-manipulation-out adaptation</h1><p>mean AUC over held-out methods</p>"
            + summary.to_html(float_format="%.3f") + "<h2>per held-out method</h2>"
            + table.to_html(index=False, float_format="%.3f") + "</body></html>")
    with storage.atomic_dir(out, overwrite=overwrite, inputs=inputs) as tmp:
        storage.write_bytes(storage.join(tmp, "protocol.csv"), table.to_csv(index=False).encode())
        storage.write_bytes(storage.join(tmp, "protocol.html"), page.encode())
    click.echo(summary.to_string(float_format="%.3f"))
