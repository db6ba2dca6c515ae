"""Temporal evidence benchmark (issue 22): frame model vs temporal head vs their fusion, per forgery
family, on the same data and budget, over seeds.

Corpus (procedural, ``deepgen.synth``): real clips of N identities and, for each, two swaps of the
same donor with the same soft-mask swap (``swap_soft``): ``stable`` (no frame-to-frame change of the
alignment or colour correction) and ``flicker`` (a per-frame swap: alignment jitter of ``--jitter``
px and a per-frame colour-correction gain of +-``--gain`` in the forged region). Training and
validation see reals and ``stable`` fakes only (plus the recipes' pseudo-fakes); the test split
holds both families, so ``flicker`` measures whether temporal evidence generalizes to flicker no
training fake showed. One ``temporal`` training per seed gives all three rows: the frame part
(exactly the ``full`` recipe's frame model), the temporal head alone (``temporal_score``) and the
fused score, all through ``deepgen.inference``.

    .venv/bin/python benchmarks/temporal.py --ids 48 --seeds 0 1 2 [--out /tmp/temporal-bench]
    .venv/bin/python benchmarks/temporal.py --photos ../shared/data/real_faces --seeds 0 1 2 --out /tmp/tp
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAMILIES = ("stable", "flicker")


def make_corpus(root: str, ids: int, frames: int, size: int, jitter: float, gain: float, seed: int = 0,
                splits: tuple[int, int] = (24, 8)) -> str:
    """ROOT/real/KKK.mp4 and ROOT/fake/{stable,flicker}/KKK.mp4 and ROOT/corpus.csv (``deepgen manifest
    --dataset folder --root ROOT/corpus.csv``): the first ``splits[0]`` identities train, the next
    ``splits[1]`` validate, the rest test."""
    from dataclasses import replace

    from deepgen.synth import forgery as fg
    from deepgen.synth.encode import write_mp4
    from deepgen.synth.presets import STYLES, _Tree

    style = replace(STYLES["ffpp"], frames=frames, width=size, height=size)
    tree = _Tree("ffpp", root, seed, style)
    for k in range(ids):
        clip, donor = tree.clip(k, 0), tree.identity((k + 1) % ids)
        write_mp4(os.path.join(root, "real", f"{k:03d}.mp4"), clip.frames, style.fps, style.crf)
        fseed = int(tree.rng(5, k).integers(2**31))
        stable = fg.swap_soft(clip, donor, fseed, jitter=0.0)
        write_mp4(os.path.join(root, "fake", "stable", f"{k:03d}.mp4"), stable.frames, style.fps, style.crf)
        flick = fg.swap_soft(clip, donor, fseed, jitter=jitter)
        rng = np.random.default_rng([seed, k, 22])
        out = clip.frames.astype(np.float32).copy()
        for t in range(len(out)):  # a per-frame colour correction: the forged region's gain wobbles
            m = flick.masks[t].astype(np.float32)[..., None] / 255.0
            g = 1.0 + rng.uniform(-gain, gain, 3)
            out[t] = clip.frames[t] * (1 - m) + np.clip(flick.frames[t] * g, 0, 255) * m
        write_mp4(os.path.join(root, "fake", "flicker", f"{k:03d}.mp4"),
                  np.clip(out + 0.5, 0, 255).astype(np.uint8), style.fps, style.crf)
    lines = ["path,label,split,method,source_id"]
    for k in range(ids):
        split = "train" if k < splits[0] else "val" if k < splits[0] + splits[1] else "test"
        lines += [f"real/{k:03d}.mp4,0,{split},real,id{k}"]
        lines += [f"fake/{fam}/{k:03d}.mp4,1,{split},{fam},id{k}" for fam in FAMILIES]
    with open(os.path.join(root, "corpus.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return os.path.join(root, "corpus.csv")


def cli(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for attempt in range(6):  # an overloaded shared machine can time out Ray's startup (30 s, fixed)
        if subprocess.run([sys.executable, "-m", "deepgen.cli", *args], env=env).returncode == 0:
            return
        print(f"retrying `deepgen {args[0]}` ({attempt + 1}/6)", file=sys.stderr, flush=True)
    raise SystemExit(f"deepgen {args[0]} failed 6 times")


def training_faces(faces: str, out: str) -> str:
    """The faces table without ``flicker`` rows outside the test split (no training fake flickers)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from deepgen.faces.extract import read_faces

    t = read_faces(faces)
    keep = pc.or_(pc.equal(t["split"], "test"), pc.not_equal(t["method"], "flicker"))
    keep = pc.and_(keep, pc.not_equal(t["split"], "test"))
    os.makedirs(out, exist_ok=True)
    pq.write_table(t.filter(keep), os.path.join(out, "part-0.parquet"))
    return out


