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
        if cfg.e_pool not in ("sum_relu", "mean_leaky"):
            raise ValueError(f"unknown e_pool {cfg.e_pool!r}")
        self.mean_leaky = cfg.e_pool == "mean_leaky"
        init_weights(self)

    def pooled(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """E's last map pooled over space, before the activation: (N, emb_dim)."""
        h = self.trunk(torch.cat([x, y * 2 - 1], 1))[-1]
        return h.mean(dim=(2, 3)) if self.mean_leaky else h.sum(dim=(2, 3))

    def embed_each(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) frames in [-1, 1], (N, 3, H, W) sketches in [0, 1] → (N, emb_dim)."""
        v = self.pooled(x, y)
        return F.leaky_relu(v, 0.2) if self.mean_leaky else F.relu(v)

    @torch.no_grad()
    def revive(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Rescale and re-centre the last block so that each unit's pooled value, before the activation, has
        median 0 and standard deviation 1 over these frames; returns the share of ê's entries then above 0.

        With "sum_relu" a unit whose pooled sum is negative for every input passes no gradient and never
        comes back: the first GPU run left all 256 dead (sums −26 to −1,245), so ê = 0 and G's AdaIN ignored
        the sources. Revived in place, such an E died again within 10 CPU steps: each Adam step moves every
        weight by about the learning rate, and a sum over 64 locations multiplies that. So revive an E
        built with e_pool="mean_leaky" (the same tensors): 64× gentler, and no unit can die. The block's
        output is linear in its last conv and its skip conv, so scaling both and shifting the last conv's
        bias moves the pooled values exactly; a standard deviation of 1 keeps ψ̂ = P·ê's first steps small."""
        last = self.trunk.blocks[-1]
        v = self.pooled(x, y)
        scale = 1.0 / v.std(0).clamp(min=1e-6)
        side = x.shape[-1] // 2 ** len(self.trunk.blocks)  # the last map's side (each block halves it)
        per_location = 1.0 if self.mean_leaky else 1.0 / side**2
        for conv in (last.conv2, last.skip):
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias.mul_(scale)
        last.conv2.bias.sub_(v.median(0).values * scale * per_location)
        return float((self.embed_each(x, y) > 0).float().mean())

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, k = x.shape[:2]
        e = self.embed_each(x.flatten(0, 1), y.flatten(0, 1))
        return e.view(b, k, -1).mean(1)  # ê = mean over the K sources
