"""``clips`` against ``uniform`` sampling: the same bundles score the same videos sampled both ways.

Three sets of videos, each extracted twice with the same frame budget (``--frames``), once spread
evenly (``uniform``) and once as runs of ``--clip-len`` consecutive frames (``clips``):

- ``real_deepfakes``: the videos of ``../shared/data/real_deepfakes`` (its face crops are images, which
  both samplings read alike, so they are left out);
- ``photos``: a photo-swap corpus (FF++ layout) rendered from the shared photo folders;
- ``procedural``: the Celeb-DF-like procedural preset (drawn faces).

Every bundle passed is one seed; the table gives each sampling's video AUC and real videos flagged
(mean ± std over bundles), and the paired difference. A difference no larger than the spread over
bundles is "no measurable difference".
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from deepgen.errors import DeepgenError

SAMPLINGS = ("uniform", "clips")
THRESHOLD = 0.5  # the shipped threshold


def _render_photos(photos: list[str], videos: int, frames: int, seed: int, log) -> Callable[[str, str], None]:
    def render(root: str, manifest: str) -> None:
        from deepgen.datasets import write_manifest
        from deepgen.experiments.real import same_person
        from deepgen.synth.photos import render_photos

        render_photos(photos, "ffpp", root, videos=videos, seed=seed, frames=frames, overwrite=True, log=log,
                      same_person=same_person(photos))
        write_manifest("ffpp", root, manifest)
    return render


def _render_procedural(videos: int, frames: int, seed: int) -> Callable[[str, str], None]:
    def render(root: str, manifest: str) -> None:
        from deepgen.datasets import write_manifest
        from deepgen.synth import render_preset

        render_preset("celebdf", root, videos=videos, seed=seed, frames=frames, overwrite=True)
        write_manifest("celebdf", root, manifest)
    return render


def _real_videos(root: str) -> Callable[[str, str], None]:
    def render(_root: str, manifest: str) -> None:
        import pyarrow.compute as pc

        from deepgen.experiments.realdf import real_deepfake_manifest
        from deepgen.storage import write_table

        t = real_deepfake_manifest(root)
        write_table(t.filter(pc.equal(t["media_type"], "video")), manifest)
    return render


def sampled_faces(out: str, name: str, stamp: dict, render: Callable[[str, str], None], frames: int, clip_len: int,
                  crop_size: int, log: Callable[[str], None]) -> dict[str, str]:
    """Render (or reuse) corpus ``name`` and extract its faces once per sampling; sampling -> faces folder."""
    from deepgen.experiments.corpora import read_stamp, write_stamp
    from deepgen.faces.extract import extract_faces
    from deepgen.storage import table_complete

    root = os.path.join(out, "data", name)
    manifest = os.path.join(out, "manifests", f"{name}.parquet")
    if not (os.path.exists(manifest) and read_stamp(root) == stamp):
        os.makedirs(root, exist_ok=True)
        os.makedirs(os.path.dirname(manifest), exist_ok=True)
        render(root, manifest)
        write_stamp(root, stamp)
    faces = {}
    for sampling in SAMPLINGS:
        fdir = os.path.join(out, f"faces-{crop_size}-{sampling}", name)
        want = {**stamp, "sampling": sampling, "frames": frames, "clip_len": clip_len}
        if not table_complete(fdir) or read_stamp(fdir) != want:
            t = time.perf_counter()
            s = extract_faces(manifest, fdir, frames=frames, size=crop_size, overwrite=True, quiet=True,
                              sampling=sampling, clip_len=clip_len)
            write_stamp(fdir, want)
            log(f"  {name:15s} {sampling:7s} {s['media']} media, {s['faces_written']} faces, {s['by_status']} "
                f"({time.perf_counter() - t:.0f}s)")
        faces[sampling] = fdir
    return faces


def _crops(fdir: str, source: str) -> pd.DataFrame:
    from deepgen.faces.crop import decode_image
    from deepgen.faces.extract import read_faces

    faces = read_faces(fdir)
    df = faces.drop_columns(["image"]).to_pandas()
    df["source"] = source
    df["crop"] = [decode_image(b) for b in faces["image"].to_pylist()]
    return df


def video_metrics(items: pd.DataFrame) -> dict:
    """Video AUC and the share of real videos at or above the shipped threshold."""
    from sklearn.metrics import roc_auc_score

    y, s = items["label"].to_numpy(int), items["score"].to_numpy(float)
    return {"videos": len(y), "real": int((y == 0).sum()), "fake": int((y == 1).sum()),
            "auc": float(roc_auc_score(y, s)) if len(set(y)) == 2 else float("nan"),
            "real_flagged": float((s[y == 0] >= THRESHOLD).mean()) if (y == 0).any() else float("nan")}


def compare_sampling(out: str, bundles: list[str], frames: int = 32, clip_len: int = 8, videos: int = 60,
                     video_frames: int = 96, photos: list[str] | None = None, real_deepfakes: str | None = None,
                     crop_size: int = 96, seed: int = 1000, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Score every set's videos, sampled both ways, with every bundle; one row per (set, bundle, sampling)."""
    from deepgen.experiments.real import default_photos, photo_folders
    from deepgen.experiments.realdf import default_real_deepfakes, score_items
    from deepgen.inference import load_bundles

    if not bundles:
        raise DeepgenError("no --bundle given; pass one trained bundle per seed, e.g. --bundle run-s0/bundle.")
    loaded = load_bundles(bundles)
    sets = {"procedural": ({"preset": "celebdf", "videos": videos, "frames": video_frames, "seed": seed},
                           _render_procedural(videos, video_frames, seed))}
    photos = photo_folders(photos) or default_photos()
    if photos:
        sets["photos"] = ({"photos": [os.path.abspath(p) for p in photos], "videos": videos, "frames": video_frames,
                           "seed": seed}, _render_photos(photos, videos, video_frames, seed, log))
    root = real_deepfakes or default_real_deepfakes()
    if root:
        sets["real_deepfakes"] = ({"real_deepfakes": os.path.abspath(root)}, _real_videos(root))
    log(f"sets: {', '.join(sets)}; {frames} frames a video (clips of {clip_len}); {len(bundles)} bundle(s)")
    rows = []
    for name, (stamp, render) in sets.items():
        faces = sampled_faces(out, name, stamp, render, frames, clip_len, crop_size, log)
        for sampling, fdir in faces.items():
            df = _crops(fdir, name)
            for b, (path, bundle) in enumerate(zip(bundles, loaded)):
                m = video_metrics(score_items(bundle, df))
                rows.append({"set": name, "sampling": sampling, "bundle": b, "path": path,
                             "faces_per_video": len(df) / max(1, df["media_id"].nunique()), **m})
                log(f"  {name:15s} {sampling:7s} bundle {b}: AUC {m['auc']:.3f}, reals flagged "
                    f"{m['real_flagged']:.2f}")
    return pd.DataFrame(rows)


