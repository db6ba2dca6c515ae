"""Batch scoring on Ray Data: decode/sample -> detect/crop (CPU actors) -> model (actor pool,
batched, one GPU per actor when the cluster has GPUs) -> per-video aggregation -> calibrated score.

Only encoded face crops travel between stages, never frames. Every input row leaves the pipeline
as exactly one scores row: bad media become rows with a status and an error.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from deepgen.faces.media import ExtractConfig, extract_media

# Extra columns beside the scores contract (SCORES_SCHEMA): shift features and provenance.
EXTRA_SCHEMA = [
    ("mutual_info", pa.float64()),
    ("fingerprint", pa.string()),
    ("features", pa.list_(pa.float32())),
    ("frequency_score", pa.float64()),  # evidence: upsampling peaks in the crops' spectra
    ("boundary_score", pa.float64()),  # evidence: blending-boundary head's max response (NaN without one)
]


def scores_schema() -> pa.Schema:
    from deepgen.schema import SCORES_SCHEMA

    return pa.schema(list(SCORES_SCHEMA) + [pa.field(n, t) for n, t in EXTRA_SCHEMA])


@dataclass(frozen=True)
class ScoreConfig:
    """How media are scored: sampling, detection, MC dropout, batching and placement."""

    frames: int = 32
    margin: float = 0.3
    detector: str = "haar"
    max_side: int = 640
    mc_passes: int = 0  # > 0: MC-dropout predictive entropy and mutual information
    evidence: bool = False  # add artifact evidence columns (frequency score)
    model_batch: int = 8  # media per GPU model call; their crops go through in one forward pass
    face_workers: int | None = None
    model_workers: int | None = None
    use_gpu: bool | None = None  # None: one GPU per model actor when the cluster has GPUs


_CARRY = ("media_id", "uri", "label", "dataset", "fingerprint")
CROPS_SCHEMA = pa.schema([("media_id", pa.string()), ("uri", pa.string()), ("label", pa.int8()),
                          ("dataset", pa.string()), ("fingerprint", pa.string()), ("status", pa.string()),
                          ("error", pa.string()), ("n_frames", pa.int32()), ("crops", pa.list_(pa.binary()))])


class FaceStage:
    """CPU actor: sample frames, detect, crop; emits encoded crops (small) and the media status."""

    def __init__(self, cfg: ExtractConfig):
        import cv2

        from deepgen.faces.detect import get_detector

        cv2.setNumThreads(1)
        self.cfg = cfg
        self.detector = get_detector(cfg.detector, cfg.predictor_path)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for row in batch.to_pylist():
            if row.get("status"):  # rejected before decoding (e.g. outside the allowed roots)
                faces, st = [], {"status": row["status"], "error": row.get("error"), "n_frames": 0}
            else:
                faces, st = extract_media(row, self.cfg, self.detector)
            out.append({**{k: row.get(k) for k in _CARRY}, "status": st["status"], "error": st["error"],
                        "n_frames": st["n_frames"], "crops": [f["image"] for f in faces]})
        return pa.Table.from_pylist(out, schema=CROPS_SCHEMA)


class BundleActor:
    """Base of the model actors: the checkpoint bundle loaded once per actor, on its GPU if it has one."""

    def __init__(self, checkpoint: str | list[str], mc_passes: int, evidence: bool):
        import torch

        from deepgen.models.bundle import load_bundle

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(1)
        paths = [checkpoint] if isinstance(checkpoint, str) else list(checkpoint)
        self.bundles = [load_bundle(p, map_location=self.device) for p in paths]
        self.bundle = self.bundles[0]
        self.model_id = ensemble_model_id([b.model_id for b in self.bundles])
        self.mc_passes, self.evidence = mc_passes, evidence


def ensemble_model_id(model_ids: list[str]) -> str:
    """The id scores are keyed by: the bundle's own id, or one derived from all members of an ensemble."""
    import hashlib

    if len(model_ids) == 1:
        return model_ids[0]
    return "ens-" + hashlib.sha256("+".join(sorted(model_ids)).encode()).hexdigest()[:12]


