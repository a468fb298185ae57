"""Face-region metrics for the evaluation: small pure functions on crops and 68-point landmarks.

Images are RGB uint8 (H, W, 3) face crops of the same size; points are (68, 2) crop pixels. Pixel metrics
come from kornia; the perceptual distance is LPIPS-style (Zhang et al. 2018) on the offline ImageNet
MobileNetV2 that training also uses, without LPIPS's learned channel weights (those need a download).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .motion import mouth_opening

if TYPE_CHECKING:
    import torch

    from .models.perceptual import MobileNetV2Features

__all__ = [
    "psnr",
    "ssim",
    "face_ssim",
    "face_mask",
    "perceptual",
    "unit_features",
    "perceptual_between",
    "landmark_error",
    "mouth_box",
    "mouth_l1",
    "mouth_opening",
    "yaw",
    "pitch",
    "pearson",
]

SSIM_WINDOW = 11  # Wang et al. 2004's Gaussian window
MOUTH = slice(48, 68)  # outer and inner lips
MOUTH_MARGIN = 0.3  # of the lips' box side, on each side: takes in teeth, chin and cheek folds
EYES = slice(36, 48)  # both eyes' outlines
EYES_MARGIN = 0.1  # of the eyes' box side (both eyes), on each side: lids and lashes


def _tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 → (1, 3, H, W) float in [0, 1]."""
    import torch

    # A copy: crops are often read-only views of a decoded frame, which torch warns about.
    return torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1)[None].float() / 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (peak 255); inf for identical images."""
    import kornia

    return float(kornia.metrics.psnr(_tensor(a), _tensor(b), 1.0))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity over the image and channels; 1 for identical images."""
    import kornia

    return float(kornia.metrics.ssim(_tensor(a), _tensor(b), SSIM_WINDOW).mean())


