"""``deepgen evaluate``: the cross-dataset protocol and its HTML report."""

from __future__ import annotations

import json

import click


@click.command("evaluate")
@click.option("--checkpoint", "checkpoints", multiple=True, required=True,
              help="Checkpoint bundle; repeat for an ensemble (equal weights on calibrated logits).")
@click.option("--faces", multiple=True, required=True, help="Faces table (extract output); repeatable.")
@click.option("--out", required=True, help="Report directory: report.html, metrics.json, predictions.parquet.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test", "all"]))
@click.option("--mc-passes", default=10, show_default=True, help="MC-dropout passes for uncertainty (0 = off).")
@click.option("--subgroup", "subgroups", multiple=True, help="Column of the faces table to report per group.")
@click.option("--adversarial", is_flag=True, help="Add white-box PGD robustness (1, 2, 4 /255).")
@click.option("--address", default=None, help="Ray address (ray://… or auto); embedded Ray if unset.")
@click.option("--overwrite", is_flag=True, help="Replace an existing report directory.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
def evaluate(checkpoints, faces, out, split, mc_passes, subgroups, adversarial, address, overwrite, quiet) -> None:
    """Evaluate checkpoints on faces tables (no retraining) and write the HTML report."""
    from deepgen.evaluation.run import evaluate as run

    m = run(list(checkpoints), list(faces), out, split=split, mc_passes=mc_passes, subgroups=list(subgroups),
            adversarial=adversarial, address=address, overwrite=overwrite, quiet=quiet)
    click.echo(json.dumps({"report": m["report"], "summary": m["summary"],
                           "per_dataset_auc": {d: r.get("auc") for d, r in m["per_dataset"].items()}}, indent=2))


@click.command("review")
@click.option("--scores", required=True, help="Scores table (score's --out, a store partition; path or s3://).")
@click.option("--out", required=True, help="Output directory for index.html (path or s3://).")
@click.option("--top", default=200, show_default=True, help="Highest-scoring items whose images are embedded.")
@click.option("--page-size", default=50, show_default=True, help="Items per page.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
def review(scores, out, top, page_size, overwrite) -> None:
    """One self-contained HTML page for analysts: items by score, filters, crops, heat maps, timelines, and
    real / fake / unsure buttons whose verdicts download as CSV (for `adapt fewshot --labels`).

    --out may not be, hold, or lie inside --scores; --overwrite replaces only a page folder deepgen wrote.
    """
    from deepgen.evaluation.review import review as run

    click.echo(json.dumps(run(scores, out, top=top, page_size=page_size, overwrite=overwrite), indent=2))
