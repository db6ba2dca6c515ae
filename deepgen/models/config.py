"""``ModelConfig``: a detector's architecture, weight source and input normalisation; validates itself.

It is stored in every checkpoint bundle, so a loaded bundle runs the same checks as a recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from deepgen.errors import DeepgenError


@dataclass
class ModelConfig:
    """Architecture of a detector; stored in every checkpoint bundle."""

    arch: str = "detector"  # a registered detector builder (deepgen.models.list_models())
    backbone: str = "test_efficientnet"
    pretrained: bool = False  # timm's own loading from a model hub (clusters that reach one)
    weights: str | None = None  # "packaged" (registry-package ImageNet weights) or a state dict path/URI
    input_mean: tuple[float, float, float] | None = None  # None: what the weights / timm say
    input_std: tuple[float, float, float] | None = None
    image_size: int = 64
    dropout: float = 0.2  # before the real/fake head; also what MC dropout samples
    proj_dim: int = 64  # SupCon projection size
    head_hidden: int = 64  # hidden width of the adversarial heads
    num_domains: int = 1  # domain discriminator classes (training datasets)
    num_methods: int = 1  # manipulation-method classes (fake methods)
    frequency_branch: bool = False  # concatenate FrequencyBranch features to the pooled features
    frequency_dim: int = 64  # FrequencyBranch output size (added to num_features)
    frequency_width: int = 16  # FrequencyBranch conv width
    boundary_head: bool = False  # predict the blending-boundary map (boundary_logits) from the last feature map
    boundary_channels: int = 64  # BoundaryHead mid channels
    boundary_stride: int = 4  # boundary map side = image_size // boundary_stride
    boundary_level: int = -1  # -1: the last feature map; k >= 0: timm's k-th intermediate map (finer)
    temporal_dim: int = 64  # arch temporal: width of the temporal head over a clip's embeddings
    clip_len: int = 8  # arch temporal: the longest clip (consecutive frames) the head reads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "model config", strict: bool = False) -> ModelConfig:
        """Build and validate; unknown keys fail with ``strict`` (recipes) and are ignored otherwise (bundles)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if strict and unknown:
            raise DeepgenError(f"{where} has unknown key(s) {', '.join(unknown)}; use only {', '.join(sorted(known))}.")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**kwargs).validate(where)

    def validate(self, where: str = "model config") -> ModelConfig:
        """Raise a one-sentence DeepgenError for an unusable model config; return it unchanged otherwise."""
        from deepgen.models.registry import check_arch, check_backbone

        check_arch(self.arch)
        check_backbone(self.backbone)
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            raise DeepgenError(f"{where}: model.dropout is {self.dropout}; set it in [0, 1).")
        if not isinstance(self.image_size, int) or self.image_size < 16:
            raise DeepgenError(f"{where}: model.image_size is {self.image_size}; use at least 16 pixels.")
        for name in ("frequency_dim", "frequency_width", "boundary_channels", "boundary_stride", "proj_dim",
                     "head_hidden", "num_domains", "num_methods", "temporal_dim", "clip_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (2 if name == "boundary_channels" else 1):
                raise DeepgenError(f"{where}: model.{name} is {value!r}; set it to a positive integer"
                                   f"{' >= 2' if name == 'boundary_channels' else ''}.")
        if not isinstance(self.boundary_level, int) or self.boundary_level < -1:
            raise DeepgenError(f"{where}: model.boundary_level is {self.boundary_level!r}; use -1 (the last "
                               "feature map) or the index k >= 0 of a finer intermediate map.")
        for name in ("input_mean", "input_std"):
            value = getattr(self, name)
            if value is not None and (len(value) != 3 or not all(isinstance(v, int | float) for v in value)
                                      or (name == "input_std" and min(value) <= 0)):
                raise DeepgenError(f"{where}: model.{name} is {value!r}; give three numbers (std > 0) or null.")
        if self.weights is not None and self.pretrained:
            raise DeepgenError(f"{where}: model.weights and model.pretrained are both set; choose one weight source.")
        return self
