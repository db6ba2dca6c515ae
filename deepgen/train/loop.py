"""The per-worker training loop run by Ray Train: DDP, losses, per-epoch validation, checkpoints.

Every rank reports the same validation metrics (logits are all-gathered before computing AUC);
rank 0 attaches the checkpoint (weights, optimizer, history, validation outputs). A restarted
worker group resumes from ``ray.train.get_checkpoint()``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from deepgen.artifacts.boundary import boundary_loss, boundary_target
from deepgen.errors import DeepgenError
from deepgen.models import ModelConfig, create_detector, dann_coefficient, supcon_loss
from deepgen.train.config import TrainConfig, load_config
from deepgen.train.data import decode_image, make_train_batch, validation_rows

STATE = "state.pt"
VAL_OUTPUTS = "val_outputs.npz"
HISTORY = "history.json"
MAX_VAL_FEATURES = 2048


def per_dataset_auc(labels: np.ndarray, scores: np.ndarray, datasets: np.ndarray, names: list[str],
                    heldout: list[str] = (), synthetic: np.ndarray | None = None) -> dict:
    """``val_auc_<name>`` per dataset, ``val_mean_auc`` over the trained-on datasets, the pooled
    ``val_auc`` of those, and ``heldout_mean_auc`` / ``heldout_min_auc`` over held-out datasets.

    With ``synthetic`` (pseudo-fake twins of the validation reals) a dataset with real fakes is scored
    on those alone and one without on its pseudo-fakes (:func:`validation_rows`); ``val_synthetic_auc``
    reports the reals against the pseudo-fakes apart.
    """
    from deepgen.evaluation.metrics import compute_metrics

    def auc(y, s):
        return compute_metrics(y, s)["auc"]

    extra = {}
    if synthetic is not None and np.any(synthetic):
        synthetic = np.asarray(synthetic, bool)
        trained = ~np.isin(datasets, [i for i, n in enumerate(names) if n in heldout])
        pair = trained & (synthetic | (labels == 0))
        extra["val_synthetic_auc"] = float(auc(labels[pair], scores[pair]))
        main = validation_rows(labels, synthetic, datasets)
        labels, scores, datasets = labels[main], scores[main], datasets[main]
    out = {}
    for i, name in enumerate(names):
        m = datasets == i
        out[f"val_auc_{name}"] = float(auc(labels[m], scores[m])) if m.any() else float("nan")
    seen = [v for n, v in zip(names, out.values()) if n not in heldout and np.isfinite(v)]
    out["val_mean_auc"] = float(np.mean(seen)) if seen else float("nan")
    keep = ~np.isin(datasets, [i for i, n in enumerate(names) if n in heldout])
    out["val_auc"] = float(auc(labels[keep], scores[keep]))
    if heldout:
        held = [out[f"val_auc_{n}"] for n in heldout if np.isfinite(out[f"val_auc_{n}"])]
        out["heldout_mean_auc"] = float(np.mean(held)) if held else float("nan")
        out["heldout_min_auc"] = float(np.min(held)) if held else float("nan")
    return {**out, **extra}


def model_config_for(cfg: TrainConfig, n_domains: int, n_methods: int, frame_stage: bool = True) -> ModelConfig:
    """The model the recipe trains; a temporal recipe's frame stage trains the plain detector (its head
    comes second, :mod:`deepgen.train.temporal`), so ``frame_stage=False`` gives the full temporal model."""
    d = dict(vars(cfg.model))
    d.update(num_domains=max(1, n_domains), num_methods=max(1, n_methods))
    if frame_stage and d["arch"] == "temporal":
        d["arch"] = "detector"
    return ModelConfig(**d)


def boundary_training_targets(masks: list, labels: np.ndarray, size: tuple[int, int]
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Boundary-head targets (N, 1, h, w) and which rows the boundary loss uses (N,) bool.

    A pseudo-fake's target is its blend mask's boundary ``4 m (1 - m)`` resized to ``size``; a real
    face's is all zeros (nothing was blended). The datasets' own fakes carry no mask in the faces
    table, so their boundary is unknown: they are left out of the boundary loss (weight False).
    """
    h, w = size
    targets = np.zeros((len(labels), 1, h, w), np.float32)
    use = np.zeros(len(labels), bool)
    for i, (mask, y) in enumerate(zip(masks, labels)):
        if mask is not None:
            targets[i, 0] = boundary_target(mask, (h, w))
            use[i] = True
        elif int(y) == 0:
            use[i] = True
    return targets, use


