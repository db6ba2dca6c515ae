"""The detector: a timm backbone with real/fake, domain-adversarial, method-adversarial and projection heads."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch
from torch import nn

from deepgen.errors import DeepgenError
from deepgen.models.grl import grad_reverse

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    """Architecture of a detector; stored in every checkpoint bundle."""

    backbone: str = "test_efficientnet"
    pretrained: bool = False
    image_size: int = 64
    dropout: float = 0.2  # before the real/fake head; also what MC dropout samples
    proj_dim: int = 64  # SupCon projection size
    head_hidden: int = 64  # hidden width of the adversarial heads
    num_domains: int = 1  # domain discriminator classes (training datasets)
    num_methods: int = 1  # manipulation-method classes (fake methods)


def check_backbone(name: str) -> None:
    """Raise a one-sentence DeepgenError when timm does not know ``name``."""
    import timm

    if not timm.is_model(name):
        raise DeepgenError(
            f"unknown backbone {name!r}; list the available ones with "
            "`python -c \"import timm; print(timm.list_models('*name*'))\"` and set model.backbone."
        )


@lru_cache(maxsize=64)
def backbone_mean_std(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalization the backbone was (pre)trained with; ImageNet's when timm has none."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or cfg.mean is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(cfg.mean), tuple(cfg.std)


def preprocess(images: np.ndarray | list[np.ndarray], cfg: ModelConfig) -> torch.Tensor:
    """RGB uint8 images (N,H,W,3 or a list of HxWx3) -> normalized float tensor (N,3,S,S), S = image_size."""
    size = cfg.image_size
    resized = [
        img if img.shape[:2] == (size, size) else cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        for img in images
    ]
    arr = np.stack(resized) if resized else np.zeros((0, size, size, 3), np.uint8)
    mean, std = backbone_mean_std(cfg.backbone)
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d_out))


class Detector(nn.Module):
    """Backbone features -> {logit, features, proj, domain_logits, method_logits}.

    The domain and method heads sit behind gradient reversal, so minimizing their losses makes the
    features less predictive of dataset and manipulation method (the generalization shortcut).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        import timm

        check_backbone(cfg.backbone)
        self.cfg = cfg
        self.backbone = timm.create_model(cfg.backbone, pretrained=cfg.pretrained, num_classes=0)
        d = self.backbone.num_features
        self.num_features = d
        self.classifier = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(d, 1))
        self.domain_head = _mlp(d, cfg.head_hidden, max(cfg.num_domains, 1))
        self.method_head = _mlp(d, cfg.head_hidden, max(cfg.num_methods, 1))
        self.projection = _mlp(d, d, cfg.proj_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (N, num_features)."""
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor, grl_coefficient: float = 1.0) -> dict[str, torch.Tensor]:
        f = self.features(x)
        reversed_f = grad_reverse(f, grl_coefficient)
        return {
            "logit": self.classifier(f).squeeze(1),
            "features": f,
            "proj": self.projection(f),
            "domain_logits": self.domain_head(reversed_f),
            "method_logits": self.method_head(reversed_f),
        }

    @torch.no_grad()
    def mc_dropout_logits(self, x: torch.Tensor, passes: int = 10) -> torch.Tensor:
        """Real/fake logits from ``passes`` stochastic passes with only the dropout layers active: (passes, N)."""
        was_training = self.training
        self.eval()
        f = self.features(x)
        drop = self.classifier[0]
        drop.train()
        try:
            return torch.stack([self.classifier(f).squeeze(1) for _ in range(passes)])
        finally:
            drop.eval()
            self.train(was_training)

    def preprocess(self, images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
        return preprocess(images, self.cfg)


def create_detector(cfg: ModelConfig) -> Detector:
    """Build a :class:`Detector` from its config (pretrained backbone weights only if ``cfg.pretrained``)."""
    return Detector(cfg)