class ModelStage(BundleActor):
    """Model actor: scores all crops of a batch of media in one pass and aggregates them per video."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        from deepgen.faces.crop import decode_image

        model, T = self.bundle.model, self.bundle.temperature
        media_rows = batch.to_pylist()
        crops = [[decode_image(b) for b in m["crops"]] for m in media_rows]
        flat = [c for media in crops for c in media]
        counts = [len(media) for media in crops]
        boundary = np.zeros(0)
        logits = np.zeros(0, np.float32)
        feats = np.zeros((0, model.num_features), np.float32)
        mc = np.zeros((self.mc_passes, 0), np.float32)
        members: list[np.ndarray] = []
        if flat:
            x = model.preprocess(flat).to(self.device)
            amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.device == "cuda" else nullcontext()
            with torch.no_grad(), amp:
                out = model(x)
                logits = out["logit"].float().cpu().numpy()
                feats = out["features"].float().cpu().numpy()
                if self.evidence:
                    from deepgen.models import boundary_scores

                    boundary = boundary_scores({k: v.float() for k, v in out.items()})
                if self.mc_passes:
                    mc = model.mc_dropout_logits(x, self.mc_passes).float().cpu().numpy()
                members = [b.model(b.model.preprocess(flat).to(self.device))["logit"].float().cpu().numpy()
                           for b in self.bundles[1:]]
        now = datetime.now(timezone.utc)
        rows, start = [], 0
        for i, n in enumerate(counts):
            meta = media_rows[i]
            z = logits[start : start + n]
            rec = {
                **{k: meta.get(k) for k in _CARRY},
                "status": meta["status"], "error": meta["error"], "n_frames": meta["n_frames"], "n_faces": n,
                "model_id": self.model_id, "scored_at": now,
                "score": None, "logit": None, "uncertainty": None, "mutual_info": None,
                "features": None, "frequency_score": None, "boundary_score": None,
            }
            if n:
                video_logit = float(z.mean())  # mean frame logit: the video's evidence, then calibrated
                p = 1.0 / (1.0 + np.exp(-video_logit / T))
                if members:  # ensemble: equal-weight mean of the members' calibrated video logits
                    video_logit = float(np.mean([video_logit / T] + [
                        float(m[start : start + n].mean()) / b.temperature for m, b in zip(members, self.bundles[1:])]))
                    p = 1.0 / (1.0 + np.exp(-video_logit))
                rec.update(logit=video_logit, score=p, uncertainty=_entropy(p),
                           features=feats[start : start + n].mean(0).astype(np.float32).tolist())
                if self.mc_passes:
                    probs = 1.0 / (1.0 + np.exp(-mc[:, start : start + n].mean(1) / T))
                    m = probs.mean()
                    rec.update(uncertainty=_entropy(m), mutual_info=max(_entropy(m) - float(np.mean(
                        [_entropy(q) for q in probs])), 0.0))
                if self.evidence:
                    from deepgen.artifacts import spectral_peak_score

                    rec["frequency_score"] = float(np.mean([spectral_peak_score(c) for c in crops[i]]))
                    rec["boundary_score"] = float(np.mean(boundary[start : start + n]))
            rows.append(rec)
            start += n
        return pa.Table.from_pylist(rows, schema=scores_schema())


class CpuStage:
    """CPU clusters: face stage and model stage fused in one actor (see :func:`score_stream`)."""

    def __init__(self, cfg: ExtractConfig, checkpoint: str | list[str], mc_passes: int, evidence: bool):
        self.faces = FaceStage(cfg)
        self.model = ModelStage(checkpoint, mc_passes, evidence)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.model(self.faces(batch))


def _entropy(p: float) -> float:
    p = min(max(float(p), 1e-12), 1 - 1e-12)
    return float(-(p * np.log(p) + (1 - p) * np.log(1 - p)))


def score_stream(rows: list[dict], checkpoint: str | list[str], cfg: ScoreConfig,
                 batch_rows: int = 64) -> Iterator[pa.Table]:
    """Run the pipeline over manifest-like rows; yields score tables as results stream in.

    Several checkpoints score as an ensemble: the equal-weight mean of their calibrated video logits
    (``logit`` is then that calibrated mean; MC dropout and features come from the first member).

    Rows need ``media_id`` and ``uri`` (``media_type``, ``label``, ``dataset``, ``fingerprint``
    optional); a row with a ``status`` set is passed through as that status without decoding.
    """
    import ray

    if not rows:
        return
    cpus = int(ray.cluster_resources().get("CPU", 1))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    use_gpu = gpus > 0 if cfg.use_gpu is None else cfg.use_gpu
    ecfg = ExtractConfig(frames=cfg.frames, margin=cfg.margin, detector=cfg.detector, max_side=cfg.max_side,
                         size=_crop_size(checkpoint if isinstance(checkpoint, str) else checkpoint[0]), threads=1)
    keep = ("media_id", "uri", "media_type", "label", "dataset", "fingerprint", "status", "error")
    items = [{k: r.get(k) for k in keep} for r in rows]
    model_kwargs = {"checkpoint": checkpoint, "mc_passes": cfg.mc_passes, "evidence": cfg.evidence}
    if not use_gpu:
        # CPU only: one fused actor per core decodes, detects and scores, so no core idles waiting on
        # a separate model stage (the model is small next to decoding and detection).
        workers = min(cfg.face_workers or cpus, len(items))
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 16 * workers))
        ds = ds.map_batches(CpuStage, fn_constructor_kwargs={"cfg": ecfg, **model_kwargs}, batch_size=1,
                            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)
    else:
        model_workers = cfg.model_workers or gpus
        face_workers = cfg.face_workers or max(1, cpus - model_workers)  # one CPU each; the rest feed the GPUs
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 16 * face_workers))
        ds = ds.map_batches(FaceStage, fn_constructor_kwargs={"cfg": ecfg}, batch_size=1, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=min(face_workers, len(items))), num_cpus=1)
        ds = ds.map_batches(ModelStage, fn_constructor_kwargs=model_kwargs, batch_size=cfg.model_batch,
                            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=model_workers),
                            num_gpus=1, num_cpus=1)
    yield from ds.iter_batches(batch_size=batch_rows, batch_format="pyarrow")


def _crop_size(checkpoint: str) -> int:
    """Crop straight to the model's input size (read from the bundle config, no weights loaded)."""
    import json

    from deepgen import storage
    from deepgen.models.bundle import CONFIG

    try:
        cfg = json.loads(storage.read_bytes(storage.join(checkpoint, CONFIG)))
        return int(cfg["model"]["image_size"])
    except Exception:
        return 224


