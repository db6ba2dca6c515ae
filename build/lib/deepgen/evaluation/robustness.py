"""White-box L_inf attacks (FGSM, PGD) on face-crop detectors, in pixel space [0, 1], and the
AUC a detector keeps under them: the seed's "adversarial inputs" challenge as a measured table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from deepgen.errors import DeepgenError

Preprocess = Callable[[torch.Tensor], torch.Tensor] | None


def as_image_tensor(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Images as float32 NCHW in [0, 1]: a float tensor passes through, uint8 NHWC is converted."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise DeepgenError(
                f"numpy images have dtype {images.dtype} and shape {images.shape}; pass uint8 "
                "NxHxWx3 RGB crops or a float NCHW tensor in [0, 1]."
            )
        return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)
    x = images.float()
    if x.ndim != 4 or x.numel() == 0 or x.min() < 0 or x.max() > 1:
        raise DeepgenError(
            f"image tensor has shape {tuple(x.shape)}; pass a non-empty float NCHW tensor in [0, 1]."
        )
    return x


def model_logits(
    model: torch.nn.Module, x: torch.Tensor, preprocess: Preprocess = None
) -> torch.Tensor:
    """The model's fake logit per image, shape (N,); the output may be (N,), (N, 1) or {"logit": …}."""
    out = model(preprocess(x) if preprocess is not None else x)
    if isinstance(out, dict):
        if "logit" not in out:
            raise DeepgenError(
                f"model returned keys {sorted(out)}; it must return a 'logit' entry."
            )
        out = out["logit"]
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim != 1 or out.shape[0] != x.shape[0]:
        raise DeepgenError(
            f"model output has shape {tuple(out.shape)} for {x.shape[0]} images; it must return "
            "one logit per image, (N,) or (N, 1)."
        )
    return out


def _input_grad(model, x, y, preprocess) -> torch.Tensor:
    """Gradient of the summed BCE(logit, label) with respect to the pixels."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.binary_cross_entropy_with_logits(
            model_logits(model, x, preprocess), y, reduction="sum"
        )
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _check_eps(eps: float) -> None:
    if not 0.0 <= eps <= 1.0:
        raise DeepgenError(
            f"attack budget {eps} is outside [0, 1]; give it in pixel units, e.g. 4/255."
        )


def _device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def fgsm(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    eps: float,
    preprocess: Preprocess = None,
) -> torch.Tensor:
    """One signed-gradient step of size ``eps`` that increases BCE against the true label."""
    return pgd(
        model,
        images,
        labels,
        eps,
        steps=1,
        step_size=eps,
        random_start=False,
        preprocess=preprocess,
    )


def pgd(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    preprocess: Preprocess = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_inf PGD in pixel space: ``steps`` signed-gradient ascent steps on BCE(logit, label),
    each projected onto the ``eps`` ball around the images and onto [0, 1].

    ``images`` is float NCHW in [0, 1]; ``preprocess`` (e.g. normalization) is applied inside the
    model call so the attack stays in pixel units. ``step_size`` defaults to 2.5 * eps / steps.
    The model runs in eval mode during the attack and gets its mode back afterwards.
    """
    _check_eps(eps)
    if steps < 1:
        raise DeepgenError(f"PGD steps is {steps}; use at least 1.")
    x = as_image_tensor(images).to(_device(model))
    y = torch.as_tensor(labels, dtype=torch.float32, device=x.device).reshape(-1)
    if y.shape[0] != x.shape[0]:
        raise DeepgenError(f"got {y.shape[0]} labels for {x.shape[0]} images; pass one per image.")
    alpha = 2.5 * eps / steps if step_size is None else step_size
    was_training = model.training
    model.eval()
    try:
        x_adv = x.clone()
        if random_start:
            noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x_adv = (x + (2 * noise - 1) * eps).clamp(0.0, 1.0)
        for _ in range(steps):
            grad = _input_grad(model, x_adv, y, preprocess)
            x_adv = x_adv + alpha * grad.sign()
            x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    finally:
        model.train(was_training)
    return x_adv.detach()


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    preprocess: Preprocess = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Eval-mode logits for float NCHW images in [0, 1], batched, as a numpy (N,) array."""
    x = as_image_tensor(images)
    was_training = model.training
    model.eval()
    try:
        dev = _device(model)
        out = [
            model_logits(model, x[i : i + batch_size].to(dev), preprocess).float().cpu()
            for i in range(0, x.shape[0], batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy().astype(np.float64)


def robustness_table(
    model: torch.nn.Module,
    images: torch.Tensor | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    budgets: Sequence[float] = (1 / 255, 2 / 255, 4 / 255),
    attack: str = "pgd",
    preprocess: Preprocess = None,
    steps: int = 10,
    random_start: bool = True,
    batch_size: int = 64,
    seed: int = 0,
) -> pd.DataFrame:
    """AUC clean vs under attack, one row per budget: ``attack, budget, budget_255, steps, n,
    auc_clean, auc, auc_drop, flip_rate`` (share of items whose 0.5-threshold decision changed).
    """
    if attack not in ("pgd", "fgsm"):
        raise DeepgenError(f"unknown attack {attack!r}; use 'pgd' or 'fgsm'.")
    x = as_image_tensor(images)
    y = np.asarray(labels, dtype=np.int64).ravel()
    if len(y) != x.shape[0] or len(np.unique(y)) != 2:
        raise DeepgenError(
            f"robustness_table needs one label per image ({x.shape[0]}) with both classes present."
        )
    clean = predict_logits(model, x, preprocess, batch_size)
    auc_clean = float(roc_auc_score(y, clean))
    rows = []
    for eps in budgets:
        gen = torch.Generator().manual_seed(seed)
        adv = []
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i : i + batch_size], torch.as_tensor(y[i : i + batch_size])
            if attack == "fgsm":
                adv.append(fgsm(model, xb, yb, eps, preprocess).cpu())
            else:
                adv.append(
                    pgd(
                        model,
                        xb,
                        yb,
                        eps,
                        steps=steps,
                        random_start=random_start,
                        preprocess=preprocess,
                        generator=gen,
                    ).cpu()
                )
        attacked = predict_logits(model, torch.cat(adv), preprocess, batch_size)
        auc = float(roc_auc_score(y, attacked))
        rows.append(
            {
                "attack": attack,
                "budget": float(eps),
                "budget_255": float(eps) * 255.0,
                "steps": 1 if attack == "fgsm" else steps,
                "n": int(len(y)),
                "auc_clean": auc_clean,
                "auc": auc,
                "auc_drop": auc_clean - auc,
                "flip_rate": float(np.mean((attacked > 0) != (clean > 0))),
            }
        )
    return pd.DataFrame(rows)


def detector_robustness(
    model: torch.nn.Module,
    crops: Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    budgets: Sequence[float] = (0.0, 1 / 255, 2 / 255, 4 / 255),
    per_class: int = 32,
    steps: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """White-box PGD on a detector's face crops: a seeded sample of ``per_class`` crops per class,
    resized to the model's input and attacked in pixel space through its own input normalisation."""
    import cv2

    from deepgen.models import input_mean_std

    y = np.asarray(labels, dtype=np.int64).ravel()
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in (0, 1)])
    size = model.cfg.image_size
    imgs = np.stack([cv2.resize(crops[i], (size, size), interpolation=cv2.INTER_AREA) for i in idx])
    mean, std = input_mean_std(model.cfg)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return robustness_table(model, imgs, y[idx], budgets=budgets, attack="pgd",
                            preprocess=lambda x: (x - m.to(x.device)) / s.to(x.device), steps=steps, seed=seed)
