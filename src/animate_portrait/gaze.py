"""Gaze: where the irises look, read in the driver and carried over to the portrait.

The 68 landmarks ring the eyes but do not say where the irises are, so a face moved by them keeps the
portrait's stare while the driver glances aside (LivePortrait and First Order Motion Model carry gaze in
their learned keypoints). This stage reads each iris as the centroid of the darkest pixels inside the
eye's opening (a smooth curve through its landmarks), in eye-corner coordinates: `u` along the line from
the eye's left corner to its right one (0 the middle, ±0.5 the corners), `v` across it (down positive),
both in eye widths. The two eyes' readings are averaged: they look the same way, and the mean halves the
noise.

Gaze is relative, as the rest of the motion: the driver's change from its usual gaze (its median over
the clip, since a speaker mostly looks at the camera) moves the portrait's irises from where the portrait
holds them, by a local warp of each eye's opening in the rendered crop that fades out across the lids.
Only `u` is carried over. `v` is read (and kept in motion files) but mostly says where the lids are,
which the landmarks carry already; moving the iris up or down with it smeared the lids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import map_coordinates, median_filter

from .motion import fill_gaps

REGIONS = ("all", "expression", "eyes")  # the --region choices that take the driver's gaze (motion.REGIONS)
EYES = (np.arange(36, 42), np.arange(42, 48))  # each: left corner, 2 upper lid, right corner, 2 lower lid
DARK_PERCENTILE = 30  # the iris (and pupil) is the darkest ~third of the open eye
# An eye is read only where its white stands out from its iris: its 90th-percentile luma at least MIN_CONTRAST
# grey levels and MIN_RATIO times above the DARK_PERCENTILE one. Dark glasses, goggles or landmarks on fur
# have no such white: among the 264 portraits of ../shared with a dlib face, the 7 eyes below either bound
# were those and one dark blur (docs/RESULTS.md, "Gaze").
MIN_CONTRAST, MIN_RATIO = 12.0, 1.2
MIN_OPEN = 0.18  # lid gap / eye width below which an eye counts as shut: no iris to read
MIN_WIDTH_PX = 8.0  # an eye narrower than this is too small to read
MEDIAN_FRAMES = 5  # a one- or two-frame misreading (a lash, a reflection) is dropped; a glance is kept
# How far the portrait's iris may be taken, in eye widths from the eye's middle (its own offset plus the
# driver's change): beyond it the iris is squeezed into the corner. MAX_V 0: no move across the eye.
MAX_U, MAX_V = 0.25, 0.0
SUPERSAMPLE = 4  # polygon anti-aliasing
CORE, REACH = 0.3, 0.75  # the warp moves the iris whole within CORE eye widths, fading out to REACH
OUTLINE_STEPS = 6  # points per landmark-to-landmark segment of the curved lid outline
# The landmarks sit on the lid margins, and an iris runs on under them: the warp moves the whole opening
# and fades out across the lids, reaching zero at the opening made this much taller. A fade, not a cut:
# a lid line cut by the edge of the moved area would break in two.
LID_REACH = 1.6


def _frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """An eye's (6, 2) points → its left corner, unit axis along the eye, width."""
    axis = points[3] - points[0]
    width = float(np.hypot(*axis))
    return points[0], axis / max(width, 1e-6), width


def _opening(points: np.ndarray, width: float) -> float:
    return float((np.hypot(*(points[5] - points[1])) + np.hypot(*(points[4] - points[2]))) / 2 / width)


def _outline(eye: np.ndarray) -> np.ndarray:
    """The eye's opening as a closed curve: a Catmull-Rom spline through its 6 points. The hexagon between
    the points cuts off the arc of each lid, where the top of an iris shows (and would be left behind)."""
    ring = np.concatenate([eye[-1:], eye, eye[:2]])  # closed: each segment sees its two neighbours
    t = np.linspace(0, 1, OUTLINE_STEPS, endpoint=False)[None, :, None]
    # all six segments at once: (6, 1, 2) control points against (1, OUTLINE_STEPS, 1) steps
    p0, p1, p2, p3 = (ring[i : i + 6, None] for i in range(4))
    a, b, c = p2 - p0, 2 * p0 - 5 * p1 + 4 * p2 - p3, 3 * p1 - p0 - 3 * p2 + p3
    return (p1 + 0.5 * (a * t + b * t**2 + c * t**3)).reshape(-1, 2)


