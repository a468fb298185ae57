"""The losses of Zakharov et al. 2019 (Sec. 3.2), with the perceptual term on an offline MobileNetV2.

G and E minimise   L_CNT + L_ADV + L_MCH:
    L_CNT   content: pixel L1 + perceptual L1 over MobileNetV2 features (the paper: VGG19 + VGGFace);
    L_ADV = −D(x̂, y, i) + feature matching (L1 between D's features of real and fake) × 10;
    L_MCH = ‖W_i − ê_i‖₁ × 80, here as the per-element *mean* (the sum over 256 dims × 80 swamps every
            other term at the start; the mean keeps the paper's relative weighting per element).
D minimises the hinge loss  max(0, 1 − r(x)) + max(0, 1 + r(x̂)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.perceptual import MobileNetV2Features, perceptual_l1

__all__ = [
    "adversarial_g",
    "feature_matching",
    "mouth_l1",
    "outside_face",
    "warp_pyramid_l1",
    "hinge_d",
    "match_loss",
    "perceptual_l1",
    "MobileNetV2Features",
]


def hinge_d(r_real: torch.Tensor, r_fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss."""
    return F.relu(1 - r_real).mean() + F.relu(1 + r_fake).mean()


def adversarial_g(r_fake: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial term −r(x̂)."""
    return -r_fake.mean()


def feature_matching(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Σ over D's blocks of the mean L1 between real and fake features (real ones are targets)."""
    return sum(F.l1_loss(f, r.detach()) for r, f in zip(real, fake, strict=False))


def match_loss(w_i: torch.Tensor, e_hat: torch.Tensor) -> torch.Tensor:
    """L_MCH = ‖W_i − ê_i‖₁, averaged over elements and batch."""
    return (w_i - e_hat).abs().mean()


def mouth_l1(fake: torch.Tensor, real: torch.Tensor, pts: torch.Tensor, margin: float = 0.25) -> torch.Tensor:
    """Mean L1 inside each target's mouth box (landmarks 48–67, grown by `margin` of its size)."""
    s = fake.shape[-1]
    m = pts[:, 48:68]
    lo, hi = m.amin(1), m.amax(1)
    pad = (hi - lo) * margin
    lo, hi = (lo - pad).clamp(0, s - 1), (hi + pad).clamp(1, s)
    ax = torch.arange(s, device=fake.device, dtype=torch.float32)
    inx = (ax[None] >= lo[:, 0:1]) & (ax[None] < hi[:, 0:1])  # (B, S) columns
    iny = (ax[None] >= lo[:, 1:2]) & (ax[None] < hi[:, 1:2])  # (B, S) rows
    box = (iny[:, :, None] & inx[:, None, :]).float()[:, None]  # (B, 1, S, S)
    diff = (fake - real).abs() * box
    return diff.sum() / (box.sum() * fake.shape[1]).clamp(min=1.0)


def outside_face(pts: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, S, S) 1 outside each face outline (jaw 0–16, then the brows 26…17, as metrics.face_mask), 0
    inside: an even-odd test of every pixel centre against the outline's edges, vectorised."""
    outline = torch.cat([pts[:, 0:17], pts[:, 17:27].flip(1)], 1).float()  # (B, N, 2)
    a, b = outline[:, None, None], outline.roll(-1, 1)[:, None, None]  # each edge a → b, (B, 1, 1, N, 2)
    a_x, a_y, b_x, b_y = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    centres = torch.arange(size, device=pts.device, dtype=torch.float32)  # pixel centres: integer coords
    x, y = centres[None, None, :, None], centres[None, :, None, None]
    crosses = (a_y > y) != (b_y > y)
    x_at = a_x + (y - a_y) * (b_x - a_x) / torch.where(b_y == a_y, torch.ones_like(b_y), b_y - a_y)
    inside = (crosses & (x < x_at)).sum(-1) % 2 == 1  # (B, S, S)
    return (~inside).float()[:, None]


def warp_pyramid_l1(warped: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted L1 of the warped source against the target, at full size and averaged over 2², 4² and 8²
    blocks: the coarse levels give a displacement of more than a pixel or two a gradient. (A CPU try on
    the flow net alone: docs/RESULTS.md, "Where the error lies".)"""
    total = warped.new_zeros(())
    for f in (1, 2, 4, 8):  # a 1×1 average is the image itself
        w = F.avg_pool2d(weight, f)
        diff = (F.avg_pool2d(warped, f) - F.avg_pool2d(target, f)).abs()
        total = total + (diff * w).sum() / (w.sum() * warped.shape[1]).clamp(min=1.0)
    return total / 4