def photo_corpus(out: str, photos: str, videos: int, frames: int, clip_len: int, seed: int) -> str:
    """A real-face corpus (``deepgen synth --photos``, FF++ layout, people split train/val/test by
    identity with the seed) and its clip-sampled faces; every photo forgery family is per-frame
    (landmark jitter makes its boundary flicker). Returns the faces table."""
    from deepgen.synth.photos import render_photos

    root, faces = os.path.join(out, "corpus"), os.path.join(out, "faces")
    if not os.path.exists(os.path.join(faces, "extract.json")):
        render_photos(photos, "ffpp", root, videos=videos, seed=seed, frames=frames, overwrite=True)
        cli("manifest", "--dataset", "ffpp", "--root", root, "--out", os.path.join(out, "manifest.parquet"))
        cli("extract", "--manifest", os.path.join(out, "manifest.parquet"), "--out", faces, "--frames",
            str(frames), "--sampling", "clips", "--clip-len", str(clip_len), "--size", "96", "--overwrite", "--quiet")
    return faces


def family_rows(bundle_uri: str, faces: str, address: str | None = None, no_ray: bool = False,
                families: tuple[str, ...] = FAMILIES) -> dict:
    """Per family: test-video AUC of the frame part, the temporal head and the fusion (one inference path)."""
    import pyarrow.compute as pc

    from deepgen.evaluation.metrics import compute_metrics
    from deepgen.evaluation.run import score_frames, video_predictions
    from deepgen.faces.extract import read_faces
    from deepgen.inference import TemporalFusion
    from deepgen.models.bundle import load_bundle
    from deepgen.runtime import init_ray

    b = load_bundle(bundle_uri)
    t = read_faces(faces)
    t = t.filter(pc.equal(t["split"], "test"))
    if no_ray:  # what score_frames' actors compute, in this process
        from deepgen.faces.crop import decode_image
        from deepgen.inference import Scorer

        out = Scorer.load(bundle_uri, "cpu").frame_outputs([decode_image(x) for x in t["image"].to_pylist()])
        frames = t.drop_columns([c for c in ("image", "box", "landmarks") if c in t.column_names]).to_pandas()
        frames = frames.assign(logit=out["logit"], features=list(out["features"]))
    else:
        init_ray(address)
        frames = score_frames(t, bundle_uri, quiet=True)
    frame_v, _ = video_predictions(frames, b.temperature, [])
    fused_v, _ = video_predictions(frames, b.temperature, [], TemporalFusion.of(b))
    out = {}
    for fam in families:
        sel = (frame_v["label"] == 0) | (frame_v["method"] == fam) if fam != "all" else frame_v["label"] >= 0
        y = frame_v.loc[sel, "label"].to_numpy()
        out[fam] = {"frame": compute_metrics(y, frame_v.loc[sel, "score"].to_numpy())["auc"],
                    "temporal": compute_metrics(y, fused_v.loc[sel, "temporal_score"].to_numpy())["auc"],
                    "fusion": compute_metrics(y, fused_v.loc[sel, "score"].to_numpy())["auc"],
                    "videos": int(sel.sum())}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/temporal-bench")
    p.add_argument("--ids", type=int, default=48, help="identities (one real + one fake per family each)")
    p.add_argument("--train-ids", type=int, default=24)
    p.add_argument("--val-ids", type=int, default=8)
    p.add_argument("--frames", type=int, default=16, help="frames per rendered video (and sampled)")
    p.add_argument("--clip-len", type=int, default=8)
    p.add_argument("--size", type=int, default=160, help="rendered frame side")
    p.add_argument("--jitter", type=float, default=2.5, help="flicker: per-frame alignment jitter (px)")
    p.add_argument("--gain", type=float, default=0.06, help="flicker: per-frame colour gain amplitude")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--no-ray", action="store_true", help="train in this process (same stages) and score "
                   "without Ray: for a machine too loaded for Ray's start-up")
    p.add_argument("--address", default=None, help="a running Ray cluster (else each step starts an embedded one)")
    p.add_argument("--photos", default=None, help="real face photos (e.g. ../shared/data/real_faces): the real-face "
                   "rows, one corpus per seed with its own split of people, every family per-frame")
    p.add_argument("--videos", type=int, default=120, help="--photos: media items per corpus (half real)")
    args = p.parse_args()
    if args.photos:
        return photo_rows(args)
    out = args.out
    t0 = time.perf_counter()
    corpus = os.path.join(out, "corpus")
    if not os.path.exists(os.path.join(corpus, "corpus.csv")):
        make_corpus(corpus, args.ids, args.frames, args.size, args.jitter, args.gain,
                    splits=(args.train_ids, args.val_ids))
    faces = os.path.join(out, "faces")
    if not os.path.exists(os.path.join(faces, "extract.json")):
        cli("manifest", "--dataset", "folder", "--root", os.path.join(corpus, "corpus.csv"), "--name", "synthflicker",
            "--out", os.path.join(out, "manifest.parquet"))
        cli("extract", "--manifest", os.path.join(out, "manifest.parquet"), "--out", faces, "--frames",
            str(args.frames), "--sampling", "clips", "--clip-len", str(args.clip_len), "--size", "96",
            "--overwrite", "--quiet")
    t_data = time.perf_counter() - t0
    train_faces = training_faces(faces, os.path.join(out, "train_faces"))
    rows, seconds = {}, {}
    for seed in args.seeds:
        run = os.path.join(out, f"run-s{seed}")
        seconds[seed] = train_seed(args, train_faces, run, seed)
        rows[seed] = family_rows(os.path.join(run, "bundle"), faces, args.address, args.no_ray)
        print(json.dumps({seed: rows[seed]}), flush=True)
    report(args, out, rows, FAMILIES, {"train_seconds": seconds, "data_seconds": t_data})


