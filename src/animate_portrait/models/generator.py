"""The generator G of Zakharov et al. 2019, with a landmark-driven flow that carries the source's pixels.

The paper's G(y_t, ψ̂) draws the whole frame from the target sketch y_t and AdaIN parameters
ψ̂ = P·ê, where ê is E's embedding of the source frames. From one frame, the vector ê cannot carry
a portrait's detail, so identity is lost (the paper repairs that by per-person fine-tuning). Here G also
sees the sources themselves, moved into the target pose:

1. a thin-plate spline fitted from the target landmarks to each source's landmarks (plus fixed border
   anchors) gives a dense backward flow, at size/4;
2. a small U-Net (`FlowNet`) refines that flow and predicts a confidence per source and pixel;
3. the source encoder's features (size/2, /4, /8) are warped by the refined flow, and the K sources are
   fused per pixel by a softmax over their confidences (at render time plus a bias towards the sources
   whose face shape is closest to the target's, `match_logits`);
4. the decoder (AdaIN from ψ̂ = P·ê) combines the warped features with the target-sketch encoding and
   outputs an image and a blend mask m; the frame is  x̂ = m · warped source + (1 − m) · decoded.

So G mostly draws what the sources lack: the mouth interior, teeth, blinks and newly visible parts.
Everything is in pure torch and batched; the per-source part (`encode_sources`) runs once per portrait.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import ModelConfig
from .blocks import AdaResBlock, ResDown, SelfAttention, init_weights, maybe_sn, tps_grid, warp


@dataclass
class SourceState:
    """What G keeps of the K sources: tensors shaped (B, K, …); computed once per portrait."""

    img: torch.Tensor  # (B, K, 3, S, S) source frames in [-1, 1]
    img_q: torch.Tensor  # (B, K, 3, S/4, S/4)
    sketch_q: torch.Tensor  # (B, K, 3, S/4, S/4) source sketches in [-1, 1]
    feats: list[torch.Tensor]  # [(B, K, c1, S/2, S/2), (B, K, c2, S/4, S/4), (B, K, c3, S/8, S/8)]
    points: torch.Tensor  # (B, K, 68, 2) source landmarks in [-1, 1]

    def expand(self, b: int) -> SourceState:
        """Broadcast a single source set (B=1) over b targets (no copy until flattened)."""
        if self.img.shape[0] == b:
            return self

        def ex(t: torch.Tensor) -> torch.Tensor:
            return t.expand(b, *t.shape[1:])

        return SourceState(
            ex(self.img), ex(self.img_q), ex(self.sketch_q), [ex(f) for f in self.feats], ex(self.points)
        )


def match_logits(src_points: torch.Tensor, points_t: torch.Tensor, match: float) -> torch.Tensor:
    """(B, K) fusion-logit bias: −match × how far each source's face shape is from the target's, as the RMS
    landmark distance after the similarity (shift, scale, in-plane rotation) that best aligns them, in units
    of the target's inter-ocular distance.

    Meta-training fuses K ≤ 8 sources by the flow net's confidences alone. With many sources that averages
    mouths and poses far from the target's: 32 sources gave no more detail than 8. This bias moves the
    weight to the sources that already look like the target frame, as a retoucher would pick the closest
    photo. Shift, scale and roll are left out because the warp does them without loss; measured on raw
    positions, a head that had moved in the frame picked a turned, blinking source. The bias is smooth in
    the target landmarks, so a driver that moves smoothly shifts the weights smoothly, without flicker."""
    src = src_points.float() - src_points.float().mean(-2, keepdim=True)  # (B, K, 68, 2), centred
    tgt = (points_t.float() - points_t.float().mean(-2, keepdim=True))[:, None]  # (B, 1, 68, 2)
    # least-squares similarity: scale × rotation (c, s) = (Σ src·tgt, Σ src×tgt) / Σ |src|² (real arithmetic,
    # not complex numbers, which torch.compile does not lower)
    sx, sy, tx, ty = src[..., 0], src[..., 1], tgt[..., 0], tgt[..., 1]
    norm = (sx.square() + sy.square()).sum(-1, keepdim=True).clamp_min(1e-8)
    c = (sx * tx + sy * ty).sum(-1, keepdim=True) / norm
    s = (sx * ty - sy * tx).sum(-1, keepdim=True) / norm
    d = ((c * sx - s * sy - tx).square() + (c * sy + s * sx - ty).square()).mean(-1).sqrt()  # (B, K)
    iod = (points_t[:, 36:42].float().mean(1) - points_t[:, 42:48].float().mean(1)).norm(dim=-1)
    return -match * d / iod.clamp_min(1e-3)[:, None]


class FlowNet(nn.Module):
    """Refines the TPS flow and predicts a per-pixel confidence, at size/4 (a 3-level U-Net).

    Input: target sketch, TPS-warped source sketch and image, and the TPS grid itself. Output: Δflow (added
    to the TPS grid) and a confidence logit. The last conv starts at zero, so training starts from TPS.
    """

    def __init__(self, cin: int, ch: int) -> None:
        super().__init__()
        self.inc = nn.Conv2d(cin, ch, 3, 1, 1)
        self.down1 = nn.Conv2d(ch, 2 * ch, 4, 2, 1)
        self.mid1 = nn.Conv2d(2 * ch, 2 * ch, 3, 1, 1)
        self.down2 = nn.Conv2d(2 * ch, 2 * ch, 4, 2, 1)
        self.mid2 = nn.Conv2d(2 * ch, 2 * ch, 3, 1, 1)
        self.up1 = nn.Conv2d(4 * ch, 2 * ch, 3, 1, 1)
        self.up0 = nn.Conv2d(3 * ch, ch, 3, 1, 1)
        self.out = nn.Conv2d(ch, 3, 3, 1, 1)
        init_weights(self)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h0 = F.relu(self.inc(x))
        h1 = F.relu(self.mid1(F.relu(self.down1(h0))))
        h2 = F.relu(self.mid2(F.relu(self.down2(h1))))
        u1 = F.relu(self.up1(torch.cat([F.interpolate(h2, scale_factor=2.0), h1], 1)))
        u0 = F.relu(self.up0(torch.cat([F.interpolate(u1, scale_factor=2.0), h0], 1)))
        o = self.out(u0)
        return 0.1 * torch.tanh(o[:, :2]), o[:, 2:3]


class Generator(nn.Module):
    """G(y_t, ψ̂, sources) → x̂ (B, 3, S, S) in [-1, 1]; see the module docstring."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c1, c2, c3 = cfg.enc_ch
        s1, s2, s3 = cfg.sketch_ch
        sn = cfg.g_sn
        # source encoder on (x, y) and target-sketch encoder (instance norm, as the paper's G encoder)
        self.src_enc = nn.ModuleList([ResDown(6, c1, sn), ResDown(c1, c2, sn), ResDown(c2, c3, sn)])
        self.sk_enc = nn.ModuleList(
            [ResDown(3, s1, sn, norm=True), ResDown(s1, s2, sn, norm=True), ResDown(s2, s3, sn, norm=True)]
        )
        self.flow = FlowNet(3 + 3 + 3 + 2, cfg.flow_ch)
        # bottleneck (AdaIN) at S/8 and decoder (AdaIN) with warped-source skips
        self.fuse3 = maybe_sn(nn.Conv2d(c3 + s3, c3, 1), sn)
        self.bottleneck = nn.ModuleList(AdaResBlock(c3, sn) for _ in range(cfg.n_bottleneck))
        self.attn = SelfAttention(c3, sn) if cfg.g_attention else None
        self.fuse2 = maybe_sn(nn.Conv2d(c3 + c2 + s2, c2, 1), sn)
        self.dec2 = AdaResBlock(c2, sn)
        self.fuse1 = maybe_sn(nn.Conv2d(c2 + c1 + s1, c1, 1), sn)
        self.dec1 = AdaResBlock(c1, sn)
        self.out1 = maybe_sn(nn.Conv2d(c1, 16, 3, 1, 1), sn)
        self.out2 = maybe_sn(nn.Conv2d(16, 4, 3, 1, 1), sn)  # RGB + blend-mask logit
        self.ada = list(self.bottleneck) + [self.dec2, self.dec1]
        n_psi = sum(b.n_params for b in self.ada)
        self.P = nn.Linear(cfg.emb_dim, n_psi)  # ψ̂ = P·ê, the paper's learned projection
        init_weights(self)
        nn.init.zeros_(self.P.weight)  # ψ̂ starts at 0: AdaIN starts as plain instance norm
        nn.init.zeros_(self.flow.out.weight)  # Δflow = 0, equal confidences: start from the TPS warp
        nn.init.zeros_(self.flow.out.bias)
        with torch.no_grad():
            out2 = self.out2.parametrizations.weight.original if sn else self.out2.weight
            out2.mul_(0.1)
            # m starts at 0.5, not near 1: in the first GPU run a start at m ≈ 0.88 let the L1 loss push
            # the mask to exactly 1 within a few hundred steps (the decoded image was still poor), where
            # the sigmoid's gradient vanishes and the decoder was never used again
            self.out2.bias[3].fill_(0.0)

    @torch.no_grad()
    def reset_mask(self, rgb_scale: float = 1.0) -> None:
        """Restart the blend-mask logit at 0 (m = 0.5) and scale the decoder's RGB logits by `rgb_scale`:
        used to restart training from weights whose mask saturated at 1. There the sigmoid passes no
        gradient, and the unused decoder's pre-tanh outputs drifted to |x| ≈ 50 (tanh saturated too)."""
        out2 = self.out2.parametrizations.weight.original if self.cfg.g_sn else self.out2.weight
        out2[3].zero_()
        self.out2.bias[3].fill_(0.0)
        out2[:3].mul_(rgb_scale)
        self.out2.bias[:3].mul_(rgb_scale)

    # -- per portrait ------------------------------------------------------------------------------------

    def psi(self, e_hat: torch.Tensor) -> torch.Tensor:
        """ψ̂ = P·ê: (B, emb_dim) → (B, n_psi) AdaIN parameters."""
        return self.P(e_hat)

    def encode_sources(self, x: torch.Tensor, y: torch.Tensor, points: torch.Tensor) -> SourceState:
        """x (B,K,3,S,S) frames in [-1,1], y (B,K,3,S,S) sketches in [0,1], points (B,K,68,2) in [-1,1]."""
        b, k = x.shape[:2]
        xf, yf = x.flatten(0, 1), y.flatten(0, 1) * 2 - 1
        h = torch.cat([xf, yf], 1)
        feats = []
        for blk in self.src_enc:
            h = blk(h)
            feats.append(h.unflatten(0, (b, k)))
        q = self.cfg.size // 4
        img_q = F.interpolate(xf, size=(q, q), mode="area").unflatten(0, (b, k))
        sk_q = F.interpolate(yf, size=(q, q), mode="area").unflatten(0, (b, k))
        return SourceState(x, img_q, sk_q, feats, points)

    # -- per target frame ----------------------------------------------------------------------------------

    def flows(
        self, y_t: torch.Tensor, points_t: torch.Tensor, src: SourceState
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Steps 1 and 2 for B targets and their K sources (B of them, or one for all): where to read each
        source, as a refined backward grid (BK, S/4, S/4, 2), its confidence logit (BK, 1, S/4, S/4) and the
        refinement Δ (BK, 2, S/4, S/4). Arguments as `forward`'s."""
        b = y_t.shape[0]
        src = src.expand(b)
        k = src.points.shape[1]
        q = self.cfg.size // 4
        # 1. TPS flow (target → source), per source
        tgt_rep = points_t[:, None].expand(b, k, *points_t.shape[1:]).flatten(0, 1)
        grid_tps = tps_grid(src.points.flatten(0, 1), tgt_rep, q)  # (BK, q, q, 2)
        # 2. refine + confidence
        y_tq = F.interpolate(y_t * 2 - 1, size=(q, q), mode="area")
        y_tq = y_tq[:, None].expand(b, k, *y_tq.shape[1:]).flatten(0, 1)
        x_w = warp(src.img_q.flatten(0, 1), grid_tps)
        y_w = warp(src.sketch_q.flatten(0, 1), grid_tps)
        delta, conf = self.flow(torch.cat([y_tq, y_w, x_w, grid_tps.permute(0, 3, 1, 2).to(y_w.dtype)], 1))
        return grid_tps + delta.permute(0, 2, 3, 1).float(), conf, delta

    def forward(
        self,
        y_t: torch.Tensor,
        points_t: torch.Tensor,
        psi: torch.Tensor,
        src: SourceState,
        match: float = 0.0,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """y_t (B,3,S,S) target sketch in [0,1], points_t (B,68,2) in [-1,1], ψ̂ (B or 1, n_psi).
        `match` > 0 favours the sources whose face shape is closest to the target's (`match_logits`).

        Returns x̂ (B,3,S,S) in [-1,1] and an aux dict (mask m, warped source, decoded image, flow grid).
        """
        b = y_t.shape[0]
        src = src.expand(b)
        k = src.img.shape[1]
        if psi.shape[0] != b:
            psi = psi.expand(b, -1)
        q = self.cfg.size // 4

        grid, conf, delta = self.flows(y_t, points_t, src)  # steps 1 and 2
        logits = conf.float().view(b, k, 1, q, q)
        if match > 0 and k > 1:
            logits = logits + match_logits(src.points, points_t, match).view(b, k, 1, 1, 1)
        wts = torch.softmax(logits, dim=1)

        def fuse(feat: torch.Tensor) -> torch.Tensor:  # warp K sources' maps, blend by confidence
            wf = warp(feat.flatten(0, 1), grid)
            hw = wf.shape[-2:]
            wk = wts if hw[0] == q else F.interpolate(wts.flatten(0, 1), size=hw, mode="bilinear")
            return (wf.unflatten(0, (b, k)) * wk.view(b, k, 1, *hw).to(wf.dtype)).sum(1)

        # 3. target sketch encoding
        s = []
        h = y_t * 2 - 1
        for blk in self.sk_enc:
            h = blk(h)
            s.append(h)
        # 4. decoder with AdaIN parameters ψ̂
        psis = psi.split([blk.n_params for blk in self.ada], dim=1)
        x = self.fuse3(torch.cat([fuse(src.feats[2]), s[2]], 1))
        for i, blk in enumerate(self.bottleneck):
            x = blk(x, psis[i])
        if self.attn is not None:
            x = self.attn(x)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear")
        x = self.dec2(self.fuse2(torch.cat([x, fuse(src.feats[1]), s[1]], 1)), psis[-2])
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear")
        x = self.dec1(self.fuse1(torch.cat([x, fuse(src.feats[0]), s[0]], 1)), psis[-1])
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear")
        o = self.out2(F.relu(self.out1(F.relu(x))))
        decoded = torch.tanh(o[:, :3])
        m = torch.sigmoid(o[:, 3:4])
        warped = fuse(src.img)
        out = m * warped + (1 - m) * decoded
        aux = {"mask": m, "mask_logit": o[:, 3:4], "warped": warped, "decoded": decoded, "grid": grid}
        return out, {**aux, "delta": delta}
