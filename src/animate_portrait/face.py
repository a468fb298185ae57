"""Face crops: a square box around the landmarks, resampled to the working size, and pasted back.

The crop is axis-aligned (see `types.Crop`) and generous, like FOMM's and LivePortrait's: the whole head
with some hair and background, so the renderer sees the head's outline and paste-back seams fall far from
the features that move.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .types import Crop, Landmarks, face_extent

SIDE = 1.9  # crop side, in face extents (the larger side of the tight landmark box)
SHIFT_Y = -0.12  # centre shift, in face extents: landmarks stop at the brows, the head goes higher
FEATHER = 0.25  # paste-back blend ramp, as a fraction of the crop's half-side
OWN_SOFTNESS = 0.03  # overlapping crops: how softly a pixel is shared (in crop radius; paste_back_all)


def _centre_side(points: np.ndarray) -> tuple[float, float, float]:
    lo, hi = np.nanmin(points, axis=0), np.nanmax(points, axis=0)
    extent = face_extent(points)
    cx, cy = (lo + hi) / 2
    return float(cx), float(cy + SHIFT_Y * extent), SIDE * extent


def crop_for(landmarks: Landmarks, size: int) -> Crop:
    """The square crop around one face (a portrait)."""
    cx, cy, side = _centre_side(landmarks.points)
    return Crop(center=(cx, cy), side=side, size=size)


def crop_track(points: np.ndarray, size: int, window: int = 15) -> list[Crop]:
    """One crop per frame, smoothed over time so the crop doesn't jitter with landmark noise (training).

    Frames without landmarks (NaN) take their crop from the neighbours. Savitzky–Golay (quadratic) follows
    deliberate head motion without lag, unlike a moving average; the side is smoothed over twice the window
    because zooming is more visible than panning.
    """
    from scipy.signal import savgol_filter  # imported here: scipy.signal costs ~0.8 s at CLI start-up

    raw = np.array([_centre_side(p) if np.isfinite(p).all() else (np.nan,) * 3 for p in points])
    ok = np.isfinite(raw).all(axis=1)
    if not ok.any():
        raise ValueError("no frame has landmarks to crop around")
    t = np.arange(len(raw))
    raw = np.stack([np.interp(t, t[ok], raw[ok, k]) for k in range(3)], axis=1)
    for k, win in ((0, window), (1, window), (2, 2 * window)):
        n = min(win | 1, len(raw) if len(raw) % 2 else len(raw) - 1)
        if n >= 5:
            raw[:, k] = savgol_filter(raw[:, k], n, 2, mode="interp")
    return [Crop(center=(float(x), float(y)), side=float(s), size=size) for x, y, s in raw]


def extract(image: np.ndarray, crop: Crop) -> np.ndarray:
    """The crop as (size, size, 3) uint8; where it leaves the image, border pixels are replicated.

    Only the crop's region is copied (padded with edge pixels as needed), then PIL resamples it with an
    antialiasing filter: ~1 ms at 256², independent of the picture's size.
    """
    h, w = image.shape[:2]
    ox, oy = crop.origin
    # The margin keeps PIL's box inside the region: the box shifts by up to half a crop pixel, which is
    # many image pixels when the crop shrinks a big face (scale < 1).
    m = math.ceil(0.5 / crop.scale) + 1
    x0, y0 = math.floor(ox) - m, math.floor(oy) - m
    x1, y1 = math.ceil(ox + crop.side) + m + 1, math.ceil(oy + crop.side) + m + 1
    region = image[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]
    pad = ((max(-y0, 0), max(y1 - h, 0)), (max(-x0, 0), max(x1 - w, 0)), (0, 0))
    if region.size == 0:  # the crop lies wholly outside: replicate the nearest border pixel
        region = image[min(max(y0, 0), h - 1) : min(max(y0, 0), h - 1) + 1, min(max(x0, 0), w - 1) :][:, :1]
        pad = ((0, y1 - y0 - 1), (0, x1 - x0 - 1), (0, 0))
    if any(p for axis in pad for p in axis):
        region = np.pad(region, pad, mode="edge")
    # Pixel centres: crop pixel u <-> image point origin + u / scale (as Crop.to_crop), so in PIL's
    # edge coordinates the box starts half a source pixel in, less half a crop pixel.
    half = 0.5 - 0.5 / crop.scale
    box = (ox - x0 + half, oy - y0 + half, ox - x0 + half + crop.side, oy - y0 + half + crop.side)
    out = Image.fromarray(np.ascontiguousarray(region)).resize(
        (crop.size, crop.size), Image.BILINEAR, box=box
    )
    return np.asarray(out)


def paste_back(image: np.ndarray, face: np.ndarray, crop: Crop) -> np.ndarray:
    """A copy of `image` with `face` (a rendered crop) blended into the crop's box.

    The mask is a rounded square (superellipse) that is 1 in the middle and falls smoothly to 0 at the
    crop's border, so no seam shows; pixels outside the box are untouched.
    """
    return paste_back_all(image, [face], [crop])


def paste_back_all(image: np.ndarray, faces: Sequence[np.ndarray], crops: Sequence[Crop]) -> np.ndarray:
    """A copy of `image` with every rendered crop blended in (several faces of one picture).

    Where crops overlap, a pixel goes to the crop whose centre it is nearest, in each crop's own
    superellipse radius (a soft choice, OWN_SOFTNESS): a neighbour's crop holds this face's pixels only as
    its still background, and must not blend them back in. The blend is a sum of each crop's change over
    its own box, so memory stays at one box whatever the picture's size and the faces' spread.
    """
    h, w = image.shape[:2]
    boxes = [_box(crop, w, h) for crop in crops]
    out = image.copy()
    for face, crop, box in zip(faces, crops, boxes, strict=True):
        if box is None:
            continue
        x0, y0, x1, y1 = box
        radius = _radius(crop, *box)
        alpha = _smoothstep(np.clip((1.0 - radius) / FEATHER, 0.0, 1.0))
        others = [
            _radius(c, *box) for c, b in zip(crops, boxes, strict=True) if c is not crop and _meet(b, box)
        ]
        if others:
            nearest = np.minimum(radius, np.min(others, axis=0))
            own = np.exp(-(radius - nearest) / OWN_SOFTNESS)
            alpha = alpha * own / (own + sum(np.exp(-(r - nearest) / OWN_SOFTNESS) for r in others))
        below = image[y0:y1, x0:x1].astype(np.float32)  # the picture's own pixels: changes add up
        change = alpha[..., None] * (_resampled(face, crop, box) - below)
        out[y0:y1, x0:x1] = np.clip(out[y0:y1, x0:x1] + change + 0.5, 0, 255).astype(np.uint8)
    return out


def _meet(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int]) -> bool:
    return a is not None and a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _box(crop: Crop, w: int, h: int) -> tuple[int, int, int, int] | None:
    """The image pixels [y0:y1, x0:x1] a crop covers, or None when it lies wholly outside."""
    ox, oy = crop.origin
    x0, y0 = max(math.floor(ox), 0), max(math.floor(oy), 0)
    x1, y1 = min(math.ceil(ox + crop.side), w), min(math.ceil(oy + crop.side), h)
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)


def _resampled(face: np.ndarray, crop: Crop, box: tuple[int, int, int, int]) -> np.ndarray:
    """The rendered crop on the image pixels of `box` (the inverse of `extract`'s mapping), float32."""
    x0, y0, x1, y1 = box
    ox, oy = crop.origin
    # Edge padding keeps PIL's box inside the face where the box rounds outward by up to 1.5 image pixels.
    s = crop.scale
    p = math.ceil(2 * s) + 1
    padded = np.pad(face, ((p, p), (p, p), (0, 0)), mode="edge")
    edges = tuple(p + (v - o) * s + 0.5 - 0.5 * s for v, o in ((x0, ox), (y0, oy), (x1, ox), (y1, oy)))
    resized = Image.fromarray(padded).resize((x1 - x0, y1 - y0), Image.BILINEAR, box=edges)
    return np.asarray(resized, np.float32)


def _radius(crop: Crop, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Superellipse radius of image pixels [y0:y1, x0:x1] in the crop: 0 at its centre, 1 on its border.
    p=4: a rounded square that fills the crop better than an ellipse."""
    cx, cy = crop.center
    half = crop.side / 2
    nx = np.abs((np.arange(x0, x1, dtype=np.float32) - cx) / half)[None, :]
    ny = np.abs((np.arange(y0, y1, dtype=np.float32) - cy) / half)[:, None]
    return (nx**4 + ny**4) ** 0.25


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3 - 2 * t)
