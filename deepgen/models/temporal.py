"""The temporal detector (issue 22): the frame detector plus a head that reads a face track's clip
of per-frame embeddings as a sequence.

FTCN-style, read from the field rather than copied: temporal-only convolutions (kernel 3 along
time, none across space, since the head sees pooled embeddings) and one transformer layer over the
T steps with learned positions. The frame backbone is frozen while the head trains (its embeddings
are cached), so the head adds what no single frame shows: how blend boundary, colour and identity
move from one frame to the next.
"""

from __future__ import annotations

import torch
from torch import nn

from deepgen.models.config import ModelConfig
from deepgen.models.detector import Detector
from deepgen.models.registry import register_model


class TemporalHead(nn.Module):
    """(B, L, d) per-frame embeddings, L <= ``clip_len`` consecutive frames -> (B,) clip logits."""

    def __init__(self, d: int, hidden: int = 64, clip_len: int = 8, dropout: float = 0.1):
        super().__init__()
        self.clip_len = clip_len
        self.inp = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden))
        self.conv = nn.Sequential(nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU(),
                                  nn.Conv1d(hidden, hidden, 3, padding=1))
        self.pos = nn.Parameter(torch.zeros(1, clip_len, hidden))
        nn.init.normal_(self.pos, std=0.02)
        self.encoder = nn.TransformerEncoderLayer(hidden, nhead=4 if hidden % 4 == 0 else 1,
                                                  dim_feedforward=2 * hidden, dropout=dropout, batch_first=True)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        if seq.ndim != 3 or seq.shape[1] < 1 or seq.shape[1] > self.clip_len:
            raise ValueError(f"clip embeddings must be (B, L, d) with 1 <= L <= {self.clip_len}, got "
                             f"{tuple(seq.shape)}")
        h = self.inp(seq)  # B, L, hidden
        h = h + self.conv(h.transpose(1, 2)).transpose(1, 2)  # temporal-only residual convolutions
        h = self.encoder(h + self.pos[:, : h.shape[1]])
        return self.out(h.mean(1)).squeeze(1)


class TemporalDetector(Detector):
    """A :class:`Detector` (frame logits and embeddings, unchanged) with a :class:`TemporalHead`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.temporal = TemporalHead(self.num_features, cfg.temporal_dim, cfg.clip_len)

    def temporal_logits(self, seq: torch.Tensor) -> torch.Tensor:
        """Clip logits (B,) from per-frame embeddings (B, L, num_features), in clip order."""
        return self.temporal(seq)


@register_model("temporal")
def temporal(cfg: ModelConfig) -> TemporalDetector:
    """The frame detector plus a temporal head over a clip's embeddings (``temporal_dim``, ``clip_len``)."""
    return TemporalDetector(cfg)