def face_mask(points: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool: inside the face outline, jaw 0–16 then the brows 26…17 (the forehead above the
    brows and the background are left out: they are not what a talking-head model is judged on)."""
    from PIL import Image, ImageDraw

    pts = np.asarray(points, np.float64)
    outline = np.concatenate([pts[0:17], pts[26:16:-1]])
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon([(float(x) + 0.5, float(y) + 0.5) for x, y in outline], fill=1)
    return np.asarray(mask, bool)


def face_ssim(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> float:
    """SSIM averaged over the face region of `points` (the real frame's landmarks) only: the whole-crop
    SSIM is dominated by background and hair, which every engine copies from the source."""
    import kornia

    ssim_map = kornia.metrics.ssim(_tensor(a), _tensor(b), SSIM_WINDOW)[0].mean(0).numpy()
    mask = face_mask(points, a.shape[0])
    return float(ssim_map[mask].mean()) if mask.any() else float("nan")


def unit_features(images: Sequence[np.ndarray], net: MobileNetV2Features) -> list[torch.Tensor]:
    """Backbone features of a batch of images at each tap, unit-normalised over channels (LPIPS's step 1).

    Separate from `perceptual` so that the evaluation computes a real frame's features once and compares
    them with every engine's output.
    """
    import torch

    device = next(net.parameters()).device
    x = torch.cat([_tensor(image) for image in images]).to(device) * 2 - 1  # the net takes [-1, 1]
    with torch.no_grad():
        taps = net(x)
    return [feat / (feat.norm(dim=1, keepdim=True) + 1e-10) for feat in taps]


def perceptual_between(fa: list[torch.Tensor], fb: list[torch.Tensor]) -> np.ndarray:
    """(B,) LPIPS-style distances between two batches of `unit_features`: the squared difference summed
    over channels and averaged over positions, then averaged over taps (no learned channel weights)."""
    per_tap = [((a - b) ** 2).sum(dim=1).mean(dim=(1, 2)) for a, b in zip(fa, fb, strict=True)]
    return (sum(per_tap) / len(per_tap)).cpu().double().numpy()


def perceptual(a: np.ndarray, b: np.ndarray, net: MobileNetV2Features) -> float:
    """LPIPS-style perceptual distance of two images; 0 for identical ones.

    Unit-normalising is what makes it perceptual rather than a feature L2: it compares which features
    fire, not how strongly, so a brightness change costs less than a changed mouth shape.
    """
    return float(perceptual_between(unit_features([a], net), unit_features([b], net))[0])


def inter_ocular(points: np.ndarray) -> float:
    """Outer-eye-corner distance (36–45): the 300-W normaliser, as in motion.mouth_opening."""
    points = np.asarray(points, np.float64)
    return float(np.linalg.norm(points[45] - points[36]))


def landmark_error(found: np.ndarray | None, true: np.ndarray) -> float:
    """Mean point-to-point distance over the 68 points, in inter-ocular distances of `true`; NaN when
    no face was found (callers report the share of frames with a face next to it)."""
    if found is None or not np.isfinite(found).all():
        return float("nan")
    true = np.asarray(true, np.float64)
    err = np.linalg.norm(np.asarray(found, np.float64) - true, axis=1).mean()
    return float(err / max(inter_ocular(true), 1e-6))


def mouth_box(points: np.ndarray, size: int, margin: float = MOUTH_MARGIN) -> tuple[int, int, int, int]:
    """Integer box (x0, y0, x1, y1) around the lips (48–67) widened by `margin`, clipped to the crop."""
    return _box_around(np.asarray(points, np.float64)[MOUTH], size, margin)


def eyes_box(points: np.ndarray, size: int, margin: float = EYES_MARGIN) -> tuple[int, int, int, int]:
    """Integer box around both eyes (36–47) widened by `margin`, clipped to the crop."""
    return _box_around(np.asarray(points, np.float64)[EYES], size, margin)


def _box_around(part: np.ndarray, size: int, margin: float) -> tuple[int, int, int, int]:
    (x0, y0), (x1, y1) = part.min(axis=0), part.max(axis=0)
    pad = margin * max(x1 - x0, y1 - y0)
    box = np.array([x0 - pad, y0 - pad, x1 + pad, y1 + pad])
    x0, y0, x1, y1 = np.clip(np.round(box), 0, size).astype(int)
    return int(x0), int(y0), int(max(x1, x0 + 1)), int(max(y1, y0 + 1))


def mouth_l1(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> float:
    """Mean absolute difference in [0, 1] inside the mouth box of `points` (the real frame's landmarks)."""
    return _l1_in(a, b, mouth_box(points, a.shape[0]))


def eyes_l1(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> float:
    """Mean absolute difference in [0, 1] inside the eyes' box of `points`: blinks and gaze."""
    return _l1_in(a, b, eyes_box(points, a.shape[0]))


def _l1_in(a: np.ndarray, b: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = box
    diff = np.abs(a[y0:y1, x0:x1].astype(np.float32) - b[y0:y1, x0:x1].astype(np.float32))
    return float(diff.mean() / 255.0)


def _along(p: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Where p falls on the segment start→end, as a fraction (0 at start, 1 at end); vectorised."""
    axis = end - start
    return ((p - start) * axis).sum(-1) / np.maximum((axis * axis).sum(-1), 1e-12)


def yaw(points: np.ndarray) -> np.ndarray:
    """Head-yaw proxy from 2D landmarks: where the nose tip (30) sits between the jaw ends (0, 16),
    -1…1, 0 when frontal, sign follows the image's x. Projections make it invariant to in-plane roll
    and scale; monotonic in yaw for moderate angles, which is all a correlation needs."""
    p = np.asarray(points, np.float64)
    return 2 * _along(p[..., 30, :], p[..., 0, :], p[..., 16, :]) - 1


def pitch(points: np.ndarray) -> np.ndarray:
    """Head-pitch proxy: where the nose tip (30) sits between the eye centre and the mouth corners'
    midpoint (48, 54), which a nod shifts: the nose foreshortens towards the eyes when the head tilts
    back. Mouth corners, not the lip centre, so that opening the mouth hardly moves it."""
    p = np.asarray(points, np.float64)
    eyes = p[..., 36:48, :].mean(axis=-2)
    mouth = (p[..., 48, :] + p[..., 54, :]) / 2
    return _along(p[..., 30, :], eyes, mouth)


def pearson(x: np.ndarray, y: np.ndarray, constant: float = float("nan")) -> float:
    """Pearson correlation over the pairs where both are finite; NaN for < 3 pairs.

    A constant series has no correlation defined: `constant` is returned then. The evaluation passes 0,
    since an output that never moves (the static engine) follows none of the driver's motion.
    """
    dx, dy = _centred_pairs(x, y)
    if dx is None:
        return float("nan")
    denom = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / denom) if denom > 1e-12 else float(constant)


def gain(y: np.ndarray, x: np.ndarray) -> float:
    """Least-squares slope of `y` on `x` over the pairs where both are finite; NaN for < 3 pairs or a
    constant `x`. The correlation says whether the output follows the driver; this says how far: an
    output mouth that opens a tenth as wide as the driver's still correlates well, and looks shut."""
    dx, dy = _centred_pairs(x, y)
    if dx is None:
        return float("nan")
    var = (dx * dx).sum()
    return float((dx * dy).sum() / var) if var > 1e-12 else float("nan")


def _centred_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The pairs where both are finite, each centred on its mean; (None, None) for < 3 pairs."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return None, None
    return x - x.mean(), y - y.mean()
