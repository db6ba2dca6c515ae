"""Batch-scoring throughput and memory, in one run on one corpus.

Rows: (a) the seed-style loop, ``for video in dataset: model.predict(video)`` (cv2 decodes every
frame, Haar on the sampled ones, one model call per face); (b) the best single-process version
(GOP-skipping decode, size-hinted detection, one batched forward pass per group of videos);
(c) the Ray Data pipeline (``deepgen.scoring.score``) on all cores, in a fresh process, with peak
RSS of the driver and every Ray process at 1x and 4x corpus.

    .venv/bin/python benchmarks/score.py [--videos 12] [--frames 150] [--sample 32]
    # temporal head vs frame model (issue 22): the Ray pipeline only, --sampling clips, ratio in one run
    .venv/bin/python benchmarks/score.py --temporal --videos 8 --frames 48 --sample 16
    # GPU machine, 10 s 1080p clips:  --width 1920 --height 1080 --frames 250 --backbone efficientnet_b0 --image-size 224
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from extract import corpus_parser, cv2_sampled_frames, make_corpus, run_child, write_manifests  # noqa: E402

from deepgen.faces import ExtractConfig, crop_face, extract_media, get_detector  # noqa: E402
from deepgen.faces.crop import decode_image  # noqa: E402
from deepgen.faces.track import select_faces  # noqa: E402


def make_bundle(out: str, backbone: str, image_size: int) -> str:
    import torch

    from deepgen.models import ModelConfig, create_detector
    from deepgen.models.bundle import save_bundle

    torch.manual_seed(0)
    model = create_detector(ModelConfig(backbone=backbone, image_size=image_size))
    save_bundle(out, model, reference=np.random.default_rng(0).normal(size=(64, model.num_features)))
    return out


def seed_loop(rows, bundle, cfg: ExtractConfig) -> int:
    """for video in dataset: model.predict(video) -- every frame decoded, one forward pass per face."""
    det = get_detector("haar")
    for row in rows:
        frames = cv2_sampled_frames(row["uri"], cfg.frames, cfg.max_side)
        logits = [bundle.predict([crop_face(frames[t], d.box, cfg.size, cfg.margin)])["logit"][0]
                  for t, d in select_faces(det.detect(frames))]
        float(np.mean(logits)) if logits else None
    return len(rows)


def batched(rows, bundle, cfg: ExtractConfig, group: int = 8) -> int:
    """extract_media per video, then one forward pass over all crops of ``group`` videos."""
    det = get_detector("haar")
    for i in range(0, len(rows), group):
        crops = []
        for row in rows[i : i + group]:
            faces, _ = extract_media(row, cfg, det)
            crops += [decode_image(f["image"]) for f in faces]
        if crops:
            bundle.predict(crops, batch_size=256)
    return len(rows)


def batched_one_thread(rows, bundle, cfg: ExtractConfig) -> int:
    """The batched version as one Ray actor runs it: one OpenCV thread, one torch thread."""
    import cv2
    import torch

    before = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    try:
        return batched(rows, bundle, cfg)
    finally:
        cv2.setNumThreads(before[0])
        torch.set_num_threads(before[1])


RAY_CHILD = r"""
import json, os, sys, threading, time
sys.path.insert(0, sys.argv[5]); sys.path.insert(0, os.path.join(sys.argv[5], "benchmarks"))
from extract import tree_rss
peak = {"total": 0}; stop = False
def poll():
    while not stop:
        peak["total"] = max(peak["total"], tree_rss(os.getpid())[0]); time.sleep(0.1)
