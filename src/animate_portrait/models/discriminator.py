"""The projection discriminator D(x, y, i) of Zakharov et al. 2019 (Sec. 3.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import ModelConfig
from .blocks import ResBlock, init_weights
from .embedder import Trunk


class Discriminator(nn.Module):
    """Realism score r(x, y, i) = V(x, y)ᵀ (W_i + w₀) + b.

    V is E's trunk shape (own weights, spectral norm) plus one residual block, sum-pooled and ReLU'd.
    W holds one column W_i per training video (`cfg.n_ids`); w₀ and b are shared. The embedding-match
    loss L_MCH = ‖W_i − ê_i‖₁ ties W_i to the embedder's ê for that video, which is what lets the
    fine-tuning stage start W from ê for a new person.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        chs = tuple(cfg.emb_ch[:-1]) + (cfg.emb_dim,)
        self.trunk = Trunk(chs, sn=cfg.d_sn, attention=cfg.e_attention)
        self.extra = ResBlock(cfg.emb_dim, sn=cfg.d_sn)
        self.W = nn.Parameter(torch.randn(cfg.n_ids, cfg.emb_dim) * 0.02)  # W_i, one row per video
        self.w0 = nn.Parameter(torch.zeros(cfg.emb_dim))  # w₀
        self.b = nn.Parameter(torch.zeros(1))  # b
        init_weights(self.trunk)
        init_weights(self.extra)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, i: torch.Tensor, per_location: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B,3,H,W) in [-1,1], y (B,3,H,W) sketch in [0,1], i (B,) video ids → (r (B,), features).

        `per_location`: r as a map (B, h, w) over D's last feature map, one score per location
        (relu(h)ᵀ(W_i + w₀) + b): the terms whose sum, less the repeated b, is the paper's r. A hinge on
        each of them keeps a margin per image region (see TrainConfig.d_patch)."""
        feats = self.trunk(torch.cat([x, y * 2 - 1], 1))
        h = self.extra(feats[-1])
        feats.append(h)
        proj = self.W[i] + self.w0  # (B, C)
        if per_location:
            return (F.relu(h) * proj[:, :, None, None]).sum(1) + self.b, feats
        v = F.relu(h).sum(dim=(2, 3))  # V(x, y)
        r = (v * proj).sum(1) + self.b
        return r, feats
