"""Training throughput: the Ray Train loop (1 worker) vs a plain PyTorch loop on the same data.

Both loops do the same work per batch (JPEG decode, pseudo-fakes and perturbations from the recipe,
forward, all losses, backward, optimizer step) with one CPU thread; the Ray side also streams its
shard through Ray Data. samples/s are averaged over the epochs after the first (warm-up), as
measured inside the training loop; end-to-end wall time (Ray/worker start-up, validation,
checkpoints) is printed beside it.

    python benchmarks/train.py --config full --faces-per-class 800 --epochs 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def plain_loop(cfg, train_table, domains: list[str], methods: list[str], epochs: int) -> list[float]:
    """Single-process PyTorch loop over the same rows; returns samples/s per epoch."""
    import torch

    from deepgen.models import create_detector, dann_coefficient
    from deepgen.train.data import make_train_batch
    from deepgen.train.loop import compute_losses, model_config_for

    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    model = create_detector(model_config_for(cfg, len(domains), len(methods)))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    cols = {c: train_table[c].to_numpy(zero_copy_only=False) for c in train_table.column_names}
    n = train_table.num_rows
    sbi_method = methods.index("sbi") if "sbi" in methods else -1
    steps = n // cfg.batch_size
    rates = []
    for epoch in range(epochs):
        model.train()
        rng = np.random.default_rng([cfg.seed, epoch, 0])
        order = rng.permutation(n)
        t0, seen = time.perf_counter(), 0
        for step in range(steps):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            batch = {k: v[idx] for k, v in cols.items()}
            images, labels, doms, meths = make_train_batch(batch, cfg, rng, sbi_method)
            x = model.preprocess(images)
            coef = dann_coefficient((epoch * steps + step) / (steps * epochs), cfg.grl_gamma)
            out = model(x, grl_coefficient=coef)
            losses = compute_losses(out, torch.from_numpy(labels), torch.from_numpy(doms),
                                    torch.from_numpy(meths), cfg)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            seen += len(images)
        rates.append(seen / (time.perf_counter() - t0))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="full")
    parser.add_argument("--faces-per-class", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=0, help="model input side (0: the recipe's own)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import ray

    from deepgen.testing.toyfaces import write_toy_faces
    from deepgen.train import load_config, train
    from deepgen.train.data import build_train_data

    overrides = {"epochs": args.epochs, **({"model.image_size": args.image_size} if args.image_size else {})}
    cfg = load_config(args.config, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        faces = write_toy_faces(os.path.join(tmp, "faces.parquet"), n_per_class=args.faces_per_class, seed=0)
        data = build_train_data([faces], cfg)

        t0 = time.perf_counter()
        plain = plain_loop(cfg, data.train, data.domains, data.methods, args.epochs)
        plain_wall = time.perf_counter() - t0

        ray.init(num_cpus=2, object_store_memory=256 * 2**20, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        t0 = time.perf_counter()
        result = train(cfg, [faces], os.path.join(tmp, "run"), workers=1)
        ray_wall = time.perf_counter() - t0
        ray.shutdown()
    ray_rates = [h["train_samples_per_s"] for h in result["history"]]
    p, r = float(np.mean(plain[1:] or plain)), float(np.mean(ray_rates[1:] or ray_rates))
    print(f"recipe {cfg.name}, backbone {cfg.model.backbone} @ {cfg.model.image_size}px, batch {cfg.batch_size}, "
          f"{data.train.num_rows} training faces, {args.epochs} epochs, 1 thread each")
    print(f"{'loop':<22}{'samples/s (epochs 2+)':>24}{'per epoch':>36}{'wall s':>10}")
    print(f"{'plain PyTorch':<22}{p:>24.1f}{str([round(x) for x in plain]):>36}{plain_wall:>10.1f}")
    print(f"{'Ray Train, 1 worker':<22}{r:>24.1f}{str([round(x) for x in ray_rates]):>36}{ray_wall:>10.1f}")
    print(f"ratio Ray/plain: {r / p:.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
