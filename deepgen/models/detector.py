"""The detector: a timm backbone with real/fake, domain-adversarial, method-adversarial and projection heads.

Two optional artifact switches (issue 9): ``frequency_branch`` concatenates learned log-spectrum
features to the pooled backbone features before every head; ``boundary_head`` adds a Face X-ray
style decoder on the backbone's last feature map that predicts the blending-boundary map.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import cv2
import numpy as np
import torch
from torch import nn

from deepgen.artifacts.boundary import BoundaryHead, boundary_score
from deepgen.artifacts.frequency import FrequencyBranch
from deepgen.errors import DeepgenError
from deepgen.models.config import ModelConfig
from deepgen.models.grl import grad_reverse
from deepgen.models.registry import register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# crops per forward pass on a CPU: activations of a few dozen crops stay in cache (Lite0 at 96 px, one thread,
# 1.5-1.7x faster than batches of 256: benchmarks/score_stage.py)
CPU_BATCH = 32


def inference_batch(device, batch_size: int) -> int:
    """Crops per inference forward pass on ``device``: ``batch_size`` on a GPU, at most :data:`CPU_BATCH` on a CPU."""
    return batch_size if str(device).startswith("cuda") else min(batch_size, CPU_BATCH)


@lru_cache(maxsize=64)
def backbone_mean_std(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalization the backbone was (pre)trained with; ImageNet's when timm has none."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or cfg.mean is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(cfg.mean), tuple(cfg.std)


def input_mean_std(cfg: ModelConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input normalisation of ``cfg``: its own, else its weight source's, else the backbone's in timm."""
    from deepgen.models.weights import weights_mean_std

    if cfg.input_mean is not None and cfg.input_std is not None:
        return tuple(cfg.input_mean), tuple(cfg.input_std)
    return weights_mean_std(cfg.backbone, cfg.weights) or backbone_mean_std(cfg.backbone)


def preprocess(images: np.ndarray | list[np.ndarray] | torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """RGB uint8 images (N,H,W,3 or a list of HxWx3, or a uint8 (N,3,S,S) tensor already on its device,
    as the GPU scoring stage cuts them) -> normalized float tensor (N,3,S,S), S = image_size."""
    size = cfg.image_size
    if isinstance(images, torch.Tensor):
        if tuple(images.shape[-2:]) != (size, size):
            raise ValueError(f"crop tensors must be {size}x{size}, got {tuple(images.shape[-2:])}")
        mean, std = input_mean_std(cfg)
        m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        return (images.float().div_(255.0) - m) / s
    resized = [
        img if img.shape[:2] == (size, size) else cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        for img in images
    ]
    arr = np.stack(resized) if resized else np.zeros((0, size, size, 3), np.uint8)
    mean, std = input_mean_std(cfg)
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d_out))


