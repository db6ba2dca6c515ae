"""Blending-boundary evidence (Face X-ray): the target map 4*m*(1-m) of a soft blending mask m,
a small conv head that predicts it from backbone features, its BCE loss, and the per-frame score.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepgen.errors import DeepgenError


def _as_unit_mask(mask: np.ndarray) -> np.ndarray:
    """A mask as float64 HxW in [0, 1]: uint8 is divided by 255, bool becomes 0/1."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.mean(axis=2) if m.shape[2] > 1 else m[..., 0]
    if m.ndim != 2:
        raise DeepgenError(f"mask has shape {np.asarray(mask).shape}; pass an HxW blending mask.")
    if m.dtype == np.uint8:
        return m.astype(np.float64) / 255.0
    m = m.astype(np.float64)
    if m.size and (m.min() < 0.0 or m.max() > 1.0):
        raise DeepgenError(
            f"mask values span [{m.min():.3g}, {m.max():.3g}]; pass a float mask in [0, 1] or uint8."
        )
    return m


def boundary_target(
    mask: np.ndarray,
    size: int | tuple[int, int] | None = None,
    blur_sigma: float | None = None,
) -> np.ndarray:
    """Face X-ray target ``B = 4*m*(1-m)``: 1 on the middle of the blend, 0 where m is 0 or 1.

    ``mask`` is the soft blending mask (float in [0, 1], uint8 or bool). A hard mask (only 0 and 1)
    has no boundary width, so with ``blur_sigma=None`` it is Gaussian-blurred first with sigma
    ``max(1, min(H, W) / 64)``; ``blur_sigma > 0`` always blurs, ``0`` never does. ``size`` (an int
    or (height, width)) resizes the target, computed at full resolution, to the head's output size.
    Returns float32 HxW in [0, 1].
    """
    m = _as_unit_mask(mask)
    hard = bool(np.all((m == 0.0) | (m == 1.0)))
    sigma = (max(1.0, min(m.shape) / 64.0) if hard else 0.0) if blur_sigma is None else blur_sigma
    if sigma > 0:
        m = cv2.GaussianBlur(m, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)
        m = np.clip(m, 0.0, 1.0)
    b = 4.0 * m * (1.0 - m)
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        shrink = h < b.shape[0] or w < b.shape[1]
        b = cv2.resize(b, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return b.astype(np.float32)


def boundary_targets(
    masks: Sequence[np.ndarray] | None, size: int | tuple[int, int], n: int | None = None
) -> np.ndarray:
    """Batch of targets, shape (N, 1, h, w) float32; a ``None`` mask (a real face) gives all zeros.

    ``masks=None`` with ``n`` gives N all-zero targets (a batch of untouched real faces).
    """
    h, w = (size, size) if isinstance(size, int) else size
    items = [None] * (n or 0) if masks is None else list(masks)
    out = np.zeros((len(items), 1, h, w), dtype=np.float32)
    for i, m in enumerate(items):
        if m is not None:
            out[i, 0] = boundary_target(m, (h, w))
    return out


def boundary_score(pred_map: np.ndarray | torch.Tensor, from_logits: bool = False) -> np.ndarray:
    """Per-frame boundary score: the maximum response of each predicted boundary map, shape (N,).

    Accepts (N, H, W), (N, 1, H, W) or a single (H, W) map, as numpy or torch; probabilities in
    [0, 1], or logits with ``from_logits=True`` (the sigmoid is applied first).
    """
    if isinstance(pred_map, torch.Tensor):
        pred_map = pred_map.detach().float().cpu().numpy()
    a = np.asarray(pred_map, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4:
        if a.shape[1] != 1:
            raise DeepgenError(f"boundary map has {a.shape[1]} channels; pass a 1-channel map.")
        a = a[:, 0]
    if a.ndim != 3:
        raise DeepgenError(f"boundary map has shape {a.shape}; pass (N, H, W) or (N, 1, H, W).")
    if from_logits:
        a = 1.0 / (1.0 + np.exp(-a))
    return a.reshape(a.shape[0], -1).max(axis=1)


class BoundaryHead(nn.Module):
    """Conv decoder from a backbone feature map (N, C, h, w) to boundary logits (N, 1, H, W).

    Two 3x3 conv blocks with ``upsample``-fold bilinear upsampling between them; with ``out_size``
    the logits are resized to that size (e.g. the crop size). Train it with :func:`boundary_loss`.
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int = 64,
        upsample: int = 2,
        out_size: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.out_size = out_size
        self.block1 = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 3, padding=1),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(mid_channels, mid_channels // 2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels // 2, 1, 1),
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.block1(feats)
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)
        x = self.block2(x)
        if self.out_size is not None:
            x = F.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False)
        return x


def boundary_loss(pred_logits: torch.Tensor, target: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Mean BCE between boundary logits (N, 1, H, W) and soft targets in [0, 1].

    ``target`` is (N, H, W) or (N, 1, h, w) and is bilinearly resized to the logits' size if needed.
    """
    t = torch.as_tensor(target, dtype=pred_logits.dtype, device=pred_logits.device)
    if t.ndim == 3:
        t = t[:, None]
    if pred_logits.ndim != 4 or t.ndim != 4 or t.shape[0] != pred_logits.shape[0]:
        raise DeepgenError(
            f"boundary logits {tuple(pred_logits.shape)} and target {tuple(t.shape)} do not match; "
            "pass logits (N, 1, H, W) and targets (N, H, W) or (N, 1, h, w)."
        )
    if t.shape[-2:] != pred_logits.shape[-2:]:
        t = F.interpolate(t, size=pred_logits.shape[-2:], mode="bilinear", align_corners=False)
    return F.binary_cross_entropy_with_logits(pred_logits, t.clamp(0.0, 1.0))
