"""Second training stage of the ``temporal`` recipe: the temporal head on cached clip embeddings.

The frame model is trained first (the usual Ray Train loop); its backbone is then frozen, each
training clip's per-frame embeddings are computed once (real clips, their temporal pseudo-fakes from
:func:`deepgen.augment.temporal_blend`, and the faces table's own fake clips), and the head trains
for ``temporal_epochs`` over that cache, which costs seconds on 2 CPU cores. Validation videos then
fit the fusion temperatures through :func:`deepgen.inference.aggregate_media`, the one inference path.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch

from deepgen.errors import DeepgenError
from deepgen.train.config import TrainConfig

COLUMNS = ("image", "label", "dataset", "method", "split", "media_id", "track_id", "clip_index", "clip_pos",
           "box", "landmarks")


def read_clip_faces(faces: list[str], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and validation faces that belong to clips (``--sampling clips``), media keyed by dataset.

    Validation is the tables' val split, or (when it lacks a class) the same identities the frame
    model validated on (:func:`deepgen.train.data.carve_val`), so no validation video trained either part.
    """
    from deepgen.faces.extract import read_faces
    from deepgen.train.data import carve_val

    tables = []
    for uri in faces:
        t = read_faces(uri)
        if "clip_index" not in t.column_names or pc.all(pc.is_null(t["clip_index"])).as_py() is not False:
            raise DeepgenError(f"faces {uri} hold no clips; extract them with `deepgen extract --sampling clips "
                               "--clip-len T` to train the temporal recipe.")
        ident = next((c for c in ("source_id", "media_id") if c in t.column_names), "media_id")
        cols = {c: t[c] for c in COLUMNS if c in t.column_names}
        cols["label"] = cols["label"].cast(pa.int8())
        cols["source_id"] = t[ident].cast(pa.string())
        cols["media_id"] = pc.binary_join_element_wise(t["dataset"].cast(pa.string()),
                                                       t["media_id"].cast(pa.string()), "|")
        tables.append(pa.table(cols))
    table = pa.concat_tables(tables, promote_options="default")
    train = table.filter(pc.equal(table["split"], "train"))
    val = table.filter(pc.equal(table["split"], "val"))
    if set(val["label"].to_pylist()) != {0, 1}:
        import warnings

        with warnings.catch_warnings():  # the frame stage already said so
            warnings.simplefilter("ignore")
            train, val = carve_val(train, val, ", ".join(faces), seed)
    return train.to_pandas(), val.to_pandas()


def _embed(model, images: list[np.ndarray], batch_size: int = 128) -> np.ndarray:
    from deepgen.inference import model_frame_outputs

    return model_frame_outputs(model, images, "cpu", batch_size=batch_size)["features"].astype(np.float32)


def _geometry(df: pd.DataFrame, rows: np.ndarray, size: int, cfg: TrainConfig):
    from deepgen.train.data import _crop_geometry

    boxes, lms = [], []
    for r in rows:
        box = df["box"].iat[r] if "box" in df.columns else None
        pts = df["landmarks"].iat[r] if "landmarks" in df.columns else None
        b, p = _crop_geometry(box, pts, size, cfg.crop_margin, aligned=cfg.crop_align)
        boxes.append(b)
        lms.append(p)
    return boxes, lms