def train_seed(args, train_faces: str, run: str, seed: int) -> float:
    """One ``temporal`` training (the packaged recipe; only seed, budget and sizes set); its seconds."""
    if os.path.exists(os.path.join(run, "bundle")):
        return 0.0
    t1 = time.perf_counter()
    os.makedirs(run, exist_ok=True)
    recipe = os.path.join(run, "recipe.yaml")
    with open(recipe, "w") as f:
        f.write(f"base: temporal\nseed: {seed}\nepochs: {args.epochs}\nmodel:\n"
                f"  image_size: {args.image_size}\n  clip_len: {args.clip_len}\n")
    if args.no_ray:
        train_in_process(recipe, train_faces, run)
    else:
        cli("train", "--config", recipe, "--faces", train_faces, "--out", run, "--workers", "1", "--quiet",
            *(["--address", args.address] if args.address else []))
    return time.perf_counter() - t1


def photo_rows(args) -> None:
    """The real-face rows: per seed a photo corpus (its own people split), a ``temporal`` training on its
    train/val people, and per family the test people's reals against that family's fakes."""
    from deepgen.synth.photos import PHOTO_FAMILIES

    families = ("all", *PHOTO_FAMILIES)
    rows, seconds = {}, {}
    for seed in args.seeds:
        work = os.path.join(args.out, f"photos-s{seed}")
        faces = photo_corpus(work, args.photos, args.videos, args.frames, args.clip_len, seed)
        train_faces = os.path.join(work, "train_faces")
        if not os.path.exists(os.path.join(train_faces, "part-0.parquet")):
            import pyarrow.compute as pc
            import pyarrow.parquet as pq

            from deepgen.faces.extract import read_faces

            t = read_faces(faces)
            os.makedirs(train_faces, exist_ok=True)
            pq.write_table(t.filter(pc.not_equal(t["split"], "test")), os.path.join(train_faces, "part-0.parquet"))
        seconds[seed] = train_seed(args, train_faces, os.path.join(work, "run"), seed)
        rows[seed] = family_rows(os.path.join(work, "run", "bundle"), faces, args.address, args.no_ray, families)
        print(json.dumps({seed: rows[seed]}), flush=True)
    report(args, args.out, rows, families, {"train_seconds": seconds}, "result-photos.json")


