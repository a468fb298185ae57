"""Mouth interior: where the target's lips part further than the portrait's, paint the opening.

A warp (the TPS engine, and the neural engine's flow) can only move the portrait's own pixels. A closed
painted mouth has no interior to move, so lips pulled apart show stretched lip and skin: neither a
viewer nor a landmark detector sees an open mouth (on a Mona Lisa driven by a talking clip, dlib found
the output's mouth opening at 0.005 where the target asked for 0.10). Until the generator draws the
interior itself, this stage paints it, as 2-D face animators do: the inner-lip polygon (points 60–67)
is filled with a dark shade of the portrait's own lip colour, with an upper-teeth band once the gap is
wide enough, and blended in by how much further the lips part than in the source. A portrait whose
mouth is already open (a smile with teeth) keeps its own interior: moved with the upper lip, as upper
teeth are, with the dark opening below it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..motion import similarity
from ..types import SourceFace
from .base import Renderer

INNER = list(range(60, 68))  # inner lip contour, iBUG 68 layout: 60 and 64 are the corners
UPPER, LOWER = (61, 62, 63), (67, 66, 65)  # facing pairs across the inner lips
OUTER_LIP = list(range(48, 60))
SUPERSAMPLE = 4  # polygon anti-aliasing
FADE_PX = 3.0  # the extra gap (crop px) over which the fill fades in, so a slight parting stays subtle
TEETH_FROM = 0.15  # teeth show once the gap exceeds this share of the mouth's width
OWN_INTERIOR_PX = 2.0  # a source gap this wide (crop px) shows its own interior: teeth to keep
SHADE = 0.22  # interior = lip colour × SHADE (keeps the hue: warm on a painting, pink on a photo)
# Upper-teeth band: opacity, the share of the gap it covers before fading out over as much again, and
# how much it takes of the face's own light tone rather than of ivory.
TEETH_ALPHA, TEETH_DEPTH, TEETH_SKIN = 0.55, 0.15, 0.7


def inner_gap(points: np.ndarray) -> np.ndarray:
    """(…, 68, 2) → (…,) mean distance between the facing inner-lip points, in the points' unit."""
    p = np.asarray(points, np.float32)
    return np.linalg.norm(p[..., UPPER, :] - p[..., LOWER, :], axis=-1).mean(-1)


def _mouth_mask(points: np.ndarray, box: tuple[int, int, int, int], blur: float) -> np.ndarray:
    """Soft mask (h, w) in [0, 1] of the inner-lip polygon inside `box` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    canvas = Image.new("L", (w * SUPERSAMPLE, h * SUPERSAMPLE), 0)
    poly = [((x - x0) * SUPERSAMPLE, (y - y0) * SUPERSAMPLE) for x, y in points[INNER]]
    ImageDraw.Draw(canvas).polygon(poly, fill=255)
    small = canvas.resize((w, h), Image.Resampling.BOX)
    if blur > 0:
        small = small.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(small, np.float32) / 255.0


def _lip_colour(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Median colour under the outer-lip points (robust to a highlight or two)."""
    s = frame.shape[0]
    xy = np.clip(np.round(points[OUTER_LIP]).astype(int), 0, s - 1)
    return np.median(frame[xy[:, 1], xy[:, 0]].astype(np.float32), axis=0)