def compute_losses(out: dict, labels: torch.Tensor, domains: torch.Tensor, methods: torch.Tensor,
                   cfg: TrainConfig, boundary_targets: torch.Tensor | None = None,
                   boundary_use: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Every loss term, always connected to its head so DDP sees each parameter used.

    With a boundary head, ``boundary_targets`` (N, 1, h, w) and ``boundary_use`` (N,) bool come from
    :func:`boundary_training_targets`; without them the boundary term is a connected zero.
    """
    cls = F.binary_cross_entropy_with_logits(out["logit"].float(), labels.float())
    dom = F.cross_entropy(out["domain_logits"].float(), domains)
    fake = methods >= 0
    meth_logits = out["method_logits"].float()
    meth = F.cross_entropy(meth_logits[fake], methods[fake]) if bool(fake.any()) else meth_logits.sum() * 0.0
    sup = supcon_loss(out["proj"], labels, cfg.supcon_temperature)
    total = cls + cfg.lambda_domain * dom + cfg.lambda_supcon * sup + cfg.lambda_method * meth
    losses = {"loss": total, "cls": cls, "domain": dom, "supcon": sup, "method": meth}
    if "boundary_logits" in out:
        b_logits = out["boundary_logits"].float()
        if boundary_targets is not None and boundary_use is not None and bool(boundary_use.any()):
            bnd = boundary_loss(b_logits[boundary_use], boundary_targets[boundary_use])
        else:
            bnd = b_logits.sum() * 0.0
        losses["boundary"] = bnd
        losses["loss"] = total + cfg.lambda_boundary * bnd
    return losses


def weight_average(model: torch.nn.Module, decay: float):
    """An exponential moving average of ``model``'s weights and buffers, or None when ``decay`` is 0.

    Averaging the weights along the trajectory (as SWAD does for domain generalization) lands in a
    flatter region of the loss than any single step, which transfers better to unseen datasets, and
    it steadies the per-epoch validation that picks the checkpoint. The decay warms up as
    ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so short runs are not dominated by the
    initial weights.
    """
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel

    @torch.no_grad()
    def ema(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        # called once per (device, dtype) group, so reading n costs one host sync per step, not per tensor
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        for a, c in zip(averaged, current):
            if a.is_floating_point():
                a.lerp_(c, 1.0 - d)
            else:  # integer buffers (BatchNorm's num_batches_tracked)
                a.copy_(a * d + c * (1.0 - d))

    return AveragedModel(model, multi_avg_fn=ema, use_buffers=True)


def _amp(device: torch.device, enabled: bool):
    """bf16 autocast where supported, else fp16 with a grad scaler; nothing on CPU."""
    if device.type != "cuda" or not enabled:
        return nullcontext, None
    if torch.cuda.is_bf16_supported():
        return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)), None
    return (lambda: torch.autocast("cuda", dtype=torch.float16)), torch.amp.GradScaler("cuda")


def _gather(obj):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def sync_buffers(model) -> None:
    """Copy rank 0's buffers (BatchNorm running stats) to every rank, so all ranks validate the saved model."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for buf in model.buffers():
            dist.broadcast(buf.data, src=0)


def evaluate_shard(model, shard, cfg: TrainConfig, device) -> dict[str, np.ndarray]:
    """Logits, features, labels, dataset, video and track ids of this rank's validation shard (the inference path)."""
    from deepgen.inference import model_frame_outputs

    cols: dict[str, list] = {k: [] for k in ("logits", "features", "labels", "datasets", "videos", "tracks",
                                             "synthetic")}
    for batch in shard.iter_batches(batch_size=max(cfg.batch_size, 64), batch_format="numpy"):
        out = model_frame_outputs(model, [decode_image(b) for b in batch["image"]], str(device))
        cols["logits"].append(out["logit"])
        cols["features"].append(out["features"])
        cols["labels"].append(batch["label"].astype(np.int64))
        cols["datasets"].append(batch["dataset"].astype(np.int64))
        cols["videos"].append(batch["video"].astype(np.int64))
        cols["tracks"].append(batch["track"].astype(np.int64))
        cols["synthetic"].append(batch["synthetic"].astype(bool))
    empty = {"logits": np.zeros(0, np.float64), "features": np.zeros((0, model.num_features), np.float32),
             "synthetic": np.zeros(0, bool)}
    return {k: np.concatenate(v) if v else empty.get(k, np.zeros(0, np.int64)) for k, v in cols.items()}


def load_resume_state(path: str) -> dict:
    """A Ray Train resume state, read with ``weights_only=True``: tensors and plain values only, so a
    tampered checkpoint in storage cannot run code; anything else is refused in one sentence."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for foreign objects, anything else for a broken file
        raise DeepgenError(f"resume state {path} holds more than tensors and plain values ({type(e).__name__}); "
                           "refusing to load it: delete that checkpoint or train with --overwrite.") from e


class _Worker:
    """One Ray Train rank's state: model (DDP-wrapped), optimizer, EMA, history; one method per step."""

    def __init__(self, loop_config: dict):
        import ray.train
        import ray.train.torch

        self.cfg = cfg = load_config(loop_config["cfg"])
        self.loop_config = loop_config
        domains, methods = loop_config["domains"], loop_config["methods"]
        self.sbi_method = methods.index("sbi") if "sbi" in methods else -1
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        torch.set_num_threads(max(1, int(loop_config.get("threads", 1))))
        self.device = ray.train.torch.get_device()
        torch.manual_seed(cfg.seed)
        self.base = create_detector(model_config_for(cfg, len(domains), len(methods)))
        self.opt = torch.optim.AdamW(self.base.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.start_epoch, self.history, self.resumed_from, state = 0, [], -1, {}
        ckpt = ray.train.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                state = load_resume_state(os.path.join(d, STATE))
            self.base.load_state_dict(state.get("train_model", state["model"]))
            self.opt.load_state_dict(state["optimizer"])
            self.start_epoch, self.history = state["epoch"] + 1, state["history"]
            self.resumed_from = state["epoch"]
        self.model = ray.train.torch.prepare_model(self.base)  # DDP over gloo (CPU) or NCCL (GPU)
        self.ema = weight_average(self.base, cfg.ema_decay)  # after prepare_model: on the training device
        if self.ema is not None and "ema_updates" in state:  # the checkpoint's "model" is the average
            self.ema.module.load_state_dict(state["model"])
            self.ema.n_averaged.fill_(state["ema_updates"])
        self.autocast, self.scaler = _amp(self.device, cfg.amp)
        self.steps_per_epoch = max(1, int(loop_config["train_rows"]) // self.world // cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs

    def step(self, batch: dict, rng: np.random.Generator, coef: float) -> dict[str, torch.Tensor]:
        """One optimizer step on a training batch: pseudo-fakes, perturbations, every loss term, EMA."""
        cfg, base, device = self.cfg, self.base, self.device
        images, labels, doms, meths, masks = make_train_batch(batch, cfg, rng, self.sbi_method, with_masks=True)
        x = base.preprocess(images).to(device, non_blocking=True)
        y = torch.from_numpy(labels).to(device)
        b_targets = b_use = None
        if base.boundary_size is not None:
            t, u = boundary_training_targets(masks, labels, base.boundary_size)
            b_targets, b_use = torch.from_numpy(t).to(device), torch.from_numpy(u).to(device)
        with self.autocast():
            out = self.model(x, grl_coefficient=coef)
        losses = compute_losses(out, y, torch.from_numpy(doms).to(device), torch.from_numpy(meths).to(device), cfg,
                                b_targets, b_use)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(losses["loss"]).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            losses["loss"].backward()
            self.opt.step()
        if self.ema is not None:
            self.ema.update_parameters(base)
        return losses

    def train_epoch(self, epoch: int, shard) -> dict:
        """One pass over this rank's shard; returns the mean losses, throughput and the last GRL coefficient."""
        cfg = self.cfg
        self.model.train()
        rng = np.random.default_rng([cfg.seed, epoch, self.rank])
        t0, n_seen, step, coef = time.perf_counter(), 0, 0, 0.0
        sums: dict[str, float] = {}
        for batch in shard.iter_batches(
            batch_size=cfg.batch_size, batch_format="numpy", drop_last=True,
            local_shuffle_buffer_size=4 * cfg.batch_size, local_shuffle_seed=int(rng.integers(1 << 31)),
        ):
            coef = dann_coefficient((epoch * self.steps_per_epoch + step) / self.total_steps, cfg.grl_gamma)
            for k, v in self.step(batch, rng, coef).items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n_seen += len(batch["label"])
            step += 1
        seconds = time.perf_counter() - t0
        return {**{f"train_{k}": v / max(step, 1) for k, v in sums.items()},
                "train_samples_per_s": n_seen * self.world / seconds if seconds > 0 else 0.0,
                "grl_coefficient": coef}

    def validate(self, shard) -> tuple[torch.nn.Module, list[dict]]:
        """Validate what is checkpointed (the EMA when on); returns it and every rank's outputs."""
        sync_buffers(self.base)  # DDP broadcasts buffers before each forward, so they drift after the last step
        scored = self.base if self.ema is None else self.ema.module
        if self.ema is not None:
            sync_buffers(self.ema.module)
        return scored, _gather(evaluate_shard(scored, shard, self.cfg, self.device))

    def report(self, epoch: int, metrics: dict, scored: torch.nn.Module, parts: list[dict]) -> None:
        """Every rank reports the metrics; rank 0 attaches the checkpoint (state, history, val outputs)."""
        import ray.train

        self.history.append(metrics)
        if self.rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, HISTORY), "w") as f:
                json.dump(self.history, f)
            saved = {"model": scored.state_dict(), "optimizer": self.opt.state_dict(), "epoch": epoch,
                     "history": self.history}
            if self.ema is not None:  # "model" is the average (the bundle's); resume also needs the raw weights
                saved.update(train_model=self.base.state_dict(), ema_updates=int(self.ema.n_averaged))
            torch.save(saved, os.path.join(tmp, STATE))
            logits = np.concatenate([p["logits"] for p in parts])
            labels = np.concatenate([p["labels"] for p in parts])
            dsets = np.concatenate([p["datasets"] for p in parts])
            feats = np.concatenate([p["features"] for p in parts])
            videos = np.concatenate([p["videos"] for p in parts])
            tracks = np.concatenate([p["tracks"] for p in parts])
            synthetic = np.concatenate([p["synthetic"] for p in parts])
            keep = np.sort(np.random.default_rng(self.cfg.seed).permutation(len(feats))[:MAX_VAL_FEATURES])
            np.savez(os.path.join(tmp, VAL_OUTPUTS), logits=logits, labels=labels, datasets=dsets, videos=videos,
                     tracks=tracks, synthetic=synthetic, features=feats[keep], feature_labels=labels[keep],
                     feature_datasets=dsets[keep], feature_videos=videos[keep])
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train worker entry point; ``loop_config`` holds the recipe and the head vocabularies."""
    import ray.train

    from deepgen.evaluation.calibration import sigmoid

    w = _Worker(loop_config)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    for epoch in range(w.start_epoch, w.cfg.epochs):
        train_metrics = w.train_epoch(epoch, train_shard)
        scored, parts = w.validate(val_shard)
        logits = np.concatenate([p["logits"] for p in parts])
        metrics = {
            "epoch": epoch, **train_metrics, "resumed_from_epoch": w.resumed_from,
            **per_dataset_auc(np.concatenate([p["labels"] for p in parts]), sigmoid(logits),
                              np.concatenate([p["datasets"] for p in parts]), loop_config["val_datasets"],
                              loop_config.get("heldout_datasets", []),
                              np.concatenate([p["synthetic"] for p in parts])),
        }
        w.report(epoch, metrics, scored, parts)
