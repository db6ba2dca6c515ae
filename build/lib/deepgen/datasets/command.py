"""``deepgen manifest``: turn a dataset tree (local or ``s3://``) into a manifest Parquet."""

from __future__ import annotations

import click
import pyarrow as pa

from deepgen.datasets import ADAPTERS, adapter_options, write_manifest


def summarize(table: pa.Table) -> str:
    """Counts by split, label and method as a small text table."""
    counts = table.group_by(["split", "label", "method"]).aggregate([("media_id", "count")]).to_pylist()
    order = {"train": 0, "val": 1, "test": 2}
    counts.sort(key=lambda r: (order.get(r["split"], 9), r["label"], r["method"]))
    lines = [f"{'split':<6} {'label':<5} {'method':<24} {'count':>7}"]
    lines += [
        f"{r['split']:<6} {('fake' if r['label'] else 'real'):<5} {r['method']:<24} {r['media_id_count']:>7}"
        for r in counts
    ]
    lines.append(f"{'total':<37} {table.num_rows:>7}")
    return "\n".join(lines)


@click.command("manifest")
@click.option("--dataset", required=True, type=click.Choice(sorted(ADAPTERS)), help="Layout of the tree.")
@click.option("--root", required=True, help="Dataset root folder or s3:// prefix (a .csv for --dataset folder).")
@click.option("--out", required=True, help="Output manifest Parquet path or s3:// URI.")
@click.option("--compression", default=None, help="ffpp: raw (or c0), c23 or c40 [default: c23].")
@click.option("--splits", default=None, help="ffpp: folder with the official {train,val,test}.json.")
@click.option("--variant", default=None, help="deeperforensics: manipulated_videos/<variant> [default: end_to_end].")
@click.option("--ffpp-root", default=None, help="deeperforensics: FF++ root whose c23 originals are the reals.")
@click.option("--name", default=None, help="folder: dataset name for media_id and the dataset column.")
@click.option("--split", default=None, type=click.Choice(["train", "val", "test"]), help="folder: put every item in this split.")
def manifest(dataset: str, root: str, out: str, **options) -> None:
    """Write the manifest (one row per media item, label 1 = fake) of a dataset tree."""
    given = {k: v for k, v in options.items() if v is not None}
    allowed = adapter_options(dataset)
    for key in given:
        if key not in allowed:
            raise click.UsageError(f"--{key.replace('_', '-')} does not apply to --dataset {dataset}.")
    table = write_manifest(dataset, root, out, **given)
    click.echo(summarize(table))
    click.echo(f"wrote {table.num_rows} rows to {out}")
