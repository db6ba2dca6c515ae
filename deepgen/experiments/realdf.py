"""Real deepfakes: the development set in ``../shared/data/real_deepfakes``, read in each dataset's own layout.

Every figure the procedural corpora give is measured on forgeries this project made. This folder
holds forgeries made by the tools behind FaceForensics++, DFDC and Celeb-DF, and reals from the same
datasets, each sub-folder in its dataset's layout, so the project's own adapters read them:

=================  ==========  ============================================================
sub-folder         adapter     what
=================  ==========  ============================================================
``ffpp_c23``       ``ffpp``    FF++ c23: 3 real, 4 fake (one per method)
``dfdc``           ``dfdc``    DFDC (metadata.json + videos): 3 fake
``folder``         ``folder``  one DFDC real video
``celebdf_clips``  ``folder``  Celeb-DF v2: 7 real, 7 fake 1 s face clips (a hard subset)
``dfdc_crops``     ``folder``  DFDC: 34 real, 33 fake 224 px face crops (images)
=================  ==========  ============================================================

The set is small (92 items: 45 real, 47 fake): every figure drawn from it carries a bootstrap interval.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

# (sub-folder, adapter, the source it is reported under: the DFDC real video joins the DFDC videos)
SOURCES = (("ffpp_c23", "ffpp", "ffpp_c23"), ("dfdc", "dfdc", "dfdc"), ("folder", "folder", "dfdc"),
           ("celebdf_clips", "folder", "celebdf_clips"), ("dfdc_crops", "folder", "dfdc_crops"))
DATASET = "real_deepfakes"


def default_real_deepfakes() -> str | None:
    """``../shared/data/real_deepfakes`` beside the checkout (or the working directory), if present."""
    here = Path(__file__).resolve().parents[2]
    for base in (here.parent, Path.cwd().parent):
        p = base / "shared" / "data" / "real_deepfakes"
        if p.is_dir():
            return str(p)
    return None


def require_real_deepfakes(given: str | None, needs: str) -> str:
    """``given``, else :func:`default_real_deepfakes`; else one sentence saying that ``needs`` it and how to pass it."""
    root = given or default_real_deepfakes()
    if not root:
        from deepgen.errors import DeepgenError

        raise DeepgenError(f"{needs} needs the real deepfakes; pass --real-deepfakes DIR (e.g. "
                           "../shared/data/real_deepfakes).")
    return root


def real_deepfake_manifest(root: str) -> pa.Table:
    """One manifest of every sub-folder found under ``root``, each read by its dataset's adapter; ``dataset``
    is ``real_deepfakes``, ``source`` names the sub-folder's source, and every item is a ``test`` item."""
    from deepgen.datasets import build_manifest

    parts = []
    for folder, adapter, source in SOURCES:
        path = os.path.join(root, folder)
        if not os.path.isdir(path):
            continue
        t = build_manifest(adapter, path)
        n = t.num_rows
        t = t.set_column(t.column_names.index("media_id"), "media_id",
                         pa.array([f"{DATASET}/{folder}/{m}" for m in t.column("media_id").to_pylist()]))
        t = t.set_column(t.column_names.index("dataset"), "dataset", pa.array([DATASET] * n, pa.string()))
        t = t.set_column(t.column_names.index("split"), "split", pa.array(["test"] * n, pa.string()))
        parts.append(t.append_column("source", pa.array([source] * n, pa.string())))
    if not parts:
        from deepgen.errors import DeepgenError

        raise DeepgenError(f"{root} holds none of {', '.join(s[0] for s in SOURCES)}; pass the real_deepfakes "
                           "folder.")
    return pa.concat_tables(parts, promote_options="default")


def score_items(bundle, df: pd.DataFrame) -> pd.DataFrame:
    """Per item of ``df`` (faces rows with decoded ``crop``): the calibrated ``score``, ``ood_score`` and
    ``in_domain`` through the one inference path, with ``label`` and ``source`` carried."""
    from deepgen.inference import Scorer

    scorer = Scorer([bundle], "cpu")
    out = scorer.frame_outputs(list(df["crop"]))
    return items_from_logits(df, out["logit"], scorer.temperature, out.get("ood"))


def items_from_logits(df: pd.DataFrame, logits, temperature: float = 1.0, ood=None) -> pd.DataFrame:
    """Per item of ``df`` (faces rows): the item rows :func:`deepgen.inference.aggregate_media` makes of these
    frame ``logits`` (and ``ood`` distances), with ``label`` and ``source`` carried."""
    from deepgen.inference import aggregate_media

    frames = df[[c for c in ("media_id", "track_id") if c in df.columns]].assign(logit=logits)
    if ood is not None:
        frames["ood"] = ood
    items = aggregate_media(frames, temperature, None)
    carried = df.groupby("media_id", sort=True)[["label", "source"]].first()
    return items.join(carried, on="media_id")


def source_metrics(items: pd.DataFrame, threshold: float = 0.5, seed: int = 0) -> list[dict]:
    """Per source and for all items: AUC with its bootstrap 95% interval, the share of real items at or
    above ``threshold`` and the share of items marked out of domain."""
    from sklearn.metrics import roc_auc_score

    from deepgen.evaluation.metrics import bootstrap_auc_interval

    rows = []
    for source, g in [*items.groupby("source", sort=True), ("all", items)]:
        y, s = g["label"].to_numpy(int), g["score"].to_numpy(float)
        lo, hi = bootstrap_auc_interval(y, s, seed=seed)
        both = len(set(y)) == 2
        rows.append({"source": source, "items": len(g), "real": int((y == 0).sum()), "fake": int((y == 1).sum()),
                     "auc": float(roc_auc_score(y, s)) if both else float("nan"), "auc_lo": lo, "auc_hi": hi,
                     "real_flagged": float((s[y == 0] >= threshold).mean()) if (y == 0).any() else float("nan"),
                     "out_of_domain": (float((~g["in_domain"].astype(bool)).mean()) if "in_domain" in g
                                       else float("nan"))})
    return rows


def prepare_real_deepfakes(out: str, root: str, frames: int, crop_size: int, log) -> pd.DataFrame:
    """Extract (or reuse) the faces of every real-deepfake item under ``out`` and return their rows with
    decoded ``crop`` and ``source`` (crops are images, clips and videos are videos)."""
    from deepgen.experiments.corpora import prepared_corpus
    from deepgen.faces.crop import decode_image
    from deepgen.faces.extract import read_faces
    from deepgen.storage import write_table

    manifest_table = real_deepfake_manifest(root)

    def render(_root: str, manifest: str) -> None:
        os.makedirs(_root, exist_ok=True)
        write_table(manifest_table, manifest)

    stamp = {"real_deepfakes": os.path.abspath(root), "items": manifest_table.num_rows, "frames": frames}
    _, fdir = prepared_corpus(out, DATASET, stamp, render, frames, crop_size, log, "real deepfakes")
    faces = read_faces(fdir)
    df = faces.drop_columns(["image"]).to_pandas()
    source = dict(zip(manifest_table.column("media_id").to_pylist(), manifest_table.column("source").to_pylist()))
    df["source"] = df["media_id"].map(source)
    df["crop"] = [decode_image(b) for b in faces["image"].to_pylist()]
    return df