def _polygon_mask(points: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """Soft (h, w) mask in [0, 1] of the polygon `points` (image px) in the box at (x0, y0)."""
    canvas = Image.new("L", (w * SUPERSAMPLE, h * SUPERSAMPLE), 0)
    poly = ((np.asarray(points, np.float64) - (x0, y0)) * SUPERSAMPLE).ravel().tolist()  # x, y, x, y, …
    ImageDraw.Draw(canvas).polygon(poly, fill=255)
    return np.asarray(canvas.resize((w, h), Image.Resampling.BOX), np.float32) / 255.0


def _box(points: np.ndarray, margin: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x0, y0 = np.floor(points.min(0) - margin).astype(int)
    x1, y1 = np.ceil(points.max(0) + margin).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def _iris_centre(image: np.ndarray, eye: np.ndarray) -> np.ndarray | None:
    """Image px centre of the iris in one eye, or None where the eye is shut, tiny or off the image."""
    _, _, width = _frame(eye)
    if width < MIN_WIDTH_PX or _opening(eye, width) < MIN_OPEN:
        return None
    opening = _outline(eye)
    x0, y0, x1, y1 = _box(opening, 1.0, image.shape)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    mask = _polygon_mask(opening, x0, y0, x1 - x0, y1 - y0) > 0.5
    if mask.sum() < 6:
        return None
    luma = image[y0:y1, x0:x1].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    threshold, white = np.percentile(luma[mask], DARK_PERCENTILE), np.percentile(luma[mask], 90)
    if white - threshold < MIN_CONTRAST or white < MIN_RATIO * threshold:
        return None  # no white around a darker iris: nothing here says where the eye looks
    # every pixel as dark as the threshold counts, darker ones more (a flat eye reads as its middle)
    weight = (luma <= threshold) * (1.0 + threshold - luma) * mask
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5  # pixel centres
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


def read_gaze(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(2,) the irises' mean offset (u, v) in eye widths; NaN when neither eye can be read."""
    readings = []
    for idx in EYES:
        eye = np.asarray(points[idx], np.float64)
        centre = _iris_centre(image, eye)
        if centre is None:
            continue
        corner, axis, width = _frame(eye)
        d = centre - corner
        readings.append((d @ axis / width - 0.5, d @ np.array([-axis[1], axis[0]]) / width))
    return np.mean(readings, axis=0) if readings else np.full(2, np.nan)


def gaze_track(readings: np.ndarray) -> np.ndarray | None:
    """(T, 2) per-frame readings (NaN: unread, as in a blink) → filled and de-spiked; None if none read."""
    readings = np.asarray(readings, np.float32)
    read = np.isfinite(readings).all(axis=1)
    if not read.any():
        return None
    filled = fill_gaps(readings, read)
    return median_filter(filled, size=(MEDIAN_FRAMES, 1), mode="nearest").astype(np.float32)


def gaze_changes(gaze: np.ndarray) -> np.ndarray:
    """(T, 2) the driver's gaze minus its usual gaze (the median over the clip)."""
    gaze = np.asarray(gaze, np.float32)
    return gaze - np.median(gaze, axis=0)


@dataclass(frozen=True)
class GazeMoves:
    """What moves the irises of P portraits over a chunk of t frames: each portrait's own gaze (read once
    a run) and the driver's change at each frame."""

    own: np.ndarray  # (P, 2)
    changes: np.ndarray  # (t, 2)

    def apply(self, crops: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """(P, t, S, S, 3) crops rendered at (P, t, 68, 2) targets → the same with their irises moved."""
        each = zip(crops, targets, self.own, strict=True)
        return np.stack([follow(c, points, own, self.changes) for c, points, own in each])


def follow(crops: np.ndarray, targets: np.ndarray, own: np.ndarray, changes: np.ndarray) -> np.ndarray:
    """Move the irises of rendered crops (N, S, S, 3) by the driver's gaze changes (N, 2).

    `targets` (N, 68, 2) are the landmarks the crops were rendered at; `own` (2,) is the portrait's gaze,
    which the change moves from (clamped to MAX_U, MAX_V: the iris stays inside the eye). A portrait whose
    gaze was not read (NaN: shut eyes, dark glasses) keeps its eyes as rendered."""
    own = np.asarray(own, np.float64)
    out = np.array(crops, copy=True)
    if not np.isfinite(own).all():
        return out
    for n in range(len(out)):
        goal = np.clip(own + changes[n], (-MAX_U, -MAX_V), (MAX_U, MAX_V))
        move = goal - np.clip(own, (-MAX_U, -MAX_V), (MAX_U, MAX_V))
        if np.abs(move).max() < 1e-3:
            continue
        for idx in EYES:
            _shift_iris(out[n], np.asarray(targets[n][idx], np.float64), own, move)
    return out


def _shift_iris(crop: np.ndarray, eye: np.ndarray, own: np.ndarray, move: np.ndarray) -> None:
    """In place: one eye's opening (its curved outline) warped so that its iris moves by `move` (eye
    widths), the warp fading out across the lids (LID_REACH) and towards the corners."""
    corner, axis, width = _frame(eye)
    if width < MIN_WIDTH_PX / 2:
        return
    across = np.array([-axis[1], axis[0]])
    shift = width * (move[0] * axis + move[1] * across)  # px
    # Where the warp put the iris: the portrait's own offset, in the target eye's frame.
    here = corner + width * ((own[0] + 0.5) * axis + own[1] * across)
    there = here + shift
    opening = _outline(eye)
    middle = opening.mean(0)
    along, up = (opening - middle) @ axis, (opening - middle) @ across
    tall = [middle + np.outer(along, axis) + np.outer(up * k, across) for k in np.linspace(1, LID_REACH, 5)]
    x0, y0, x1, y1 = _box(tall[-1], 1.0, crop.shape)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return
    # 1 in the opening, fading to 0 across the lids
    fade = np.mean([_polygon_mask(ring, x0, y0, x1 - x0, y1 - y0) for ring in tall], axis=0)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    dist = np.hypot(xs - there[0], ys - there[1]) / width
    t = np.clip((REACH - dist) / (REACH - CORE), 0.0, 1.0)
    weight = t * t * (3 - 2 * t) * fade  # smoothstep: 1 on the iris, 0 towards the corners and lids
    # Backward warp: each output pixel takes the colour from where the moved iris came from, read in a
    # box around the eye that reaches as far as the shift does. The displacement is continuous and zero
    # at the box's edge, so nothing tears.
    bx0, by0, bx1, by1 = _box(tall[-1], float(np.abs(shift).max()) + 2.0, crop.shape)
    around = crop[by0:by1, bx0:bx1].astype(np.float32)
    rows = ys - weight * shift[1] - 0.5 - by0
    cols = xs - weight * shift[0] - 0.5 - bx0
    warped = np.stack(
        [map_coordinates(around[..., c], [rows, cols], order=1, mode="nearest") for c in range(3)], axis=-1
    )
    moved = weight > 0
    patch = crop[y0:y1, x0:x1]
    patch[moved] = np.clip(np.round(warped[moved]), 0, 255).astype(np.uint8)