def report(args, out: str, rows: dict, families: tuple[str, ...], extra: dict, name: str = "result.json") -> None:
    """Mean ± std over seeds per (family, part); written to ``out/name`` and printed as a table."""
    table = {}
    for fam in families:
        for part in ("frame", "temporal", "fusion"):
            v = np.array([rows[s][fam][part] for s in args.seeds], float)
            table[f"{fam}/{part}"] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                                      "per_seed": v.round(4).tolist()}
    result = {"args": vars(args), "rows": table, **extra,
              "test_videos": {f: [rows[s][f]["videos"] for s in args.seeds] for f in families}}
    with open(os.path.join(out, name), "w") as f:
        json.dump(result, f, indent=2)
    print(f"{'family':14} {'row':9} {'AUC mean':>9} {'std':>7}  per seed")
    for k, v in table.items():
        fam, part = k.split("/")
        print(f"{fam:14} {part:9} {v['mean']:9.4f} {v['std']:7.4f}  {v['per_seed']}")



def train_in_process(recipe: str, train_faces: str, out: str) -> str:
    """The same two stages as ``deepgen train`` (pseudo-fakes, perturbations, every loss, EMA off-path
    aside), in this process without Ray: for a shared machine where Ray's 30 s start-up times out.
    Writes a bundle and returns its URI."""
    import dataclasses

    import torch

    from deepgen.models import create_detector
    from deepgen.models.bundle import save_bundle
    from deepgen.train.config import load_config
    from deepgen.train.data import build_train_data
    from deepgen.train.loop import (
        compute_losses,
        make_train_batch,
        model_config_for,
        weight_average,
    )
    from deepgen.train.temporal import train_temporal
    from deepgen.train.trainer import calibrate, crop_settings

    cfg = load_config(recipe)
    crops = crop_settings([train_faces])
    if crops:
        cfg = dataclasses.replace(cfg, crop_margin=float(crops["margin"]), crop_align=bool(crops["align"]))
    data = build_train_data([train_faces], cfg)
    torch.manual_seed(cfg.seed)
    frame = create_detector(model_config_for(cfg, len(data.domains), len(data.methods)))
    opt = torch.optim.AdamW(frame.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = weight_average(frame, cfg.ema_decay)
    sbi = data.methods.index("sbi") if "sbi" in data.methods else -1
    cols = {c: data.train[c].to_numpy(zero_copy_only=False) for c in data.train.column_names}
    for epoch in range(cfg.epochs):
        rng = np.random.default_rng([cfg.seed, epoch, 0])
        order = rng.permutation(data.train.num_rows)
        frame.train()
        for i in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            batch = {k: v[idx] for k, v in cols.items()}
            images, labels, doms, meths = make_train_batch(batch, cfg, rng, sbi)
            out = frame(frame.preprocess(images), grl_coefficient=0.0)
            loss = compute_losses(out, torch.from_numpy(labels), torch.from_numpy(doms), torch.from_numpy(meths),
                                  cfg)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(frame)
    scored = frame if ema is None else ema.module
    model = create_detector(model_config_for(cfg, len(data.domains), len(data.methods), frame_stage=False))
    model.load_state_dict(scored.state_dict(), strict=False)
    model.eval()
    from deepgen.inference import model_frame_outputs
    from deepgen.train.data import decode_image

    val = data.val
    o = model_frame_outputs(model, [decode_image(b) for b in val["image"].to_pylist()], "cpu", batch_size=128)
    _, temperature, domain_t = calibrate(model, o["logit"], val["label"].to_numpy(), val["dataset"].to_numpy(),
                                         data.val_datasets, val["video"].to_numpy(), val["track"].to_numpy(),
                                         cfg.balanced_threshold)
    rec = train_temporal(model, [train_faces], cfg, temperature)
    uri = os.path.join(out, "bundle")
    save_bundle(uri, model, recipe=cfg.to_dict(), temperature=temperature, domain_temperatures=domain_t,
                reference=o["features"][:256], datasets={"train": data.domains}, extras={"temporal": rec},
                overwrite=True)
    return uri


if __name__ == "__main__":
    main()
