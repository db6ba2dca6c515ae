"""The domain check's second view: features of the frozen ImageNet backbone, which fine-tuning never shaped.

A binary detector's features keep what separates its training reals from its training fakes and
drop the rest, so camera noise, compression and real skin that it never saw can land "in domain".
The packaged ImageNet EfficientNet-Lite0 (the registry package every install has; no download) has
seen none of the training data: its features still describe how a crop looks. The check measures
the Mahalanobis distance of a crop's frozen features to those of the bundle's training crops, at the
detector's input size, thresholded like the fine-tuned distance (a quantile of validation crops).

Measured on procedural FF++-like training crops (README, "Trust at the point of use"): the frozen
distance separates real FF++/DFDC/Celeb-DF footage from unseen procedural videos at AUC 1.0, where
the fine-tuned features marked 96% of real videos in domain.
"""

from __future__ import annotations

import threading

import numpy as np

FROZEN_BACKBONE = "efficientnet_lite0"
_MODELS: dict[int, object] = {}
_LOCK = threading.Lock()


def frozen_model(size: int):
    """The packaged ImageNet Lite0 as a feature extractor at ``size`` px (loaded once per process)."""
    from deepgen.models import ModelConfig, create_detector

    with _LOCK:
        if size not in _MODELS:
            _MODELS[size] = create_detector(ModelConfig(backbone=FROZEN_BACKBONE, weights="packaged",
                                                        image_size=int(size))).eval()
        return _MODELS[size]


def frozen_features(images, size: int, device: str = "cpu", batch_size: int = 128) -> np.ndarray:
    """(N, 1280) frozen ImageNet features of RGB uint8 face crops, resized to ``size`` like the detector's input."""
    import torch

    from deepgen.models.detector import inference_batch

    model = frozen_model(int(size)).to(device)
    batch_size = inference_batch(device, batch_size)
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            out.append(model.features(model.preprocess(images[i : i + batch_size]).to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.num_features), np.float32)


def fit_frozen_check(train_images, val_images, size: int, quantile: float = 0.99) -> tuple[dict, np.ndarray]:
    """The frozen-feature part of a bundle's domain check: its record (threshold = the ``quantile`` of the
    validation crops' Mahalanobis distances to the training crops' frozen features) and the training
    sample it measures against (``ood_frozen_sample`` in ``reference_features.npz``)."""
    from deepgen.errors import DeepgenError
    from deepgen.evaluation.ood import mahalanobis_distance, mahalanobis_model

    ref, val = frozen_features(train_images, size), frozen_features(val_images, size)
    if len(ref) < 2 or len(val) < 1:
        raise DeepgenError("the domain check needs at least 2 training and 1 validation face; add faces.")
    d = mahalanobis_distance(mahalanobis_model(ref), val)
    record = {"method": "mahalanobis", "backbone": FROZEN_BACKBONE, "weights": "packaged", "size": int(size),
              "quantile": float(quantile), "threshold": float(np.quantile(d, quantile, method="higher")),
              "n_reference": int(len(ref)), "n_validation_crops": int(len(val))}
    return record, ref.astype(np.float32)