def build_clip_cache(model, df: pd.DataFrame, cfg: TrainConfig, rng: np.random.Generator
                     ) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Per-frame embeddings of every training clip and ``temporal_fakes`` pseudo-fakes per real clip:
    (list of (L, d) arrays, labels, number of pseudo-fakes)."""
    from deepgen.augment import perturb, temporal_blend
    from deepgen.inference import clip_groups
    from deepgen.train.data import decode_image

    clips = clip_groups(df, cfg.model.clip_len)
    images = [decode_image(b) for b in df["image"]]
    labels = df["label"].to_numpy(np.int64)
    media = df["media_id"].to_numpy()
    seqs_imgs, seq_labels = [], []
    reals = [c for c in clips if labels[c[0]] == 0]
    n_fake = 0
    for rows in clips:
        seqs_imgs.append([images[r] for r in rows])
        seq_labels.append(int(labels[rows[0]]))
        if labels[rows[0]] != 0:
            continue
        frames = [images[r] for r in rows]
        boxes, lms = _geometry(df, rows, frames[0].shape[0], cfg)
        for k in range(cfg.temporal_fakes):
            others = None
            donors = [c for c in reals if len(c) >= len(rows) and media[c[0]] != media[rows[0]]]
            if k % 2 == 1 and donors:  # every other pseudo-fake blends in another face (Face X-ray style)
                d = donors[int(rng.integers(len(donors)))]
                others = [images[r] for r in d[: len(rows)]]
            fake, _ = temporal_blend(frames, rng, cfg.temporal_drift, lms, boxes, others)
            seqs_imgs.append([perturb(f, cfg.perturb, rng) for f in fake])
            seq_labels.append(1)
            n_fake += 1
    flat = [im for seq in seqs_imgs for im in seq]
    feats = _embed(model, flat)
    out, i = [], 0
    for seq in seqs_imgs:
        out.append(feats[i : i + len(seq)])
        i += len(seq)
    return out, np.asarray(seq_labels, np.int64), n_fake


def fit_head(model, seqs: list[np.ndarray], labels: np.ndarray, cfg: TrainConfig) -> list[float]:
    """Train ``model.temporal`` (only) on cached clip embeddings; batches hold clips of one length."""
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 22])
    head = model.temporal
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.temporal_lr, weight_decay=cfg.weight_decay)
    by_len: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        by_len.setdefault(len(s), []).append(i)
    pos = max(1, int(labels.sum()))
    weight = torch.tensor(max(1.0, (len(labels) - pos) / pos))  # reals are outnumbered: weigh them up
    losses = []
    head.train()
    for _ in range(cfg.temporal_epochs):
        batches = [np.asarray(ix)[p[i : i + cfg.batch_size]] for ix in by_len.values()
                   for p in [rng.permutation(len(ix))] for i in range(0, len(ix), cfg.batch_size)]
        total = 0.0
        for j in rng.permutation(len(batches)):
            b = batches[j]
            x = torch.from_numpy(np.stack([seqs[i] for i in b]))
            y = torch.from_numpy(labels[b]).float()
            z = head(x)
            w = torch.where(y > 0, torch.ones_like(y), weight)
            loss = F.binary_cross_entropy_with_logits(z, y, weight=w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        losses.append(total / max(1, len(labels)))
    head.eval()
    return losses


def fit_fusion(model, val: pd.DataFrame, frame_temperature: float) -> dict:
    """Temperatures of the temporal and fused video logits, fitted on validation videos through the
    one inference path, and the validation AUC of frame, temporal and fused scores."""
    from deepgen.evaluation.calibration import fit_temperature
    from deepgen.evaluation.metrics import compute_metrics
    from deepgen.inference import TemporalFusion, aggregate_media, model_frame_outputs
    from deepgen.train.data import decode_image

    out = model_frame_outputs(model, [decode_image(b) for b in val["image"]], "cpu", batch_size=128)
    frames = val.drop(columns=["image"]).assign(logit=out["logit"], features=list(out["features"]))
    labels = frames.groupby("media_id", sort=True)["label"].first().to_numpy()
    frame_v = aggregate_media(frames, frame_temperature)
    raw = aggregate_media(frames, 1.0, TemporalFusion(model, np.inf, 1.0, 1.0))  # temporal part alone
    has = raw["temporal_score"].notna().to_numpy()
    if len(set(labels[has].tolist())) < 2:
        raise DeepgenError("the validation faces hold no clips of both real and fake videos; extract the val split "
                           "with --sampling clips as well.")
    zt = raw["logit"].to_numpy()[has]  # frame part off (T_frame = inf): the temporal video logit
    t_temporal = fit_temperature(zt, labels[has])
    fused = aggregate_media(frames, 1.0, TemporalFusion(model, frame_temperature, t_temporal, 1.0))
    t_fusion = fit_temperature(fused["logit"].to_numpy(), labels)

    def auc(scores, y=labels):
        return float(compute_metrics(y, scores)["auc"])

    return {"frame_temperature": float(frame_temperature), "temporal_temperature": float(t_temporal),
            "fusion_temperature": float(t_fusion), "val_videos": int(len(labels)),
            "val_auc_frame": auc(frame_v["score"].to_numpy()),
            "val_auc_temporal": auc(raw["temporal_score"].to_numpy()[has], labels[has]),
            "val_auc_fused": auc(fused["logit"].to_numpy())}


def train_temporal(model, faces: list[str], cfg: TrainConfig, frame_temperature: float,
                   quiet: bool = False) -> dict:
    """Train ``model``'s temporal head (its frame weights frozen) and fit the fusion; returns the
    ``temporal.json`` record the bundle keeps."""
    t0 = time.perf_counter()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.temporal.parameters():
        p.requires_grad_(True)
    model.eval()
    train, val = read_clip_faces(faces, cfg.seed)
    rng = np.random.default_rng([cfg.seed, 2222])
    seqs, labels, n_fake = build_clip_cache(model, train, cfg, rng)
    if len(set(labels.tolist())) < 2:
        raise DeepgenError(f"faces {', '.join(faces)} give no real training clips to make temporal pseudo-fakes "
                           "from; extract the train split with --sampling clips.")
    t_cache = time.perf_counter() - t0
    losses = fit_head(model, seqs, labels, cfg)
    rec = fit_fusion(model, val, frame_temperature)
    for p in model.parameters():
        p.requires_grad_(True)
    rec.update(clip_len=int(cfg.model.clip_len), train_clips=len(seqs), pseudo_fakes=n_fake,
               drift=float(cfg.temporal_drift), epochs=int(cfg.temporal_epochs), losses=losses,
               cache_seconds=t_cache, seconds=time.perf_counter() - t0)
    if not quiet:
        print(f"train: temporal head {len(seqs)} clips ({n_fake} pseudo-fakes), loss {losses[-1]:.4f}, val AUC "
              f"frame {rec['val_auc_frame']:.4f} temporal {rec['val_auc_temporal']:.4f} fused "
              f"{rec['val_auc_fused']:.4f} {rec['seconds']:.1f}s", file=sys.stderr, flush=True)
    return rec