def summarize_sampling(raw: pd.DataFrame) -> pd.DataFrame:
    """Per set: each sampling's AUC and reals flagged (mean ± std over bundles), the paired AUC difference
    and whether it lies within the spread over bundles."""
    def ms(v) -> str:
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        return f"{v.mean():.3f} ± {v.std():.3f}" if len(v) else ""

    out = []
    for name, g in raw.groupby("set", sort=False):
        u = g[g.sampling == "uniform"].sort_values("bundle")
        c = g[g.sampling == "clips"].sort_values("bundle")
        d = c["auc"].to_numpy(float) - u["auc"].to_numpy(float)
        spread = max(float(np.nanstd(u["auc"])), float(np.nanstd(c["auc"])))
        out.append({"set": name, "videos": f"{u['real'].iloc[0]} real / {u['fake'].iloc[0]} fake",
                    "bundles": len(u), "uniform AUC": ms(u["auc"]), "clips AUC": ms(c["auc"]),
                    "clips − uniform": ms(d),
                    "within spread": "yes" if abs(np.nanmean(d)) <= spread else "no",
                    "reals flagged uniform": ms(u["real_flagged"]), "reals flagged clips": ms(c["real_flagged"]),
                    "faces/video uniform / clips": f"{u['faces_per_video'].mean():.1f} / "
                                                   f"{c['faces_per_video'].mean():.1f}"})
    return pd.DataFrame(out)
