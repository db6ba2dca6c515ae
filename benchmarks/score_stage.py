"""Where the CPU scoring stage's model step spends its time, per video, and what two changes saved.

The fused CPU actor (``deepgen.scoring.pipeline.CpuStage``) scores one video's crops at a time: the
detector's forward pass, the domain check's second view (the frozen ImageNet Lite0's forward pass) and
two Mahalanobis distances (fine-tuned and frozen features). Measured in one process on one thread, CPU
seconds (``time.process_time``, best of ``--repeats``) per video of ``--crops`` crops:

- forward passes in batches of ``CPU_BATCH`` (what inference uses on a CPU) against one batch of 256
  (the GPU batch, which inference used on CPUs before);
- the Mahalanobis distance as ``deepgen.evaluation.ood`` computes it (one BLAS product) against the
  three-operand ``einsum`` it used before (same values to 1e-12);
- the whole model step (``ModelStage.score_media``: forward passes, domain check, aggregation, rows);
- once per actor: the domain check's Mahalanobis models, inverted by Cholesky against scikit-learn's
  ``LedoitWolf().precision_`` (an eigendecomposition).

    .venv/bin/python benchmarks/score_stage.py --bundle bench-realdf/runs-realdf/full-s0/bundle [--videos 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread, as a Ray actor with 1 CPU
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def best_of(fn, repeats: int) -> float:
    """Best CPU seconds of ``repeats`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def einsum_mahalanobis(model: dict, x: np.ndarray) -> np.ndarray:
    """The distance as it was computed before (reference for the timing and the values)."""
    c = np.asarray(x, dtype=np.float64) - model["mean"]
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", c, model["precision"], c), 0.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--crops", type=int, default=32, help="face crops per video (32 frames, one face)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from deepgen.evaluation.frozen import frozen_model
    from deepgen.evaluation.ood import mahalanobis_distance
    from deepgen.models.detector import CPU_BATCH
    from deepgen.scoring.pipeline import ModelStage

    stage = ModelStage(args.bundle, 0, False, 0)
    scorer = stage.scorer
    model = scorer.bundles[0].model.eval()
    size = int(model.cfg.image_size)
    rng = np.random.default_rng(0)
    n = args.videos * args.crops
    crops = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    x = model.preprocess(crops)
    rows = [{"media_id": f"v{i}", "uri": f"v{i}.mp4", "label": None, "dataset": None, "fingerprint": None,
             "status": "ok", "error": None, "n_frames": args.crops, "crops": [b""] * args.crops,
             "track_ids": [0] * args.crops, "frame_indices": list(range(args.crops)), "fps": 25.0,
             "clip_index": None, "clip_pos": None} for i in range(args.videos)]

    check = next((c for c in scorer.frozen_ood if c is not None), None)  # the domain check's frozen view
    frozen = frozen_model(check.size if check is not None else size).eval()
    inputs = {id(model): x, id(frozen): frozen.preprocess(crops)}  # each network at its own input size

    def forward(m, batch: int):
        with torch.no_grad():
            for i in range(0, n, batch):
                if m is model:
                    m(inputs[id(m)][i : i + batch])
                else:
                    m.features(inputs[id(m)][i : i + batch])
    feats = scorer.frame_outputs(list(crops[: args.crops]))["features"]
    maha = scorer.ood[0]._maha if scorer.ood else None
    per = args.videos
    table = [("detector forward", best_of(lambda: forward(model, 256), args.repeats) / per,
              best_of(lambda: forward(model, CPU_BATCH), args.repeats) / per)]
    table.append(("frozen ImageNet forward", best_of(lambda: forward(frozen, 256), args.repeats) / per,
                  best_of(lambda: forward(frozen, CPU_BATCH), args.repeats) / per))
    if maha is not None:
        before = best_of(lambda: einsum_mahalanobis(maha, feats), args.repeats)
        after = best_of(lambda: mahalanobis_distance(maha, feats), args.repeats)
        gap = float(np.max(np.abs(einsum_mahalanobis(maha, feats) - mahalanobis_distance(maha, feats))))
        table.append((f"Mahalanobis distance x 2 (max difference {gap:.1e})", 2 * before, 2 * after))
        # every actor builds the two Mahalanobis models of the domain check when it starts
        from sklearn.covariance import LedoitWolf

        from deepgen.evaluation.ood import mahalanobis_model

        refs = [o.reference for o in [*scorer.ood, *scorer.frozen_ood] if o is not None and o._maha is not None]
        table.append((f"actor start: {len(refs)} Mahalanobis models (s per actor)",
                      best_of(lambda: [LedoitWolf().fit(r.astype(np.float64)).precision_ for r in refs], args.repeats),
                      best_of(lambda: [mahalanobis_model(r) for r in refs], args.repeats)))
    images = list(crops)
    whole = best_of(lambda: stage.score_media(rows, images), args.repeats) / per
    print(f"{args.bundle}: {size}-px input, {args.videos} videos x {args.crops} crops, one thread, CPU s/video")
    print("| part | before | now | speed-up |\n|---|---|---|---|")
    for name, b, a in table:
        print(f"| {name} | {b:.4f} | {a:.4f} | {b / a:.2f}x |")
    print(f"| whole model step (`ModelStage.score_media`, now) |  | {whole:.4f} |  |")
    print(f"| sum of the per-video parts before |  | {sum(b for name, b, _ in table if 'start' not in name):.4f} |  |")


if __name__ == "__main__":
    main()
