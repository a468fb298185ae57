"""Building blocks shared by the embedder, generator and discriminator (pure torch, no I/O).

Besides the usual residual blocks this holds two small geometric pieces that every network here needs:

- `rasterise_sketch`: the paper's landmark image y (coloured polylines on black), drawn in torch so that a
  whole batch of (augmented) landmarks becomes sketches on the GPU with no round trip through numpy. Its
  colours and connectivity follow ../shared/GUIDE.md, the same layout as `animate_portrait.sketch`.
- `tps_grid`: a batched thin-plate-spline solve. kornia has one, but the training machine has no kornia
  (and no internet to install it), and the solve is 20 lines: one linear system per sample.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------------------
# spectral norm helper


def maybe_sn(module: nn.Module, use: bool) -> nn.Module:
    """Spectral normalisation (Miyato et al.), as the paper uses "everywhere"; optional per network."""
    return nn.utils.parametrizations.spectral_norm(module) if use else module


# ---------------------------------------------------------------------------------------------------------
# residual blocks


class ResDown(nn.Module):
    """Residual downsampling block without normalisation (the paper's E and D trunks).

    main: ReLU → 4×4 stride-2 conv → ReLU → 3×3 conv;  skip: 2×2 avg-pool → 1×1 conv.
    The stride-2 first conv (rather than conv-conv-pool at full resolution) quarters the cost of the
    first block at 256², which matters because E runs on all K sources of every training episode.
    """

    def __init__(self, cin: int, cout: int, sn: bool = False, norm: bool = False) -> None:
        super().__init__()
        self.conv1 = maybe_sn(nn.Conv2d(cin, cout, 4, 2, 1), sn)
        self.conv2 = maybe_sn(nn.Conv2d(cout, cout, 3, 1, 1), sn)
        self.skip = maybe_sn(nn.Conv2d(cin, cout, 1), sn)
        self.norm1 = nn.InstanceNorm2d(cout, affine=True) if norm else nn.Identity()
        self.norm2 = nn.InstanceNorm2d(cout, affine=True) if norm else nn.Identity()
        self.first_relu = cin > 6  # no ReLU on raw image/sketch input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.first_relu else x
        h = self.conv1(h)
        h = self.conv2(F.relu(self.norm1(h)))
        return self.norm2(h) + self.skip(F.avg_pool2d(x, 2))


class ResBlock(nn.Module):
    """Plain residual block (the extra block of D that gives V(x, y))."""

    def __init__(self, ch: int, sn: bool = False) -> None:
        super().__init__()
        self.conv1 = maybe_sn(nn.Conv2d(ch, ch, 3, 1, 1), sn)
        self.conv2 = maybe_sn(nn.Conv2d(ch, ch, 3, 1, 1), sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


def adain(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance norm: normalise each channel of x, then scale/shift with (1+γ, β) from ψ̂."""
    xf = x.float()  # statistics in fp32 even under bf16 autocast
    mean = xf.mean(dim=(2, 3), keepdim=True)
    var = xf.var(dim=(2, 3), keepdim=True, unbiased=False)
    xn = (xf - mean) * torch.rsqrt(var + eps)
    return (xn * (1 + gamma.float()[:, :, None, None]) + beta.float()[:, :, None, None]).to(x.dtype)


class AdaResBlock(nn.Module):
    """Residual block whose two normalisations are AdaIN with parameters sliced from ψ̂ = P·ê.

    `n_params` tells the generator how many entries of ψ̂ this block consumes (2 AdaINs × (γ, β) × ch).
    """

    def __init__(self, ch: int, sn: bool = False) -> None:
        super().__init__()
        self.ch = ch
        self.conv1 = maybe_sn(nn.Conv2d(ch, ch, 3, 1, 1), sn)
        self.conv2 = maybe_sn(nn.Conv2d(ch, ch, 3, 1, 1), sn)

    @property
    def n_params(self) -> int:
        return 4 * self.ch

    def forward(self, x: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        g1, b1, g2, b2 = psi.split(self.ch, dim=1)
        h = self.conv1(F.relu(adain(x, g1, b1)))
        h = self.conv2(F.relu(adain(h, g2, b2)))
        return x + h


class SelfAttention(nn.Module):
    """SAGAN self-attention (the paper puts it at 32² in E and G); used here only at low resolution."""

    def __init__(self, ch: int, sn: bool = False) -> None:
        super().__init__()
        self.q = maybe_sn(nn.Conv2d(ch, max(ch // 8, 1), 1), sn)
        self.k = maybe_sn(nn.Conv2d(ch, max(ch // 8, 1), 1), sn)
        self.v = maybe_sn(nn.Conv2d(ch, ch, 1), sn)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)  # (b, hw, c')
        k = self.k(x).flatten(2).transpose(1, 2)
        v = self.v(x).flatten(2).transpose(1, 2)  # (b, hw, c)
        o = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.gamma * o.transpose(1, 2).reshape(b, c, h, w)


# ---------------------------------------------------------------------------------------------------------
# landmark geometry: sketch rasteriser, mirror permutation, TPS


def _chain(a: int, b: int, closed: bool = False) -> list[tuple[int, int]]:
    seg = [(i, i + 1) for i in range(a, b)]
    return seg + [(b, a)] if closed else seg


# (segment list, RGB colour) per facial part, after ../shared/GUIDE.md
_PARTS: list[tuple[list[tuple[int, int]], tuple[int, int, int]]] = [
    (_chain(0, 16), (255, 255, 255)),  # jaw: white
    (_chain(17, 21), (255, 0, 0)),  # brow: red
    (_chain(22, 26), (0, 255, 0)),  # brow: green
    (_chain(27, 30) + _chain(31, 35), (0, 0, 255)),  # nose bridge + nostrils: blue
    (_chain(36, 41, closed=True), (255, 0, 255)),  # eye: magenta
    (_chain(42, 47, closed=True), (0, 255, 255)),  # eye: cyan
    (_chain(48, 59, closed=True), (255, 255, 0)),  # outer lips: yellow
    (_chain(60, 67, closed=True), (255, 255, 0)),  # inner lips: yellow
]
SEGMENTS = torch.tensor([s for segs, _ in _PARTS for s in segs], dtype=torch.long)  # (S, 2)
SEGMENT_COLOURS = torch.tensor([c for segs, c in _PARTS for _ in segs], dtype=torch.float32) / 255.0  # (S, 3)

# iBUG-68 index of each point's mirror image (for horizontal flips)
MIRROR = torch.tensor(
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65],
    dtype=torch.long,
)


def rasterise_sketch(points: torch.Tensor, size: int, thickness: float | None = None) -> torch.Tensor:
    """The paper's landmark image y: (B, 68, 2) crop-pixel points → (B, 3, size, size) in [0, 1].

    Each polyline segment is drawn as an anti-aliased capsule (thickness 2 px at 256², scaled with
    `size`); where parts overlap, the brighter colour wins per channel. Vectorised over batch and
    segments, and only over a small window around each segment, scattered into the image with a max:
    a few ms per sketch on a CPU, so the same code draws training batches on the GPU and frames at render.
    """
    b = points.shape[0]
    dev = points.device
    th = thickness if thickness is not None else max(1.0, 2.0 * size / 256)
    pts = points.float()
    seg = SEGMENTS.to(dev)
    a = pts[:, seg[:, 0]]  # (B, S, 2)
    d = pts[:, seg[:, 1]] - a
    n_seg = seg.shape[0]
    pad = th / 2 + 1.5
    lo = torch.floor(torch.minimum(a, a + d) - pad)  # window origin per segment
    span = (d.abs().amax() if d.numel() else torch.tensor(0.0)).clamp(max=size)
    w = int(torch.ceil(span + 2 * pad).item()) + 1
    offs = torch.arange(w, device=dev, dtype=torch.float32)
    px = (lo[..., 0:1] + offs)[:, :, None, :].expand(b, n_seg, w, w)  # (B, S, W, W) pixel x
    py = (lo[..., 1:2] + offs)[:, :, :, None].expand(b, n_seg, w, w)
    apx = px - a[..., 0, None, None]
    apy = py - a[..., 1, None, None]
    dx, dy = d[..., 0, None, None], d[..., 1, None, None]
    t = ((apx * dx + apy * dy) / (dx * dx + dy * dy + 1e-6)).clamp(0, 1)
    dist = torch.hypot(apx - t * dx, apy - t * dy)
    inten = (th / 2 + 0.5 - dist).clamp(0, 1)  # 1 inside the stroke, linear fall-off over one pixel
    valid = (px >= 0) & (px < size) & (py >= 0) & (py < size)
    inten = inten * valid
    idx = (py.clamp(0, size - 1) * size + px.clamp(0, size - 1)).long().flatten(1)  # (B, S*W*W)
    col = SEGMENT_COLOURS.to(dev)  # (S, 3)
    vals = (inten[:, None] * col.t()[None, :, :, None, None]).flatten(2)  # (B, 3, S*W*W)
    img = torch.zeros(b, 3, size * size, device=dev)
    img.scatter_reduce_(2, idx[:, None].expand(b, 3, -1), vals, reduce="amax", include_self=True)
    return img.view(b, 3, size, size)


def border_anchors(n_side: int = 4) -> torch.Tensor:
    """Fixed anchors on the crop border in [-1, 1] coordinates: they pin the background during TPS."""
    t = torch.linspace(-1, 1, n_side + 1)[:-1]
    top = torch.stack([t, -torch.ones_like(t)], -1)
    right = torch.stack([torch.ones_like(t), t], -1)
    bottom = torch.stack([-t, torch.ones_like(t)], -1)
    left = torch.stack([-torch.ones_like(t), -t], -1)
    return torch.cat([top, right, bottom, left])  # (4*n_side, 2)


def _tps_kernel(d2: torch.Tensor) -> torch.Tensor:
    return d2 * torch.log(d2 + 1e-9) * 0.5  # U(r) = r² log r  (= ½ r² log r²)


def tps_grid(
    src: torch.Tensor, dst: torch.Tensor, out_size: int, reg: float = 1e-3, anchors: int = 4
) -> torch.Tensor:
    """Backward-warp sampling grid from a thin-plate spline (batched, in fp32, autocast off).

    src, dst: (B, N, 2) control points in [-1, 1] (source image, target image). Returns (B, H, W, 2): for
    each target pixel the source location to sample, ready for F.grid_sample. The spline maps
    dst → src, fitted with ridge `reg` (coincident landmarks, e.g. closed eyelids, stay solvable);
    fixed border anchors keep the crop's edges in place.
    """
    with torch.autocast(device_type=src.device.type, enabled=False):
        src = src.float()
        dst = dst.float()
        bsz = src.shape[0]
        if anchors:
            anc = border_anchors(anchors).to(src.device)[None].expand(bsz, -1, -1)
            src = torch.cat([src, anc], 1)
            dst = torch.cat([dst, anc], 1)
        n = dst.shape[1]
        k = _tps_kernel((dst[:, :, None] - dst[:, None]).pow(2).sum(-1))  # (B, N, N)
        k = k + reg * torch.eye(n, device=src.device)
        p = torch.cat([torch.ones_like(dst[..., :1]), dst], -1)  # (B, N, 3)
        top = torch.cat([k, p], 2)
        bottom = torch.cat([p.transpose(1, 2), torch.zeros(bsz, 3, 3, device=src.device)], 2)
        lhs = torch.cat([top, bottom], 1)  # (B, N+3, N+3)
        rhs = torch.cat([src, torch.zeros(bsz, 3, 2, device=src.device)], 1)
        coef = torch.linalg.solve(lhs, rhs)  # (B, N+3, 2)
        g = identity_grid(out_size, src.device).reshape(1, -1, 2)  # (1, P, 2)
        u = _tps_kernel((g[:, :, None] - dst[:, None]).pow(2).sum(-1))  # (B, P, N)
        gp = torch.cat([torch.ones_like(g[..., :1]), g], -1).expand(bsz, -1, -1)
        out = u @ coef[:, :n] + gp @ coef[:, n:]
        return out.reshape(bsz, out_size, out_size, 2)


def to_unit(points: torch.Tensor, size: int) -> torch.Tensor:
    """Crop pixels (x, y) → [-1, 1] grid_sample coordinates (align_corners=False)."""
    return (points + 0.5) * (2.0 / size) - 1.0


def identity_grid(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(1, n, n, 2) grid_sample coordinates of an n² image's own pixel centres."""
    lin = torch.linspace(-1 + 1 / n, 1 - 1 / n, n, device=device)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([gx, gy], -1)[None]


def resize_grid(grid: torch.Tensor, n: int) -> torch.Tensor:
    """Resample a sampling grid to n²: the displacement is interpolated, the identity added exactly, so
    an identity grid stays exact up to the border (interpolating the grid itself would clamp there)."""
    q = grid.shape[1]
    if q == n:
        return grid
    disp = (grid.float() - identity_grid(q, grid.device)).permute(0, 3, 1, 2)
    disp = F.interpolate(disp, size=(n, n), mode="bilinear", align_corners=False)
    return identity_grid(n, grid.device) + disp.permute(0, 2, 3, 1)


def warp(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Backward warp: sample x at grid (B, h, w, 2), resized to x's own resolution when needed."""
    grid = resize_grid(grid, x.shape[-1])
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def init_weights(module: nn.Module) -> None:
    """He-normal for convs/linears (ReLU nets), zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.kaiming_normal_(w, nonlinearity="relu")
            w.data.mul_(1 / math.sqrt(2))  # residual branches: keep the sum's variance near 1
            if m.bias is not None:
                nn.init.zeros_(m.bias)
