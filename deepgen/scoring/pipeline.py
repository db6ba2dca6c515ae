"""Batch scoring on Ray Data: decode/sample -> detect/crop (CPU actors) -> model (actor pool,
batched, one GPU per actor when the cluster has GPUs) -> per-video aggregation -> calibrated score.

Only encoded face crops travel between stages, never frames. Every input row leaves the pipeline
as exactly one scores row: bad media become rows with a status and an error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from deepgen.faces.media import ExtractConfig, extract_media
from deepgen.inference import EVIDENCE, BundleActor, aggregate_media, frame_scores
from deepgen.video import DEFAULT_SAMPLING

# Extra columns beside the scores contract (SCORES_SCHEMA): shift features and provenance.
EXTRA_SCHEMA = [
    ("mutual_info", pa.float64()),
    ("fingerprint", pa.string()),
    ("features", pa.list_(pa.float32())),
    ("frequency_score", pa.float64()),  # evidence: upsampling peaks in the crops' spectra
    ("boundary_score", pa.float64()),  # evidence: blending-boundary head's max response (NaN without one)
    # per-frame timeline, one entry per scored face crop (list columns: one row per item stays the unit
    # of atomic writes and of the store's exactly-once keys)
    ("frame_indices", pa.list_(pa.int32())),  # sampled frame's index in the media
    ("frame_times", pa.list_(pa.float32())),  # its time in seconds (null entries when the rate is unknown)
    ("frame_tracks", pa.list_(pa.int32())),  # the face track it belongs to
    ("frame_scores", pa.list_(pa.float32())),  # calibrated P(fake) of that crop
    ("face_crops", pa.list_(pa.binary())),  # per track, the encoded crop of its highest-scoring frame
    ("heatmaps", pa.list_(pa.binary())),  # --explain K: PNG overlays of the top-K frames of a flagged item
    ("heatmap_frames", pa.list_(pa.int32())),  # their frame indices
    ("heatmap_kind", pa.string()),  # gradcam | boundary
    ("temporal_score", pa.float64()),  # a temporal bundle's temporal part alone (deepgen.inference); else null
    ("operating_point", pa.string()),  # which decision point the score is read against (adapt threshold or not)
]


def scores_schema() -> pa.Schema:
    from deepgen.schema import SCORES_SCHEMA

    return pa.schema(list(SCORES_SCHEMA) + [pa.field(n, t) for n, t in EXTRA_SCHEMA])


@dataclass(frozen=True)
class ScoreConfig:
    """How media are scored: sampling, detection, MC dropout, batching and placement."""

    frames: int = 32
    sampling: str = DEFAULT_SAMPLING  # clips (runs of clip_len frames spread over the video; deepgen.video) | uniform
    clip_len: int = 8
    margin: float | None = None  # None: the margin the bundle's training faces were cropped with (else 0.3)
    detector: str = "yunet"
    max_side: int = 640
    mc_passes: int = 0  # > 0: MC-dropout predictive entropy and mutual information
    evidence: bool = False  # add artifact evidence columns (frequency score)
    model_batch: int = 8  # media per GPU model call; their crops go through in one forward pass
    face_workers: int | None = None
    model_workers: int | None = None
    use_gpu: bool | None = None  # None: one GPU per model actor when the cluster has GPUs
    explain: int = 0  # > 0: heat-map overlays of the top-K frames of every flagged item (score >= 0.5)
    gpu_decode: bool = False  # with GPUs: the fused GpuStage (decode on NVDEC, crops on the GPU) per GPU slice
    gpu_slices: int = 1  # fused GPU actors per GPU
    in_flight: int = 4  # media decoded at once per fused GPU actor


_CARRY = ("media_id", "uri", "label", "dataset", "fingerprint")
CROPS_SCHEMA = pa.schema([("media_id", pa.string()), ("uri", pa.string()), ("label", pa.int8()),
                          ("dataset", pa.string()), ("fingerprint", pa.string()), ("status", pa.string()),
                          ("error", pa.string()), ("n_frames", pa.int32()), ("crops", pa.list_(pa.binary())),
                          ("track_ids", pa.list_(pa.int32())), ("frame_indices", pa.list_(pa.int32())),
                          ("fps", pa.float64()), ("clip_index", pa.list_(pa.int32())),
                          ("clip_pos", pa.list_(pa.int32()))])


class FaceStage:
    """CPU actor: sample frames, detect, crop; emits encoded crops (small) and the media status."""

    def __init__(self, cfg: ExtractConfig):
        import cv2

        from deepgen.faces.detect import get_detector

        cv2.setNumThreads(1)
        self.cfg = cfg
        self.detector = get_detector(cfg.detector, cfg.predictor_path)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self.crops_row(row) for row in batch.to_pylist()], schema=CROPS_SCHEMA)

    def crops_row(self, row: dict) -> dict:
        """One media row's crops row (CROPS_SCHEMA); a row with a ``status`` passes through undecoded."""
        if row.get("status"):  # rejected before decoding (e.g. outside the allowed roots)
            faces, st = [], {"status": row["status"], "error": row.get("error"), "n_frames": 0}
        else:
            faces, st = extract_media(row, self.cfg, self.detector)
        return {**{k: row.get(k) for k in _CARRY}, "status": st["status"], "error": st["error"],
                "n_frames": st["n_frames"], "crops": [f["image"] for f in faces],
                "track_ids": [int(f.get("track_id") or 0) for f in faces],
                "frame_indices": [int(f["frame_index"]) for f in faces], "fps": st.get("fps"),
                "clip_index": [f.get("clip_index") for f in faces],
                "clip_pos": [f.get("clip_pos") for f in faces]}


