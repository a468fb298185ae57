"""The embedder E(x, y) of Zakharov et al. 2019 (Sec. 3.2): frame + its landmark sketch → ê."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import ModelConfig
from .blocks import ResDown, SelfAttention, init_weights


class Trunk(nn.Module):
    """Residual downsampling blocks without normalisation on (x, y) (6 channels), shared shape of E and D.

    Returns the feature map after each block; self-attention sits after the block at size/16.
    """

    def __init__(self, chs: tuple[int, ...], sn: bool, attention: bool) -> None:
        super().__init__()
        cins = (6,) + tuple(chs[:-1])
        self.blocks = nn.ModuleList(ResDown(a, b, sn=sn) for a, b in zip(cins, chs, strict=False))
        self.attn_at = 3 if attention and len(chs) > 4 else -1
        self.attn = SelfAttention(chs[self.attn_at], sn=sn) if self.attn_at >= 0 else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i == self.attn_at:
                x = self.attn(x)
            feats.append(x)
        return feats


class Embedder(nn.Module):
    """E(x_i(s), y_i(s)) → ê_i(s): global sum pooling + ReLU over the trunk, as in the paper.

    The paper's ê for a video is the mean over its K source frames: `forward` takes (B, K, 3, H, W) frames
    and sketches and returns that mean, (B, emb_dim).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        chs = tuple(cfg.emb_ch[:-1]) + (cfg.emb_dim,)
        self.trunk = Trunk(chs, sn=False, attention=cfg.e_attention)
        init_weights(self)

    def embed_each(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) frames in [-1, 1], (N, 3, H, W) sketches in [0, 1] → (N, emb_dim)."""
        h = self.trunk(torch.cat([x, y * 2 - 1], 1))[-1]
        return F.relu(h.sum(dim=(2, 3)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, k = x.shape[:2]
        e = self.embed_each(x.flatten(0, 1), y.flatten(0, 1))
        return e.view(b, k, -1).mean(1)  # ê = mean over the K sources
