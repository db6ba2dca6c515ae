"""``train()``: validate the recipe and data, run Ray Train's TorchTrainer, write the checkpoint bundle."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from deepgen import storage
from deepgen.errors import DeepgenError
from deepgen.train.config import TrainConfig, load_config
from deepgen.train.data import build_train_data, check_faces_paths, validation_rows
from deepgen.train.loop import (
    HISTORY,
    STATE,
    VAL_OUTPUTS,
    load_resume_state,
    model_config_for,
    train_loop_per_worker,
)

BUNDLE_DIR = "bundle"
CROP_KEYS = ("detector", "size", "margin", "align")
CHECKPOINTS_DIR = "checkpoints"
OOD_REFERENCE = 1024  # training faces whose features the out-of-domain check measures distances to


def _blocks(table: pa.Table, rows_per_block: int):
    import ray.data

    n = max(1, table.num_rows)
    return ray.data.from_arrow([table.slice(i, rows_per_block) for i in range(0, n, rows_per_block)])


def _epoch_progress_class():
    """A Ray Train ``UserCallback`` (runs in the Train controller) that sends one line per epoch to a queue."""
    import ray.train

    class EpochProgress(ray.train.UserCallback):
        def __init__(self, queue, epochs: int):
            self.queue, self.epochs, self.last = queue, epochs, time.time()

        def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
            m = metrics[0] if metrics else {}
            now = time.time()
            loss, auc = float(m.get("train_loss", math.nan)), float(m.get("val_mean_auc", math.nan))
            line = (f"train: epoch {int(m.get('epoch', -1)) + 1}/{self.epochs} loss {loss:.4f} "
                    f"val mean AUC {auc:.4f} {now - self.last:.1f}s")
            self.last = now
            try:
                self.queue.put_nowait(line)
            except Exception:  # progress must never fail a training run
                pass

    return EpochProgress


class _EpochLines:
    """Driver side of the epoch progress: a queue actor the callback fills, a thread that prints it."""

    def __init__(self, epochs: int, log: Callable[[str], None] | None = None):
        from ray.util.queue import Queue

        self.queue = Queue(actor_options={"num_cpus": 0})
        self.callback = _epoch_progress_class()(self.queue, epochs)
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        from ray.util.queue import Empty

        while True:
            try:
                self.log(self.queue.get(timeout=0.5))
            except Empty:
                if self.stop.is_set():
                    return
            except Exception:
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        try:
            self.queue.shutdown()
        except Exception:
            pass


def calibrate(model, logits: np.ndarray, labels: np.ndarray, datasets: np.ndarray, names: list[str],
              videos: np.ndarray | None, tracks: np.ndarray | None, balanced: bool = True
              ) -> tuple[float, float, dict[str, float]]:
    """Calibrate ``model`` on its validation frame logits: returns (offset, temperature, per-dataset temperatures).

    With ``balanced`` the class-balanced decision offset of the validation *video* logits
    (:func:`deepgen.evaluation.calibration.fit_offset`) is folded into the classifier's bias, so a
    calibrated score of 0.5 is the point where reals and fakes are equally likely: a temperature only
    rescales logits and cannot move a detector whose every logit is positive. The temperatures are
    then fitted on the shifted logits (:func:`fit_calibration`).
    """
    from deepgen.evaluation.calibration import fit_offset

    if videos is not None and len(videos):  # aggregated once: a constant shift commutes with it
        logits, labels, datasets = video_logits(logits, labels, datasets, videos, tracks)
    offset = fit_offset(logits, labels) if balanced else 0.0
    if balanced:
        model.shift_logit(offset)
    temperature, domain = fit_calibration(logits - offset, labels, datasets, names)
    return offset, temperature, domain


def fit_calibration(logits: np.ndarray, labels: np.ndarray, datasets: np.ndarray, names: list[str],
                    videos: np.ndarray | None = None, tracks: np.ndarray | None = None
                    ) -> tuple[float, dict[str, float]]:
    """Temperature minimizing validation NLL, globally and per validation dataset.

    With ``videos`` (and ``tracks``) the fit is on video logits, aggregated exactly as inference
    scores a video (max over tracks of the track's mean frame logit), since the score a user reads
    is a video's; a frame-level temperature leaves those averaged logits under-confident.
    """
    from deepgen.evaluation.calibration import fit_temperatures_by_domain

    if videos is not None and len(videos):
        logits, labels, datasets = video_logits(logits, labels, datasets, videos, tracks)
    temps = fit_temperatures_by_domain(logits, labels, np.asarray([names[i] for i in datasets]))
    global_t = float(temps.pop("__global__"))
    return global_t, {str(k): float(v) for k, v in temps.items()}


def video_logits(logits: np.ndarray, labels: np.ndarray, datasets: np.ndarray, videos: np.ndarray,
                 tracks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame rows -> per-video (logit, label, dataset) through :func:`deepgen.inference.aggregate_media`."""
    import pandas as pd

    from deepgen.inference import aggregate_media

    frames = pd.DataFrame({"media_id": videos, "logit": logits,
                           "track_id": np.zeros(len(videos), np.int64) if tracks is None else tracks})
    agg = aggregate_media(frames, 1.0)  # sorted by media_id
    first = pd.DataFrame({"v": videos, "y": labels, "d": datasets}).groupby("v").first().loc[agg["media_id"]]
    return agg["logit"].to_numpy(), first["y"].to_numpy(), first["d"].to_numpy()


def sample_images(table: pa.Table, n: int = OOD_REFERENCE, seed: int = 0, rows: np.ndarray | None = None
                  ) -> list[np.ndarray]:
    """A seeded sample of up to ``n`` decoded face crops of ``table`` (of ``rows`` when given)."""
    from deepgen.faces.crop import decode_image

    pool = np.arange(table.num_rows) if rows is None else np.flatnonzero(rows)
    idx = np.sort(np.random.default_rng(seed).permutation(pool)[:n])
    return [decode_image(b) for b in table.column("image").take(pa.array(idx, pa.int64())).to_pylist()]


def training_features(model, images: list[np.ndarray]) -> np.ndarray:
    """Features of sampled training faces under the final model: the reference the out-of-domain check
    measures distances to (``ood_sample`` in ``reference_features.npz``)."""
    from deepgen.inference import model_frame_outputs

    return model_frame_outputs(model, images, "cpu")["features"].astype(np.float32)


def crop_settings(faces: list[str]) -> dict | None:
    """How the training faces were cropped (detector, size, margin, align), from their ``extract.json``.

    None when no table records it (tables written by hand); tables cropped differently fail here.
    """
    from deepgen.faces.extract import read_extract_config

    found = {}
    for uri in faces:
        cfg = read_extract_config(uri) or (read_extract_config(uri.rstrip("/").rsplit("/", 1)[0])
                                           if uri.rstrip("/").endswith("/faces") else None)
        if cfg is not None:
            found[uri] = {k: cfg.get(k) for k in CROP_KEYS}
    settings = list(found.values())
    if any((s["margin"], s["align"]) != (settings[0]["margin"], settings[0]["align"]) for s in settings):
        a, b = list(found)[0], next(u for u, s in found.items() if (s["margin"], s["align"]) !=
                                    (settings[0]["margin"], settings[0]["align"]))
        raise DeepgenError(f"faces {a} and {b} were cropped with different margin or alignment; extract every "
                           "training table with the same --margin and --align.")
    return settings[0] if settings else None


def train(
    config: str | dict | TrainConfig,
    faces: list[str],
    out: str,
    workers: int = 2,
    address: str | None = None,
    overrides: dict | None = None,
    cpus_per_worker: float = 1,
    use_gpu: bool | None = None,
    overwrite: bool = False,
    heldout: list[str] | None = None,
    callbacks: list | None = None,
    quiet: bool = False,
) -> dict:
    """Train a detector with ``workers`` Ray Train workers and write ``<out>/bundle`` (checkpoint bundle).

    Ray Train checkpoints go to ``<out>/checkpoints`` (the best ``num_to_keep`` by ``val_mean_auc``).
    Returns the bundle URI, its model id, the selected epoch's metrics and the per-epoch history.
    ``heldout`` faces are validated on every epoch (``heldout_mean_auc``, ``heldout_min_auc``) but
    never trained on, selected on or calibrated on. ``callbacks`` go to Ray Train's RunConfig
    (e.g. Tune's report callback when a sweep drives the run). Unless ``quiet``, one line per epoch
    (loss, validation mean AUC, seconds) goes to stderr.
    """
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from deepgen.models import create_detector
    from deepgen.models.bundle import OWNER_MARKERS, reference_stats, save_bundle
    from deepgen.progress import progress_enabled
    from deepgen.runtime import init_ray

    cfg = load_config(config, overrides)  # every user error surfaces here, before Ray starts
    faces = [str(f) for f in faces]
    check_faces_paths(faces)
    crops = crop_settings(faces)
    if crops:  # the crops' geometry comes from how they were extracted, not from the recipe
        cfg = dataclasses.replace(cfg, crop_margin=float(crops["margin"]), crop_align=bool(crops["align"]))
    if workers < 1:
        raise DeepgenError(f"workers is {workers}; use at least one training worker.")
    heldout = [str(f) for f in heldout or []]
    bundle_uri = storage.join(out, BUNDLE_DIR)
    storage.check_output_path(bundle_uri, inputs=[*faces, *heldout], overwrite=overwrite, markers=OWNER_MARKERS)
    if heldout:
        check_faces_paths(heldout)
    data = build_train_data(faces, cfg, heldout)
    t0 = time.perf_counter()
    init_ray(address)
    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) >= workers
    storage_path, storage_fs = storage.run_storage(storage.join(out, CHECKPOINTS_DIR))
    run_name = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    loop_config = {
        "cfg": cfg.to_dict(),
        "domains": data.domains,
        "methods": data.methods,
        "val_datasets": data.val_datasets,
        "heldout_datasets": data.heldout_datasets,
        "train_rows": data.train.num_rows,
        "threads": max(1, int(cpus_per_worker)),
    }
    lines = _EpochLines(cfg.epochs) if progress_enabled(quiet) else None
    callbacks = [*(callbacks or []), *([lines.callback] if lines else [])] or None
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker={"CPU": cpus_per_worker}
        ),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=cfg.num_to_keep,
                checkpoint_score_attribute="val_mean_auc",
                checkpoint_score_order="max",
            ),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            callbacks=callbacks,
        ),
        datasets={
            "train": _blocks(data.train, max(cfg.batch_size, 32)),
            "val": _blocks(data.val, 256),
        },
    )
    try:
        result = trainer.fit()
    finally:
        if lines:
            lines.close()
    if result.error is not None:
        raise result.error
    best = result.get_best_checkpoint("val_mean_auc", "max") or result.checkpoint
    if best is None:
        raise DeepgenError(f"training {run_name} produced no checkpoint; check the worker logs.")

    with best.as_directory() as d:
        state = load_resume_state(os.path.join(d, STATE))
        with open(os.path.join(d, VAL_OUTPUTS), "rb") as f:
            val = dict(np.load(io.BytesIO(f.read())))
    temporal = cfg.model.arch == "temporal"
    model = create_detector(model_config_for(cfg, len(data.domains), len(data.methods), frame_stage=False))
    missing, unexpected = model.load_state_dict(state["model"], strict=not temporal)
    if unexpected or any(not k.startswith("temporal.") for k in missing):
        raise DeepgenError(f"the frame stage's weights do not fit the {cfg.model.arch} model; retrain with --overwrite.")
    model.eval()
    held_ids = [data.val_datasets.index(n) for n in data.heldout_datasets]
    seen = ~np.isin(val["datasets"], held_ids)  # held-out datasets never calibrate nor give reference features
    ref_rows = ~np.isin(val["feature_datasets"], held_ids)
    synthetic = val.get("synthetic", np.zeros(len(val["labels"]), bool))
    seen &= validation_rows(val["labels"], synthetic, val["datasets"])  # the fakes selection used
    offset, temperature, domain_temps = calibrate(model, val["logits"][seen], val["labels"][seen],
                                                  val["datasets"][seen], data.val_datasets, val["videos"][seen],
                                                  val["tracks"][seen], cfg.balanced_threshold)
    val["logits"] = val["logits"] - offset
    from deepgen.evaluation.calibration import fit_temperature
    from deepgen.evaluation.ood import fit_ood

    frame_temperature = fit_temperature(val["logits"][seen], val["labels"][seen])  # for comparison
    train_images = sample_images(data.train, seed=cfg.seed)
    ood_sample = training_features(model, train_images)
    feature_videos = val.get("feature_videos", np.arange(len(val["features"])))  # older states: a face = an item
    ood = fit_ood(ood_sample, val["features"][ref_rows], feature_videos[ref_rows])
    # features fine-tuning never shaped (the packaged ImageNet backbone), which still see real footage
    from deepgen.evaluation.frozen import fit_frozen_check

    val_own = ~np.isin(data.val.column("dataset").to_numpy(zero_copy_only=False), held_ids)
    if "synthetic" in data.val.column_names:
        val_own &= ~data.val.column("synthetic").to_numpy(zero_copy_only=False).astype(bool)
    ood["frozen"], frozen_sample = fit_frozen_check(
        train_images, sample_images(data.val, seed=cfg.seed, rows=val_own), cfg.model.image_size)
    temporal_rec = None
    if temporal:  # second stage: the temporal head on cached clip embeddings, then the fusion temperatures
        from deepgen.train.temporal import train_temporal

        temporal_rec = train_temporal(model, faces, cfg, temperature, quiet=quiet)
    selected = state["history"][-1]
    history = state["history"]
    if result.checkpoint is not None and result.checkpoint.path != best.path:
        with result.checkpoint.as_directory() as d, open(os.path.join(d, HISTORY)) as f:
            history = json.load(f)  # every epoch, including those after the selected one
    metrics = {
        "selected": selected,
        "selected_epoch": int(state["epoch"]),
        "history": history,
        "temperature": temperature,
        "logit_offset": offset,  # folded into the classifier's bias (balanced_threshold)
        "frame_temperature": frame_temperature,  # fitted on frames instead of videos, for comparison
        "validation_fakes": data.validation_fakes,  # real | synthetic (pseudo-fakes) | real+synthetic
        "train_seconds": time.perf_counter() - t0,
        "workers": workers,
        "use_gpu": bool(use_gpu),
    }
    datasets = {
        "train": data.domains,
        "val": [d for d in data.val_datasets if d not in data.heldout_datasets],
        "heldout": data.heldout_datasets,
        "faces": faces,
        "methods": data.methods,
        "train_faces": int(data.train.num_rows),
        "val_faces": int(data.val.num_rows),
    }
    model_id = save_bundle(
        bundle_uri, model,
        recipe={**cfg.to_dict(), "domains": data.domains, "methods": data.methods},
        temperature=temperature,
        domain_temperatures=domain_temps,
        reference={**reference_stats(val["features"][ref_rows], val["feature_labels"][ref_rows], seed=cfg.seed),
                   "ood_sample": ood_sample, "ood_frozen_sample": frozen_sample},
        datasets=datasets,
        metrics=metrics,
        extras={"ood": ood, **({"faces": crops} if crops else {}), **({"temporal": temporal_rec} if temporal_rec else {})},
        overwrite=overwrite,
        inputs=[*faces, *heldout],
    )
    return {
        "bundle": bundle_uri,
        "model_id": model_id,
        "metrics": selected,
        "history": history,
        "temperature": temperature,
        "validation_fakes": data.validation_fakes,
        "checkpoints": storage.join(out, CHECKPOINTS_DIR, run_name),
        "seconds": metrics["train_seconds"],
    }