th = threading.Thread(target=poll, daemon=True); th.start()
from deepgen.runtime import init_ray
from deepgen.scoring import ScoreConfig, score
t = time.perf_counter(); init_ray(None); started = time.perf_counter() - t
cfg = ScoreConfig(frames=int(sys.argv[4]), sampling=sys.argv[6], clip_len=int(sys.argv[7]))
s = score(sys.argv[1], sys.argv[2], sys.argv[3], cfg, overwrite=True)
stop = True; th.join()
s.update(peak_total_mb=peak["total"] / 2**20, ray_start=started)
print("RESULT " + json.dumps(s))
"""


def ray_run(manifest: str, bundle: str, out: str, frames: int, sampling: str = "uniform", clip_len: int = 8) -> dict:
    return run_child(RAY_CHILD, manifest, bundle, out, str(frames), str(ROOT), sampling, str(clip_len))


def temporal_bundles(tmp: Path, backbone: str, image_size: int, clip_len: int) -> tuple[str, str]:
    """A frame bundle and a temporal bundle with the same frame weights (same seed, same builder order)."""
    import torch

    from deepgen.models import ModelConfig, create_detector
    from deepgen.models.bundle import save_bundle

    out = []
    for arch in ("detector", "temporal"):
        torch.manual_seed(0)
        model = create_detector(ModelConfig(arch=arch, backbone=backbone, image_size=image_size, clip_len=clip_len))
        rec = {"temporal": {"frame_temperature": 1.0, "temporal_temperature": 1.0, "fusion_temperature": 1.0}}
        save_bundle(str(tmp / arch), model, reference=np.random.default_rng(0).normal(size=(64, model.num_features)),
                    extras=rec if arch == "temporal" else None)
        out.append(str(tmp / arch))
    return out[0], out[1]


def temporal_rows(a, tmp: Path) -> None:
    """Ray pipeline throughput, clips sampling: frame model vs temporal bundle, alternated, 2 runs each."""
    rows = make_corpus(tmp, a.videos, a.frames, a.width, a.height)
    m1, m4 = write_manifests(rows, tmp)
    frame, temporal = temporal_bundles(tmp, a.backbone, a.image_size, a.clip_len)
    print(f"corpus: {4 * a.videos} clips, {a.frames} frames {a.width}x{a.height} H.264, {a.sample} sampled as clips "
          f"of {a.clip_len}; model {a.backbone} @ {a.image_size}px; cores {os.cpu_count()}")
    speed: dict[str, list[float]] = {"frame": [], "temporal": []}
    for i in range(2):
        for name, uri in (("frame", frame), ("temporal", temporal)) if i == 0 else (("temporal", temporal),
                                                                                     ("frame", frame)):
            r = ray_run(m4, uri, str(tmp / f"t-{name}-{i}"), a.sample, "clips", a.clip_len)
            speed[name].append(r["media"] / r["seconds"])
            print(f"{name:9s} run {i}: {r['media']} videos {r['seconds']:.2f}s {speed[name][-1]:.2f} videos/s")
    f, t = float(np.mean(speed["frame"])), float(np.mean(speed["temporal"]))
    print(f"temporal / frame throughput: {t / f:.3f} (goal >= 0.9); load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    ap = corpus_parser(__doc__)
    ap.add_argument("--backbone", default="test_efficientnet")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--temporal", action="store_true", help="only: temporal bundle vs frame model, clips sampling")
    ap.add_argument("--clip-len", type=int, default=8)
    a = ap.parse_args()
    from deepgen.models.bundle import load_bundle

    with tempfile.TemporaryDirectory(prefix="deepgen-score-bench-") as tmp:
        tmp = Path(tmp)
        if a.temporal:
            return temporal_rows(a, tmp)
        rows = make_corpus(tmp, a.videos, a.frames, a.width, a.height)
        m1, m4 = write_manifests(rows, tmp)
        bundle_uri = make_bundle(str(tmp / "bundle"), a.backbone, a.image_size)
        bundle = load_bundle(bundle_uri)
        cfg = ExtractConfig(frames=a.sample, size=a.image_size)
        print(f"corpus: {a.videos} clips, {a.frames} frames {a.width}x{a.height} H.264, {a.sample} sampled; "
              f"model {a.backbone} @ {a.image_size}px; cores {os.cpu_count()}")
        seed_loop(rows[:1], bundle, cfg)
        batched(rows[:1], bundle, cfg)
        results = []
        single = (("(a) seed loop: model.predict(video)", seed_loop), ("(b) best single process, batched", batched),
                  ("(b1) same, one thread", batched_one_thread))
        for name, fn in single:
            t = time.perf_counter()
            n = fn(rows, bundle, cfg)
            results.append((name, time.perf_counter() - t, n))
        r1 = ray_run(m1, bundle_uri, str(tmp / "s1"), a.sample)
        r4 = ray_run(m4, bundle_uri, str(tmp / "s4"), a.sample)
        results += [("(c) Ray Data pipeline 1x", r1["seconds"], r1["media"]),
                    ("(c) Ray Data pipeline 4x", r4["seconds"], r4["media"])]
        marginal = (r4["media"] - r1["media"]) / max(r4["seconds"] - r1["seconds"], 1e-9)
        print(f"\n{'pipeline':40s} {'sec':>8s} {'videos':>7s} {'videos/s':>9s}")
        for name, dt, n in results:
            print(f"{name:40s} {dt:8.2f} {n:7d} {n / dt:9.2f}")
        best, one = results[1][2] / results[1][1], results[2][2] / results[2][1]
        print(f"\nRay 4x / best single process: {r4['media'] / r4['seconds'] / best:.2f}x, / one thread: "
              f"{r4['media'] / r4['seconds'] / one:.2f}x (target >= 0.8 x {os.cpu_count()} cores = "
              f"{0.8 * os.cpu_count():.1f}x)")
        print(f"Ray steady state (extra videos of 4x over 1x / extra seconds): {marginal:.2f} videos/s = "
              f"{marginal / best:.2f}x best single process, {marginal / one:.2f}x one thread")
        print(f"peak RSS (driver + all Ray processes): 1x {r1['peak_total_mb']:.0f} MB, 4x {r4['peak_total_mb']:.0f} MB,"
              f" ratio {r4['peak_total_mb'] / r1['peak_total_mb']:.2f}")
        print(f"embedded Ray start: {r4['ray_start']:.1f}s (not in the pipeline times); load average "
              f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
