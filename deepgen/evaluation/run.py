"""``deepgen evaluate``: one or more checkpoints against N faces tables, no retraining.

Scoring runs on Ray Data (model actors over the encoded crops); the driver aggregates frames to
videos and writes ``metrics.json``, ``predictions.parquet`` (one row per video) and
``report.html`` with its plots: per-dataset metrics and ROC curves, the cross-dataset AUC heatmap,
calibration before/after the checkpoint's temperature, coverage curves, the shift of each dataset's
features against the checkpoint's training features, and, where asked, artifact-evidence AUCs,
subgroup metrics, the ensemble row and adversarial robustness.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from deepgen import storage
from deepgen.errors import DeepgenError
from deepgen.faces.extract import read_faces
from deepgen.inference import (
    EVIDENCE,
    BundleActor,
    TemporalFusion,
    aggregate_media,
    describe_operating_point,
    load_bundles,
)

FRAME_COLUMNS = ("media_id", "frame_index", "image", "label", "dataset", "method")


class FrameScorer(BundleActor):
    """Ray Data actor: per-frame logit, MC-dropout logits, features and artifact evidence."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        from deepgen.faces.crop import decode_image

        images = [decode_image(b) for b in batch.column("image").to_pylist()]
        out = self.scorer.frame_outputs(images, self.mc_passes, self.evidence)
        cols = {
            "_row": batch.column("_row"),
            "media_id": batch.column("media_id"),
            "frame_index": batch.column("frame_index"),
            "logit": pa.array(out["logit"], pa.float64()),
            "features": pa.array(list(out["features"]), pa.list_(pa.float32())),
        }
        if "mc_logits" in out:
            cols["mc_logits"] = pa.array(list(out["mc_logits"].T), pa.list_(pa.float64()))
        for c in (*EVIDENCE, "ood"):
            if c in out:
                cols[c] = pa.array(out[c], pa.float64())
        return pa.table(cols)


def score_frames(faces: pa.Table, checkpoint: str, mc_passes: int = 0, evidence: bool = False,
                 batch_size: int = 64, workers: int | None = None, quiet: bool = False) -> pd.DataFrame:
    """Frame-level outputs of one checkpoint for every row of ``faces`` (Ray Data, actor pool); the bundle is
    checked here first, so a bad one is one sentence, not an actor's death (evaluate, adapt)."""
    import ray

    from deepgen.runtime import map_actors

    load_bundles(checkpoint)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    n = workers or (gpus or max(1, int(ray.cluster_resources().get("CPU", 1))))
    # blocks cut on the driver: no upstream tasks compete with the actor pool for CPUs
    # a face is one row (two faces of one frame are two rows): its row number joins outputs to it
    cols = faces.select(["media_id", "frame_index", "image"]).append_column(
        "_row", pa.array(np.arange(faces.num_rows), pa.int64()))
    blocks = [cols.slice(i, batch_size) for i in range(0, cols.num_rows, batch_size)]
    n = max(1, min(n, len(blocks)))  # an actor beyond the blocks would only start (torch, the bundle) and idle
    ds = ray.data.from_arrow(blocks)
    ds = map_actors(ds, FrameScorer, fn_constructor_kwargs={"checkpoint": checkpoint, "mc_passes": mc_passes,
                                                            "evidence": evidence},
                        batch_size=batch_size, batch_format="pyarrow",
                        compute=ray.data.ActorPoolStrategy(size=n), num_gpus=1 if gpus else 0, num_cpus=1)
    from deepgen.progress import Progress

    parts = []
    with Progress(cols.num_rows, "evaluate", quiet=quiet, unit="faces") as progress:
        for part in ds.iter_batches(batch_size=512, batch_format="pyarrow"):
            parts.append(part)
            progress.update(part.num_rows)
    out = pa.concat_tables(parts).to_pandas()
    meta = faces.drop_columns([c for c in ("image", "box", "landmarks") if c in faces.column_names]).to_pandas()
    meta = meta.assign(_row=np.arange(len(meta)))
    return meta.merge(out.drop(columns=["media_id", "frame_index"]), on="_row", how="inner",
                      validate="one_to_one").drop(columns="_row")