class ModelStage(BundleActor):
    """Model actor: scores all crops of a batch of media in one pass and aggregates them per media item."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        from deepgen.faces.crop import decode_image

        media_rows = batch.to_pylist()
        images = [decode_image(b) for m in media_rows for b in m["crops"]]
        return self.score_media(media_rows, images)

    def score_media(self, media_rows: list[dict], images, encode: Callable[[np.ndarray], bytes] | None = None
                    ) -> pa.Table:
        """Scores rows of media whose crops are ``images`` (numpy list or a uint8 device tensor),
        in media order, ``len(m["crops"])`` each; ``encode`` turns a crop whose bytes are None (the fused
        GPU stage's) into the bytes a row keeps, so only the kept crops are ever encoded."""
        frames = pd.DataFrame({
            "media_id": [m["media_id"] for m in media_rows for _ in m["crops"]],
            "track_id": [t for m in media_rows for t in (m["track_ids"] or [0] * len(m["crops"]))],
            "frame_index": [i for m in media_rows for i in (m.get("frame_indices") or range(len(m["crops"])))],
        })
        for c in ("clip_index", "clip_pos"):  # where the face stage sampled clips (temporal fusion reads them)
            frames[c] = pd.array([v for m in media_rows for v in (m.get(c) or [None] * len(m["crops"]))],
                                 dtype="Float64")
        if len(images):
            out = self.scorer.frame_outputs(images, self.mc_passes, self.evidence)
            frames["logit"] = out["logit"]
            frames["features"] = list(out["features"])
            if self.mc_passes:
                frames["mc_logits"] = list(out["mc_logits"].T)
            for c in (*EVIDENCE, "ood"):
                if c in out:
                    frames[c] = out[c]
        videos = aggregate_media(frames, self.scorer.temperature, self.scorer.temporal).set_index("media_id") if len(images) else None
        details = self.details(media_rows, frames, images, videos, encode) if len(images) else {}
        return pa.Table.from_pylist(score_rows(media_rows, videos, self.model_id, details,
                                               self.scorer.operating_point), schema=scores_schema())

    def details(self, media_rows: list[dict], frames: pd.DataFrame, images, videos: pd.DataFrame,
                encode: Callable[[np.ndarray], bytes] | None = None) -> dict[str, dict]:
        """Per item: the frame timeline, each track's top crop and, with ``explain``, heat-map overlays;
        ``images`` a numpy list or a device tensor, of which only the kept crops are copied to the host."""
        frames = frames.assign(frame_score=frame_scores(frames["logit"], self.scorer.temperature),
                               crop=[b for m in media_rows for b in m["crops"]], _pos=np.arange(len(frames)))
        out: dict[str, dict] = {}
        explain: list[tuple[str, int]] = []  # (media_id, position in images)
        for m in media_rows:
            g = frames[frames["media_id"] == m["media_id"]]
            if not len(g):
                continue
            fps = m.get("fps")
            best = g.sort_values("frame_score", ascending=False, kind="stable")
            top = best.drop_duplicates("track_id").sort_values("track_id")
            missing = [int(p) for p, b in zip(top["_pos"], top["crop"]) if b is None]
            encoded = dict(zip(missing, map(encode, host_images(images, missing)))) if missing else {}
            out[m["media_id"]] = {
                "frame_indices": g["frame_index"].astype(int).tolist(),
                "frame_times": [round(i / fps, 3) if fps else None for i in g["frame_index"]],
                "frame_tracks": g["track_id"].astype(int).tolist(),
                "frame_scores": g["frame_score"].astype(float).tolist(),
                "face_crops": [encoded[int(p)] if b is None else b for p, b in zip(top["_pos"], top["crop"])],
            }
            if self.explain and float(videos.loc[m["media_id"], "score"]) >= 0.5:
                explain += [(m["media_id"], int(p)) for p in best["_pos"].head(self.explain)]
        if explain:
            from deepgen.models.explain import overlay_png

            pos = [p for _, p in explain]
            if hasattr(images, "permute"):  # a device tensor: explained on the device from its crops
                import torch

                heat, kind = self.scorer.explain(images[torch.as_tensor(pos, device=images.device)])
            else:
                heat, kind = self.scorer.explain([images[p] for p in pos])
            for (mid, p), h, img in zip(explain, heat, host_images(images, pos)):
                d = out[mid]
                d.setdefault("heatmaps", []).append(overlay_png(img, h))
                d.setdefault("heatmap_frames", []).append(int(frames["frame_index"].iloc[p]))
                d["heatmap_kind"] = kind
        return out


def host_images(images, positions: list[int]) -> list[np.ndarray]:
    """The RGB uint8 (H, W, 3) crops at ``positions`` of a numpy list, or of a uint8 (N, 3, S, S) device
    tensor with just those copied to the host (the fused GPU stage keeps the rest on its device)."""
    if not hasattr(images, "permute"):
        return [images[p] for p in positions]
    if not positions:
        return []
    import torch

    picked = images[torch.as_tensor(positions, device=images.device)]
    return list(picked.permute(0, 2, 3, 1).contiguous().cpu().numpy())


def score_rows(media_rows: list[dict], videos: pd.DataFrame | None, model_id: str,
               details: dict[str, dict] | None = None, operating_point: str | None = None) -> list[dict]:
    """Scores rows (SCORES_SCHEMA + extras) from the media rows, their aggregated videos and per-item
    ``details`` (timeline, crops, heat maps). An item without a score keeps every score column null."""
    now = datetime.now(timezone.utc)
    rows = []
    for meta in media_rows:
        rec = {
            **{k: meta.get(k) for k in _CARRY},
            "status": meta["status"], "error": meta["error"], "n_frames": meta["n_frames"], "n_faces": 0,
            "n_tracks": 0, "model_id": model_id, "scored_at": now, "operating_point": operating_point,
        }
        if videos is not None and meta["media_id"] in videos.index:
            v = videos.loc[meta["media_id"]]
            rec.update({c: float(v[c]) for c in ("logit", "score", "uncertainty", *EVIDENCE, "temporal_score")
                        if c in v.index},
                       mutual_info=None if np.isnan(v["mutual_info"]) else float(v["mutual_info"]),
                       n_faces=int(v["n_faces"]), n_tracks=int(v["n_tracks"]),
                       features=np.asarray(v["features"], np.float32).tolist())
            if "ood_score" in v.index and np.isfinite(v["ood_score"]):
                rec.update(ood_score=float(v["ood_score"]), in_domain=bool(v["in_domain"]))
            rec.update((details or {}).get(meta["media_id"], {}))
        rows.append(rec)
    return rows


class CpuStage:
    """CPU clusters: face stage and model stage fused in one actor (see :func:`score_stream`)."""

    def __init__(self, cfg: ExtractConfig, checkpoint: str | list[str], mc_passes: int, evidence: bool,
                 explain: int = 0):
        self.faces = FaceStage(cfg)
        self.model = ModelStage(checkpoint, mc_passes, evidence, explain)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.model(self.faces(batch))


class GpuStage:
    """Fused GPU actor (one per GPU slice): decode on the device (NVDEC via torchcodec), detect on
    small frames on the CPU, crop on the device, one batched model pass (bf16 on a GPU, fp32 on a
    CPU); only paths come in and score rows go out, with the CPU path's columns (timeline, clip
    positions for temporal fusion, each track's top crop, heat maps). See :mod:`deepgen.scoring.gpu`."""

    def __init__(self, cfg: ExtractConfig, checkpoint: str | list[str], mc_passes: int, evidence: bool,
                 explain: int = 0, in_flight: int = 4):
        from deepgen.inference import default_device
        from deepgen.scoring.gpu import DeviceFaces

        self.model = ModelStage(checkpoint, mc_passes, evidence, explain)
        self.faces = DeviceFaces(cfg, default_device(), in_flight)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        rows = batch.to_pylist()
        todo = [r for r in rows if not r.get("status")]  # rows rejected before decoding pass through
        found = dict(zip((id(r) for r in todo), self.faces.map(todo)))
        media_rows, crops = [], []
        for row in rows:
            fields, c = found.get(id(row), (self.faces.status(row.get("status"), row.get("error")), None))
            n = 0 if c is None else len(c)
            # crops stay on the device: None here, and the few a row keeps are encoded like the CPU path's
            media_rows.append({**{k: row.get(k) for k in _CARRY}, **fields, "crops": [None] * n})
            if c is not None:
                crops.append(c)
        images = torch.cat(crops) if crops else []
        if self.model.evidence and len(images):  # the evidence features read numpy crops
            images = list(images.permute(0, 2, 3, 1).cpu().numpy())
        return self.model.score_media(media_rows, images, self.encode)

    def encode(self, crop: np.ndarray) -> bytes:
        """A kept crop's bytes, in the CPU path's image format and quality."""
        from deepgen.faces.crop import encode_image

        return encode_image(crop, self.faces.cfg.image_format, self.faces.cfg.quality)


def score_stream(rows: list[dict], checkpoint: str | list[str], cfg: ScoreConfig,
                 batch_rows: int = 64) -> Iterator[pa.Table]:
    """Run the pipeline over manifest-like rows; yields score tables as results stream in.

    Several checkpoints score as an ensemble: the equal-weight mean of their calibrated video logits
    (``logit`` is then that calibrated mean; MC dropout and features come from the first member).

    Rows need ``media_id`` and ``uri`` (``media_type``, ``label``, ``dataset``, ``fingerprint``
    optional); a row with a ``status`` set is passed through as that status without decoding.
    """
    import ray

    from deepgen.runtime import map_actors

    if not rows:
        return
    cpus = int(ray.cluster_resources().get("CPU", 1))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    use_gpu = gpus > 0 if cfg.use_gpu is None else cfg.use_gpu
    ecfg = extract_config(checkpoint, cfg)
    keep = ("media_id", "uri", "media_type", "label", "dataset", "fingerprint", "status", "error")
    items = [{k: r.get(k) for k in keep} for r in rows]
    model_kwargs = {"checkpoint": checkpoint, "mc_passes": cfg.mc_passes, "evidence": cfg.evidence,
                    "explain": cfg.explain}
    if cfg.gpu_decode:
        # one fused actor per GPU slice: paths in, score rows out; its threads keep NVDEC engines busy.
        # Without GPUs the same stage runs on one CPU per actor (torchcodec's CPU decoder).
        slices = max(1, cfg.gpu_slices)
        actors = max(1, min(gpus * slices if use_gpu else (cfg.face_workers or cpus), len(items)))
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 16 * actors))
        ds = map_actors(ds, GpuStage, fn_constructor_kwargs={"cfg": ecfg, **model_kwargs, "in_flight": cfg.in_flight},
                        batch_size=cfg.model_batch, batch_format="pyarrow",
                        compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 / slices if use_gpu else 0,
                        num_cpus=max(1, cpus // actors) if use_gpu else 1)
    elif not use_gpu:
        # CPU only: one fused actor per core decodes, detects and scores, so no core idles waiting on
        # a separate model stage (the model is small next to decoding and detection).
        workers = min(cfg.face_workers or cpus, len(items))
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 16 * workers))
        ds = map_actors(ds, CpuStage, fn_constructor_kwargs={"cfg": ecfg, **model_kwargs}, batch_size=1,
                            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)
    else:
        model_workers = cfg.model_workers or gpus
        face_workers = cfg.face_workers or max(1, cpus - model_workers)  # one CPU each; the rest feed the GPUs
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 16 * face_workers))
        ds = map_actors(ds, FaceStage, fn_constructor_kwargs={"cfg": ecfg}, batch_size=1, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=min(face_workers, len(items))), num_cpus=1)
        ds = map_actors(ds, ModelStage, fn_constructor_kwargs=model_kwargs, batch_size=cfg.model_batch,
                            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=model_workers),
                            num_gpus=1, num_cpus=1)
    yield from ds.iter_batches(batch_size=batch_rows, batch_format="pyarrow")