def _skin_light(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The face's light tone: 90th percentile of the colours between the eyes and the mouth (not the
    whole crop, whose background, a sky or a landscape, would tint the teeth)."""
    s = frame.shape[0]
    x0, y0 = np.clip(np.floor(points[36:55].min(0)).astype(int), 0, s - 1)
    x1, y1 = np.clip(np.ceil(points[36:55].max(0)).astype(int), 1, s)
    patch = frame[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].reshape(-1, 3).astype(np.float32)
    return np.percentile(patch, 90, axis=0)


@dataclass(frozen=True)
class MouthSource:
    """The source whose mouth is the most open (its crop and landmarks): its own interior, teeth
    included, is what an opening shows first."""

    face: np.ndarray  # (S, S, 3) uint8
    points: np.ndarray  # (68, 2) crop px
    gap: float

    @classmethod
    def widest(cls, sources: Sequence[SourceFace]) -> MouthSource:
        best = max(sources, key=lambda src: float(inner_gap(src.points)))
        return cls(best.face, np.asarray(best.points, np.float32), float(inner_gap(best.points)))


def _own_interior(
    source: MouthSource, target: np.ndarray, box: tuple[int, int, int, int], blur: float
) -> tuple[np.ndarray, np.ndarray]:
    """The source's own mouth interior (pixels, soft mask) moved with the target's upper lip.

    Upper teeth are fixed to the skull, so they follow the upper lip, not the stretched gap: a
    similarity from the source's upper inner lip (60–64) to the target's carries them; the warp instead
    stretches them over the whole opening."""
    x0, y0, x1, y1 = box
    upper = [60, 61, 62, 63, 64]
    src = source.points[upper, 0] + 1j * source.points[upper, 1]
    dst = target[upper, 0] + 1j * target[upper, 1]
    a, b = similarity(src.astype(np.complex128), dst.astype(np.complex128))
    inv = 1.0 / a
    p, q = inv.real, inv.imag
    ox, oy = x0 - b.real, y0 - b.imag
    coeffs = (p, -q, p * ox - q * oy, q, p, q * ox + p * oy)  # output box pixel -> source crop pixel
    pixels = Image.fromarray(source.face).transform(
        (x1 - x0, y1 - y0), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
    )
    moved = source.points.copy()
    z = a * (moved[:, 0] + 1j * moved[:, 1]) + b
    moved[:, 0], moved[:, 1] = z.real, z.imag
    return np.asarray(pixels, np.float32), _mouth_mask(moved, box, blur)


def paint_interior(frame: np.ndarray, target: np.ndarray, source: MouthSource) -> np.ndarray:
    """Paint the mouth interior of one (S, S, 3) uint8 crop posed by `target` (68, 2) crop px."""
    gap = float(inner_gap(target))
    alpha = float(np.clip((gap - source.gap) / FADE_PX, 0.0, 1.0))
    if alpha <= 0.0:
        return frame
    s = frame.shape[0]
    inner = target[INNER]
    x0, y0 = np.floor(inner.min(0)).astype(int) - 3
    x1, y1 = np.ceil(inner.max(0)).astype(int) + 4
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, s), min(y1, s)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return frame
    box = (x0, y0, x1, y1)
    width = float(np.linalg.norm(target[64] - target[60]))
    blur = max(0.5, gap * 0.08)
    mask = _mouth_mask(target, box, blur) * alpha
    interior = np.empty((y1 - y0, x1 - x0, 3), np.float32)
    interior[:] = _lip_colour(frame, target) * SHADE
    if source.gap >= OWN_INTERIOR_PX:
        # the portrait shows its own interior (teeth): keep it under the upper lip, dark below it
        own, own_mask = _own_interior(source, target, box, blur)
        interior = own_mask[..., None] * own + (1.0 - own_mask[..., None]) * interior
    elif gap > TEETH_FROM * width:
        # upper teeth: a light band just under the upper inner lip, tinted by the portrait's own light
        # tones (ivory on a photo, yellowed on a varnished painting), fading downwards
        face_light = _skin_light(frame, target)
        teeth = 0.92 * (TEETH_SKIN * face_light + (1 - TEETH_SKIN) * np.array([250.0, 245.0, 235.0]))
        upper_y = np.interp(np.arange(x0, x1), inner[[0, 1, 2, 3, 4], 0], inner[[0, 1, 2, 3, 4], 1])
        depth = (np.arange(y0, y1)[:, None] - upper_y[None, :]) / max(gap, 1.0)  # 0 at the upper lip
        band = TEETH_ALPHA * np.clip(1.0 - (depth - TEETH_DEPTH) / TEETH_DEPTH, 0.0, 1.0)[..., None]
        interior = band * teeth + (1.0 - band) * interior
    out = frame.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    blended = region * (1 - mask[..., None]) + interior * mask[..., None]
    out[y0:y1, x0:x1] = np.clip(blended, 0, 255).astype(np.uint8)
    return out


class MouthFilled:
    """A Renderer that paints the mouth interior onto another renderer's frames (see the module doc).

    Everything else (size, `use_person`, …) is the wrapped renderer's."""

    def __init__(self, inner: Renderer) -> None:
        self.inner = inner
        self.size = inner.size
        self._source: MouthSource | None = None

    def __getattr__(self, name: str):  # only called for attributes this wrapper lacks
        return getattr(self.inner, name)

    def prepare(self, sources: Sequence[SourceFace]) -> None:
        self.inner.prepare(sources)
        self._source = MouthSource.widest(sources)

    def render(self, targets: np.ndarray) -> np.ndarray:
        frames = self.inner.render(targets)
        pts = np.asarray(targets, np.float32)
        if self._source is None:
            raise RuntimeError("render() before prepare()")
        return np.stack([paint_interior(f, p, self._source) for f, p in zip(frames, pts, strict=True)])

    # Several portraits per forward pass (group.py), when the wrapped renderer has them (`groups`).
    def prepare_group(self, groups: Sequence[Sequence[SourceFace]]) -> None:
        self.inner.prepare_group(groups)
        self._group_sources = [MouthSource.widest(sources) for sources in groups]

    def render_group(self, targets: np.ndarray) -> np.ndarray:
        frames = self.inner.render_group(targets)
        pts = np.asarray(targets, np.float32)
        return np.stack(
            [
                [paint_interior(f, p, source) for f, p in zip(own, own_pts, strict=True)]
                for own, own_pts, source in zip(frames, pts, self._group_sources, strict=True)
            ]
        )