def video_predictions(frames: pd.DataFrame, temperature: float, group_cols: list[str],
                      temporal: TemporalFusion | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-video predictions (:func:`deepgen.inference.aggregate_media`, fused with ``temporal`` for a
    temporal bundle) with the videos' labels and groups carried; returns (videos, mean features per video)."""
    frames = frames.sort_values(["media_id", "frame_index"], kind="stable")
    keep = [c for c in dict.fromkeys(("dataset", "label", "method", *group_cols)) if c in frames.columns]
    videos = aggregate_media(frames, temperature, temporal)
    carried = frames.groupby("media_id", sort=True)[keep].first().reset_index()
    videos = carried.merge(videos, on="media_id", validate="one_to_one")
    videos["n_frames"] = frames.groupby("media_id", sort=True)["frame_index"].nunique().to_numpy()
    feats = np.stack(videos.pop("features").to_numpy())
    return videos, feats


def evaluate(
    checkpoints: list[str],
    faces: list[str],
    out: str,
    split: str = "test",
    unseen_split: str = "all",
    mc_passes: int = 10,
    evidence: bool = True,
    subgroups: list[str] | None = None,
    adversarial: bool = False,
    address: str | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> dict:
    """Score every faces table with every checkpoint, compute the cross-dataset protocol, write the report.

    ``split`` selects the rows of the datasets the (first) checkpoint was trained on; datasets it
    never saw are evaluated on ``unseen_split`` (default: all their rows, none was used in training).
    """
    from deepgen.evaluation.calibration import sigmoid
    from deepgen.evaluation.crossdataset import cross_dataset_metrics
    from deepgen.evaluation.metrics import compute_metrics
    from deepgen.evaluation.report import write_report
    from deepgen.evaluation.shift import shift_report
    from deepgen.runtime import init_ray

    if not checkpoints or not faces:
        raise DeepgenError("evaluate needs at least one --checkpoint and one --faces table; pass both.")
    for s in (split, unseen_split):
        if s not in ("train", "val", "test", "all"):
            raise DeepgenError(f"split {s!r} is unknown; use train, val, test or all.")
    storage.check_output_path(out, inputs=[*checkpoints, *faces], overwrite=overwrite)  # before any scoring
    t0 = time.perf_counter()
    bundles = load_bundles(checkpoints)  # a bad bundle fails here in one sentence, before any actor
    train_sets = _train_datasets(bundles[0])
    table = _load_faces(faces, split, subgroups or [], seen=train_sets, unseen_split=unseen_split)
    init_ray(address)
    group_cols = [c for c in dict.fromkeys(subgroups or []) if c in table.column_names]
    runs = []
    for uri, b in zip(checkpoints, bundles):
        frames = score_frames(table, uri, mc_passes=mc_passes, evidence=evidence, quiet=quiet)
        videos, feats = video_predictions(frames, b.temperature, group_cols, TemporalFusion.of(b))
        runs.append((uri, b, frames, videos, feats))
    uri, main, frames, videos, feats = runs[0]
    cross = cross_dataset_metrics(videos, train_sets)
    metrics: dict = {
        "checkpoint": uri, "model_id": main.model_id, "train_datasets": train_sets, "split": split,
        "per_dataset": {r["dataset"]: _clean(r) for r in cross["per_dataset"].to_dict("records")},
        "summary": _clean(cross["summary"]),
        "frame_level": {d: _clean(compute_metrics(g["label"].to_numpy(), sigmoid(g["logit"].to_numpy() / main.temperature)))
                        for d, g in frames.groupby("dataset")},
        "temperature": main.temperature,
        "operating_point": describe_operating_point([main]),
        "calibration": _calibration(videos),
    }
    if "in_domain" in videos.columns:  # share of each dataset's videos the domain check flags
        metrics["out_of_domain_share"] = {d: float(1.0 - g["in_domain"].mean()) for d, g in videos.groupby("dataset")}
    sections: list[tuple] = []
    shift = {}
    for d in sorted(videos["dataset"].unique()):
        idx = (videos["dataset"] == d).to_numpy()
        if idx.sum() >= 5 and main.reference:
            shift[d] = shift_report(main.reference, feats[idx], alpha=0.05, n_permutations=500)
    metrics["shift"] = {d: _clean(r) for d, r in shift.items()}
    matrix = None
    if len(runs) > 1:
        matrix, ens = _ensemble(runs, train_sets)
        metrics["ensemble"] = ens
        sections.append(("Ensemble", pd.DataFrame(ens["rows"]), "calibrated logits averaged with equal weights"))
    if evidence and "frequency_score" in videos.columns:
        ev = _evidence_aucs(videos)
        metrics["artifact_auc"] = ev.to_dict("records")
        sections.append(("Artifact evidence AUC", ev, "AUC of each artifact score alone, per dataset"))
    if "method" in videos.columns:
        per_method = _per_method(videos)
        metrics["per_method"] = per_method.to_dict("records")
        sections.append(("Per-method AUC (each method's fakes vs the dataset's reals)", per_method))
    if group_cols:
        from deepgen.evaluation.subgroups import subgroup_metrics

        sg = subgroup_metrics(videos, group_cols)
        metrics["subgroups"] = sg["summary"].to_dict("records")
        sections += [("Subgroup metrics", sg["table"]), ("Worst-group gaps", sg["summary"])]
    if adversarial:
        rob = _adversarial(main, table)
        metrics["adversarial"] = rob.to_dict("records")
        sections.append(("Adversarial robustness (white-box PGD on face crops)", rob))
    with storage.atomic_dir(out, overwrite=overwrite, inputs=[*checkpoints, *faces]) as tmp:
        storage.write_table(pa.Table.from_pandas(videos, preserve_index=False), storage.join(tmp, "predictions.parquet"))
        report = write_report(tmp, videos, {"model_id": main.model_id, "temperature": main.temperature,
                                            "operating point": metrics["operating_point"],
                                            "faces": ", ".join(faces)},
                              train_datasets=train_sets, temperature=main.temperature, auc_matrix=matrix, cross=cross,
                              shift=shift or None, sections=sections, title=f"deepgen evaluation: {main.model_id}")
        metrics["seconds"] = round(time.perf_counter() - t0, 2)
        storage.write_bytes(storage.join(tmp, "metrics.json"), json.dumps(metrics, indent=2, default=_json).encode())
    return {**metrics, "report": report.replace(str(tmp), str(out)), "out": str(out)}


def _calibration(videos: pd.DataFrame) -> list[dict]:
    from deepgen.evaluation.calibration import calibration_metrics

    rows = []
    for d, g in videos.groupby("dataset"):
        y = g["label"].to_numpy().astype(int)
        before, after = calibration_metrics(y, g["score_raw"].to_numpy()), calibration_metrics(y, g["score"].to_numpy())
        rows.append({"dataset": d, **{f"{k}_before": _json(v) for k, v in before.items()},
                     **{f"{k}_after": _json(v) for k, v in after.items()}})
    return rows


def _load_faces(faces: list[str], split: str, subgroups: list[str], seen: list[str] | None = None,
                unseen_split: str | None = None) -> pa.Table:
    tables, seen_columns = [], set()
    for uri in faces:
        if not storage.exists(uri):
            raise DeepgenError(f"faces table {uri} does not exist; run `deepgen extract` first or fix the path.")
        t = read_faces(uri)
        missing = [c for c in FRAME_COLUMNS if c not in t.column_names]
        if missing:
            raise DeepgenError(f"faces table {uri} lacks the column(s) {', '.join(missing)}; write it with `deepgen extract`.")
        if "split" in t.column_names:
            is_seen = pc.is_in(t["dataset"], pa.array(seen or [], pa.string()))
            chosen = pc.if_else(is_seen, pa.scalar(split), pa.scalar(unseen_split or split))
            t = t.filter(pc.or_(pc.equal(chosen, "all"), pc.equal(t["split"], chosen)))
        seen_columns.update(c for c in t.column_names if c not in ("image", "box", "landmarks"))
        keep = [c for c in dict.fromkeys((*FRAME_COLUMNS, "split", "track_id", "clip_index", "clip_pos", *subgroups))
                if c in t.column_names]  # tracks and clips: aggregated (and fused) as `score` does
        tables.append(t.select(keep))
    missing = [c for c in subgroups if c not in seen_columns]
    if missing:
        raise DeepgenError(f"no faces table has a column {missing[0]!r} for --subgroup; choose one of "
                           f"{', '.join(sorted(seen_columns))}.")
    table = pa.concat_tables(tables, promote_options="default")
    if table.num_rows == 0:
        raise DeepgenError(f"the faces tables hold no rows of split {split!r}; pass --split all or other tables.")
    return table


def _train_datasets(bundle) -> list[str]:
    d = bundle.datasets
    if isinstance(d, dict):
        d = d.get("train") or d.get("datasets") or list(d)
    return [str(x) for x in d]


def _per_method(videos: pd.DataFrame) -> pd.DataFrame:
    from deepgen.evaluation.metrics import compute_metrics

    rows = []
    for d, g in videos.groupby("dataset"):
        reals = g[g["label"] == 0]
        for m, f in g[g["label"] == 1].groupby("method"):
            if len(reals) and len(f):
                sub = pd.concat([reals, f])
                rows.append({"dataset": d, "method": m, "n_fake": len(f),
                             "auc": compute_metrics(sub["label"].to_numpy(), sub["score"].to_numpy())["auc"]})
    return pd.DataFrame(rows)


def _evidence_aucs(videos: pd.DataFrame) -> pd.DataFrame:
    from deepgen.evaluation.metrics import compute_metrics

    rows = []
    for d, g in videos.groupby("dataset"):
        row = {"dataset": d, "model": compute_metrics(g["label"].to_numpy(), g["score"].to_numpy())["auc"]}
        for c in ("frequency_score", "hf_ratio", "boundary_score"):
            if c in g.columns and np.isfinite(g[c].to_numpy(dtype=float)).all():
                row[c] = compute_metrics(g["label"].to_numpy(), g[c].to_numpy())["auc"]
        rows.append(row)
    return pd.DataFrame(rows)


def _ensemble(runs, train_sets) -> tuple[pd.DataFrame, dict]:
    from deepgen.evaluation.crossdataset import cross_dataset_metrics
    from deepgen.evaluation.ensemble import combine_logits

    # the same combination as scoring: calibrated frame logits averaged, then aggregated with T = 1
    frames = runs[0][2].drop(columns=[c for c in ("mc_logits",) if c in runs[0][2].columns])
    z = combine_logits([r[2]["logit"].to_numpy() for r in runs], temperatures=[r[1].temperature for r in runs])
    ens, _ = video_predictions(frames.assign(logit=z), 1.0, [])
    matrix_rows, rows = {}, []
    for i, (_, b, _, videos, _) in enumerate(runs):
        name = f"model {i}"
        per = cross_dataset_metrics(videos, train_sets)["per_dataset"].set_index("dataset")["auc"]
        matrix_rows[f"{name} ({b.model_id[:8]})"] = per
        rows.append({"model": name, "model_id": b.model_id, **per.to_dict()})
    per = cross_dataset_metrics(ens, train_sets)["per_dataset"].set_index("dataset")["auc"]
    matrix_rows["ensemble"] = per
    rows.append({"model": "ensemble", "model_id": "+".join(r[1].model_id[:8] for r in runs), **per.to_dict()})
    return pd.DataFrame(matrix_rows).T, {"rows": rows}


def _adversarial(bundle, table: pa.Table, per_class: int = 32, seed: int = 0) -> pd.DataFrame:
    from deepgen.evaluation.robustness import detector_robustness
    from deepgen.faces.crop import decode_image

    df = table.select(["image", "label"]).to_pandas()
    crops = [decode_image(b) for b in df["image"]]
    return detector_robustness(bundle.model, crops, df["label"].to_numpy(), per_class=per_class, seed=seed)


def _clean(d):
    return {k: _json(v) for k, v in d.items()} if isinstance(d, dict) else d


def _json(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v