class Detector(nn.Module):
    """Backbone features -> {logit, features[, boundary_logits]}; in training also {proj, domain_logits,
    method_logits}.

    The training-only heads run only when the caller passes ``grl_coefficient`` (the training loop
    does), so scoring never computes them. The domain and method heads sit behind gradient
    reversal, so minimizing their losses makes the features less predictive of dataset and
    manipulation method (the generalization shortcut). ``boundary_logits`` (N, 1, h, w) is present
    only with ``cfg.boundary_head``.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        import timm

        if cfg.input_mean is None or cfg.input_std is None:  # record it: it travels with the bundle
            mean, std = input_mean_std(cfg)
            cfg = replace(cfg, input_mean=tuple(mean), input_std=tuple(std))
        self.cfg = cfg
        self.backbone = timm.create_model(cfg.backbone, pretrained=cfg.pretrained, num_classes=0)
        d = self.backbone.num_features
        self.frequency = FrequencyBranch(cfg.frequency_dim, cfg.frequency_width) if cfg.frequency_branch else None
        if self.frequency is not None:
            d += cfg.frequency_dim
        self.num_features = d
        self.classifier = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(d, 1))
        self.domain_head = _mlp(d, cfg.head_hidden, max(cfg.num_domains, 1))
        self.method_head = _mlp(d, cfg.head_hidden, max(cfg.num_methods, 1))
        self.projection = _mlp(d, d, cfg.proj_dim)
        self.boundary = None
        self.boundary_size: tuple[int, int] | None = None
        self._channels_last = False
        if cfg.boundary_head:
            channels, self._channels_last = self._feature_map_layout()
            side = max(1, cfg.image_size // max(1, cfg.boundary_stride))
            self.boundary_size = (side, side)
            self.boundary = BoundaryHead(channels, cfg.boundary_channels, upsample=2, out_size=self.boundary_size)

    def _feature_map_layout(self) -> tuple[int, bool]:
        """Channels of the boundary head's input map and whether it is NHWC; DeepgenError if it is unusable."""
        name, size, level = self.cfg.backbone, self.cfg.image_size, self.cfg.boundary_level
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                fmap = self._encode_maps(torch.zeros(1, 3, size, size))[1]
        except (AttributeError, NotImplementedError, IndexError, AssertionError) as e:
            raise DeepgenError(
                f"backbone {name!r} cannot give intermediate feature map {level} ({type(e).__name__}); "
                "set model.boundary_level to -1 (the last feature map) or a smaller index."
            ) from e
        finally:
            self.backbone.train(was_training)
        c = fmap.shape[1] if level >= 0 else self.backbone.num_features
        if fmap.ndim == 4 and (fmap.shape[1] == c or fmap.shape[-1] == c):
            channels_last = fmap.shape[1] != c
            h, w = fmap.shape[1:3] if channels_last else fmap.shape[2:]
            if min(h, w) < 2:
                raise DeepgenError(
                    f"backbone {name!r} shrinks {size}-pixel crops to a {h}x{w} feature map, too coarse to "
                    "place a blending boundary; raise model.image_size or use a finer model.boundary_level."
                )
            return c, channels_last
        raise DeepgenError(
            f"backbone {name!r} gives {fmap.ndim}-D features of shape {tuple(fmap.shape)}, not a spatial map, "
            "so boundary_head cannot sit on it; set model.boundary_level >= 0, use a CNN backbone or set "
            "model.boundary_head: false."
        )

    def _encode_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone's last feature map and the boundary head's input map (the same unless boundary_level >= 0)."""
        if self.cfg.boundary_head and self.cfg.boundary_level >= 0:
            final, maps = self.backbone.forward_intermediates(x, indices=[self.cfg.boundary_level])
            return final, maps[0]
        fmap = self.backbone.forward_features(x)
        return fmap, fmap

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The boundary head's input map and the pooled features (frequency features appended)."""
        fmap, bmap = self._encode_maps(x)
        f = self.backbone.forward_head(fmap, pre_logits=True)
        if self.frequency is not None:
            f = torch.cat([f, self.frequency(x).to(f.dtype)], dim=1)
        return bmap, f

    def shift_logit(self, offset: float) -> None:
        """Subtract ``offset`` from every fake logit, exactly, through the classifier's bias (how a
        bundle carries its balanced decision point without a second calibration parameter)."""
        with torch.no_grad():
            self.classifier[-1].bias -= float(offset)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, num_features): backbone, plus the frequency branch when enabled."""
        return self._encode(x)[1]

    def forward(self, x: torch.Tensor, grl_coefficient: float | None = None) -> dict[str, torch.Tensor]:
        """Inference outputs; with ``grl_coefficient`` (training) also the heads behind gradient reversal."""
        fmap, f = self._encode(x)
        out = {"logit": self.classifier(f).squeeze(1), "features": f}
        if grl_coefficient is not None:
            reversed_f = grad_reverse(f, grl_coefficient)
            out.update(proj=self.projection(f), domain_logits=self.domain_head(reversed_f),
                       method_logits=self.method_head(reversed_f))
        if self.boundary is not None:
            out["boundary_logits"] = self.boundary(fmap.permute(0, 3, 1, 2) if self._channels_last else fmap)
        return out

    def preprocess(self, images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
        return preprocess(images, self.cfg)


def boundary_scores(out: dict[str, torch.Tensor]) -> np.ndarray:
    """Per-frame boundary score (N,): max sigmoid response of ``out["boundary_logits"]``.

    A model without a boundary head gives NaN for every frame, so an evidence column stays defined.
    """
    if "boundary_logits" not in out:
        return np.full(len(out["logit"]), np.nan)
    return boundary_score(out["boundary_logits"], from_logits=True)


@register_model("detector")
def detector(cfg: ModelConfig) -> Detector:
    """The default architecture: timm backbone, real/fake head, training heads, optional artifact branches."""
    return Detector(cfg)