def finish_rows(rows: list[dict], tables: list[pa.Table]) -> pa.Table:
    """One scores row per input row, in input order; a row the pipeline lost is an error row."""
    table = pa.concat_tables(tables).combine_chunks() if tables else scores_schema().empty_table()
    by_id = {m: i for i, m in enumerate(table.column("media_id").to_pylist())}
    lost = [r for r in rows if r["media_id"] not in by_id]
    if lost:
        now = datetime.now(timezone.utc)
        extra = [{"media_id": r["media_id"], "uri": r.get("uri"), "status": "error",
                  "error": "scoring task failed for this item", "n_frames": 0, "n_faces": 0,
                  "scored_at": now, "label": r.get("label"), "dataset": r.get("dataset"),
                  "fingerprint": r.get("fingerprint")} for r in lost]
        table = pa.concat_tables([table, pa.Table.from_pylist(extra, schema=scores_schema())])
        by_id = {m: i for i, m in enumerate(table.column("media_id").to_pylist())}
    return table.take([by_id[r["media_id"]] for r in rows])


def score_table_rows(rows: list[dict], checkpoint: str | list[str], cfg: ScoreConfig) -> pa.Table:
    """Score rows and return the complete scores table (driver-side collect; scores are small)."""
    t0 = time.perf_counter()
    tables = list(score_stream(rows, checkpoint, cfg))
    out = finish_rows(rows, tables)
    out = out.replace_schema_metadata({"seconds": f"{time.perf_counter() - t0:.3f}"})
    return out