def extract_config(checkpoint: str | list[str], cfg: ScoreConfig) -> ExtractConfig:
    """How scoring samples and crops faces for ``checkpoint`` (the first member of an ensemble)."""
    crops = crop_settings(checkpoint if isinstance(checkpoint, str) else checkpoint[0], cfg)
    return ExtractConfig(frames=cfg.frames, sampling=cfg.sampling, clip_len=cfg.clip_len, margin=crops["margin"],
                         align=crops["align"], detector=cfg.detector, max_side=cfg.max_side, size=crops["size"],
                         threads=1)


def crop_settings(checkpoint: str, cfg: ScoreConfig) -> dict:
    """Crop like the model's training faces: its input size, and the margin and alignment its bundle
    records (``faces.json``); ``cfg.margin`` set explicitly wins over the bundle's."""
    from deepgen import storage
    from deepgen.models.bundle import read_model_config

    size = int(read_model_config(checkpoint).image_size)  # crop straight to the input size
    path = storage.join(checkpoint, "faces.json")
    faces = json.loads(storage.read_bytes(path)) if storage.exists(path) else {}
    margin = cfg.margin if cfg.margin is not None else float(faces.get("margin") or 0.3)
    return {"size": size, "margin": margin, "align": bool(faces.get("align", False))}


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
