"""Mouth interior: where the target's lips part further than the portrait's, paint the opening.

A warp (the TPS engine, and the neural engine's flow) can only move the portrait's own pixels. A closed
painted mouth has no interior to move, so lips pulled apart show stretched lip and skin: neither a
viewer nor a landmark detector sees an open mouth (on a Mona Lisa driven by a talking clip, dlib found
the output's mouth opening at 0.005 where the target asked for 0.10). Until the generator draws the
interior itself, this stage paints it, as 2-D face animators do, inside the inner-lip polygon (points
60–67), blended in by how much further the lips part than in the source.

By default the opening is a dark shade of the portrait's own lip colour, with an upper-teeth band once
the gap is wide enough. A portrait whose mouth is already open (a smile with teeth) keeps its own
interior: moved with the upper lip, as upper teeth are, with the dark opening below it.

With `--mouth-interior driver` the opening shows what the driver's does (Averbuch-Elor et al. 2017,
"Bringing portraits to life", take the driver's mouth interior too): while the driver is tracked,
`read_interior` reads its own opening row by row from the upper inner lip down to the lower one, how light
it is against its skin and how white (teeth) or coloured (a tongue). The portrait's opening is painted
with that profile in its own tones (teeth tinted by its skin, the dark and the tongue by its lip colour),
so a grin shows two rows of teeth and a shout a dark cavity. Not the default: dlib follows such a mouth
less well (docs/RESULTS.md, "What the mouth shows").
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.ndimage import map_coordinates

from ..motion import similarity
from ..types import SourceFace
from .base import Renderer, Traced

INNER = list(range(60, 68))  # inner lip contour, iBUG 68 layout: 60 and 64 are the corners
UPPER, LOWER = (61, 62, 63), (67, 66, 65)  # facing pairs across the inner lips
OUTER_LIP = list(range(48, 60))
SUPERSAMPLE = 4  # polygon anti-aliasing
FADE_PX = 3.0  # the extra gap (crop px) over which the fill fades in, so a slight parting stays subtle
TEETH_FROM = 0.15  # teeth show once the gap exceeds this share of the mouth's width
OWN_INTERIOR_PX = 2.0  # a source gap this wide (crop px) shows its own interior: teeth to keep
SHADE = 0.22  # interior = lip colour × SHADE (keeps the hue: warm on a painting, pink on a photo)
# The default upper-teeth band: opacity, the share of the gap it covers before fading out over as much
# again. Teeth take this much of the face's own light tone rather than of ivory.
TEETH_ALPHA, TEETH_DEPTH, TEETH_SKIN = 0.55, 0.15, 0.7
# The driver's interior profile: rows from the upper inner lip (0) to the lower one, read over the middle
# of the mouth (its corners are in shadow, and painted so: CORNER_SHADE, the share of the width from each
# corner over which teeth fade into the dark). Two values a row: how light (against the skin's light tone)
# and how white (1: teeth, 0: as coloured as the skin or more, a tongue or lip; a tongue is about as light
# as teeth, and told from them by its colour).
PROFILE_ROWS = 16
PROFILE = (2, PROFILE_ROWS)
READ_SPAN = (0.15, 0.85)
MIN_READ_GAP = 0.04  # a gap narrower than this share of the mouth's width (or 2 px) is not read
CORNER_SHADE = 0.2
# A row's lightness maps to the portrait's tones: at DARK or below the dark interior, at TEETH or above its
# teeth (white rows) or tongue (coloured rows: its lip colour × TONGUE), in between a blend.
DARK, TEETH = 0.3, 1.0
TONGUE = 0.75
# Whiteness of a pixel: (WHITE_SAT - its saturation / the skin's) / SAT_SPAN + (its lightness - WHITE_LIGHT)
# / LIGHT_SPAN, within [0, 1]: 1 for teeth, 0 for a tongue (read_interior)
WHITE_SAT, SAT_SPAN, WHITE_LIGHT, LIGHT_SPAN = 1.05, 0.3, 0.8, 0.4
# What is inside fades into the dark over this share of the gap next to each lip: where teeth meet lips, a
# real mouth has a dark line (the lips' shadow, their inner side); without it, teeth painted up to the lips
# read as lip to dlib, so an opening mouth measured as a shut one (docs/RESULTS.md, "What the mouth shows").
RIM = 0.15
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def inner_gap(points: np.ndarray) -> np.ndarray:
    """(…, 68, 2) → (…,) mean distance between the facing inner-lip points, in the points' unit."""
    p = np.asarray(points, np.float32)
    return np.linalg.norm(p[..., UPPER, :] - p[..., LOWER, :], axis=-1).mean(-1)


def _mouth_mask(points: np.ndarray, box: tuple[int, int, int, int], blur: float) -> np.ndarray:
    """Soft mask (h, w) in [0, 1] of the inner-lip polygon inside `box` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    canvas = Image.new("L", (w * SUPERSAMPLE, h * SUPERSAMPLE), 0)
    poly = ((np.asarray(points[INNER], np.float64) - (x0, y0)) * SUPERSAMPLE).ravel().tolist()
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


def _skin_light(frame: np.ndarray, points: np.ndarray, around: slice = slice(36, 55)) -> np.ndarray:
    """The face's light tone: 90th percentile of the colours in the box `around` these points, by default
    from the eyes to the mouth's corners (not the whole crop, whose background, a sky or a landscape,
    would tint the teeth)."""
    size = np.array(frame.shape[1::-1])  # (w, h): a driver's frame need not be square
    x0, y0 = np.clip(np.floor(points[around].min(0)).astype(int), 0, size - 1)
    x1, y1 = np.clip(np.ceil(points[around].max(0)).astype(int), 1, size)
    patch = frame[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].reshape(-1, 3).astype(np.float32)
    return np.percentile(patch, 90, axis=0)


def _between_lips(points: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Points at fractions `u` (corner 60 to corner 64) along the mouth and `v` (upper inner lip to lower)
    across it: (len(v), len(u), 2)."""
    knots = np.linspace(0.0, 1.0, 5)
    upper, lower = points[[60, 61, 62, 63, 64]], points[[60, 67, 66, 65, 64]]
    up = np.stack([np.interp(u, knots, upper[:, k]) for k in range(2)], -1)
    low = np.stack([np.interp(u, knots, lower[:, k]) for k in range(2)], -1)
    return up[None] * (1.0 - v[:, None, None]) + low[None] * v[:, None, None]


def _saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation, 0 for grey, white or black, 1 for a pure colour."""
    rgb = np.asarray(rgb, np.float32)
    return 1.0 - rgb.min(-1) / np.maximum(rgb.max(-1), 1.0)


def read_interior(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(2, PROFILE_ROWS) the mouth's opening from the upper inner lip down to the lower one: how light,
    relative to the face's light tone (about 1 on teeth and tongue, under 0.3 in the cavity), and how white
    (1: teeth, 0: a tongue). NaN where the lips are too close to read between."""
    points = np.asarray(points, np.float32)
    width = float(np.linalg.norm(points[64] - points[60]))
    if inner_gap(points) < max(MIN_READ_GAP * width, 2.0):
        return np.full(PROFILE, np.nan, np.float32)
    v = (np.arange(PROFILE_ROWS) + 0.5) / PROFILE_ROWS
    grid = _between_lips(points, np.linspace(*READ_SPAN, 2 * PROFILE_ROWS), v)
    # only the mouth's box is read: a driver's frame may be 4K
    x0, y0 = np.clip(np.floor(grid.reshape(-1, 2).min(0)).astype(int) - 1, 0, None)
    box = frame[y0 : int(np.ceil(grid[..., 1].max())) + 2, x0 : int(np.ceil(grid[..., 0].max())) + 2]
    at = [grid[..., 1] - y0, grid[..., 0] - x0]
    luma = map_coordinates(box @ LUMA, at, order=1, mode="nearest")
    saturation = map_coordinates(_saturation(box), at, order=1, mode="nearest")
    # the skin from the eyes to the nose's base: no teeth in it, however wide the mouth opens
    skin = _skin_light(frame, points, slice(27, 48))
    light = luma / max(float(skin @ LUMA), 1.0)
    skin_saturation = float(_saturation(skin))
    # teeth are less saturated than the skin (0.5-0.9 of it on the training clips), a tongue about as much
    # (0.95-1.15), and teeth mostly lighter; a grey video has only the lightness to go by
    paler = (WHITE_SAT - saturation / skin_saturation) / SAT_SPAN if skin_saturation >= 0.05 else 0.5
    whiteness = np.clip(paler + (light - WHITE_LIGHT) / LIGHT_SPAN, 0.0, 1.0)
    return np.stack([np.median(light, axis=1), np.median(whiteness, axis=1)]).astype(np.float32)


def interior_track(readings: np.ndarray) -> np.ndarray:
    """(T, 2, PROFILE_ROWS) profiles per frame → the same with a 3-frame median over time (a misread frame
    goes, a word's opening stays); frames not read stay NaN."""
    readings = np.asarray(readings, np.float32)
    if len(readings) < 3:
        return readings
    padded = np.concatenate([readings[:1], readings, readings[-1:]])
    stacked = np.stack([padded[:-2], padded[1:-1], padded[2:]])
    with warnings.catch_warnings():  # a window of NaNs stays NaN, and says so
        warnings.simplefilter("ignore", RuntimeWarning)
        smooth = np.nanmedian(stacked, axis=0)
    unread = np.isnan(readings).all(axis=(1, 2), keepdims=True)
    return np.where(unread, np.nan, smooth).astype(np.float32)


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


def _inner_lips_y(target: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upper and the lower inner lip's heights (crop px) at columns `xs`, corner to corner."""
    inner = target[INNER]
    upper = np.interp(xs, inner[[0, 1, 2, 3, 4], 0], inner[[0, 1, 2, 3, 4], 1])
    lower = np.interp(xs, inner[[0, 7, 6, 5, 4], 0], inner[[0, 7, 6, 5, 4], 1])
    return upper, lower


def _upper_teeth(
    frame: np.ndarray, target: np.ndarray, box: tuple[int, int, int, int], gap: float | None
) -> np.ndarray:
    """The default opening: a dark shade of the lip colour, with (given the `gap`, wide enough to show them)
    an upper-teeth band just under the upper inner lip, fading downwards."""
    x0, y0, x1, y1 = box
    interior = np.empty((y1 - y0, x1 - x0, 3), np.float32)
    interior[:] = _lip_colour(frame, target) * SHADE
    if gap is None:
        return interior
    upper_y, _ = _inner_lips_y(target, np.arange(x0, x1))
    depth = (np.arange(y0, y1)[:, None] - upper_y[None, :]) / max(gap, 1.0)  # 0 at the upper lip
    band = TEETH_ALPHA * np.clip(1.0 - (depth - TEETH_DEPTH) / TEETH_DEPTH, 0.0, 1.0)[..., None]
    return band * _teeth_colour(frame, target) + (1.0 - band) * interior


def _teeth_colour(frame: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Teeth in the portrait's own light tones: ivory on a photo, yellowed on a varnished painting."""
    return 0.92 * (
        TEETH_SKIN * _skin_light(frame, target) + (1 - TEETH_SKIN) * np.array([250.0, 245.0, 235.0])
    )


def _painted(
    frame: np.ndarray, target: np.ndarray, box: tuple[int, int, int, int], profile: np.ndarray
) -> np.ndarray:
    """The opening in the portrait's tones: each pixel's place between the lips (down from the upper inner
    lip, in from the corners) looks up `profile`: its lightness blends the dark into a tongue or into teeth,
    as white as the row is."""
    x0, y0, x1, y1 = box
    inner = target[INNER]
    xs = np.arange(x0, x1, dtype=np.float32)
    upper_y, lower_y = _inner_lips_y(target, xs)
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    v = np.clip((ys - upper_y) / np.maximum(lower_y - upper_y, 1.0), 0.0, 1.0)
    rows = (np.arange(PROFILE_ROWS) + 0.5) / PROFILE_ROWS
    light, white = np.interp(v, rows, profile[0]), np.interp(v, rows, profile[1])
    rim = np.clip(np.minimum(v, 1.0 - v) / RIM, 0.0, 1.0)  # the lips' shadow on what is inside
    lit = np.clip((light - DARK) / (TEETH - DARK), 0.0, 1.0) * rim
    u = np.clip((xs - inner[0, 0]) / max(float(inner[4, 0] - inner[0, 0]), 1.0), 0.0, 1.0)
    corners = np.clip(np.minimum(u, 1.0 - u) / CORNER_SHADE, 0.0, 1.0) ** 0.5  # teeth recede into shadow
    lip = _lip_colour(frame, target)
    dark, tongue = lip * SHADE, lip * TONGUE
    teeth = _teeth_colour(frame, target)
    inside = dark + (lit * (1.0 - white))[..., None] * (tongue - dark)
    return inside + (lit * white * corners)[..., None] * (teeth - inside)


def paint_interior(
    frame: np.ndarray, target: np.ndarray, source: MouthSource, profile: np.ndarray | None = None
) -> np.ndarray:
    """Paint the mouth interior of one (S, S, 3) uint8 crop posed by `target` (68, 2) crop px: as the
    driver's `profile` shows it (`read_interior`), or without one (None or NaN) the upper-teeth band."""
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
    unread = profile is None or not np.isfinite(profile).all()
    if source.gap >= OWN_INTERIOR_PX:
        # the portrait shows its own interior (teeth): keep it under the upper lip, dark below it (the
        # driver's upper teeth would be a second row, and its lower teeth below someone else's, grey bands)
        own, own_mask = _own_interior(source, target, box, blur)
        interior = own_mask[..., None] * own + (1.0 - own_mask[..., None]) * (
            _lip_colour(frame, target) * SHADE
        )
    elif unread:
        interior = _upper_teeth(frame, target, box, gap if gap > TEETH_FROM * width else None)
    else:
        interior = _painted(frame, target, box, np.asarray(profile, np.float32))
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

    def render(self, targets: np.ndarray, profiles: np.ndarray | None = None) -> np.ndarray:
        """`profiles` (B, 2, PROFILE_ROWS): the driver's mouth interior per target (`read_interior`)."""
        return self._painted(self.inner.render(targets), targets, profiles, self._source)

    def render_traced(self, targets: np.ndarray, profiles: np.ndarray | None = None) -> Traced:
        """`render`'s frames, and the wrapped renderer's grids (the paint reads no source)."""
        frames, grids = self.inner.render_traced(targets)
        return Traced(self._painted(frames, targets, profiles, self._source), grids)

    # Several portraits per forward pass (group.py), when the wrapped renderer has them (`groups`).
    def prepare_group(self, groups: Sequence[Sequence[SourceFace]]) -> None:
        self.inner.prepare_group(groups)
        self._group_sources = [MouthSource.widest(sources) for sources in groups]

    def render_group(self, targets: np.ndarray, profiles: np.ndarray | None = None) -> np.ndarray:
        """(P, t, 68, 2) targets; `profiles` (t, 2, PROFILE_ROWS), the same driver's for every portrait."""
        return self._group_painted(self.inner.render_group(targets), targets, profiles)

    def render_group_traced(self, targets: np.ndarray, profiles: np.ndarray | None = None) -> Traced:
        frames, grids = self.inner.render_group_traced(targets)
        return Traced(self._group_painted(frames, targets, profiles), grids)

    def _group_painted(
        self, frames: np.ndarray, targets: np.ndarray, profiles: np.ndarray | None
    ) -> np.ndarray:
        own = zip(frames, targets, self._group_sources, strict=True)
        return np.stack([self._painted(f, t, profiles, source) for f, t, source in own])

    @staticmethod
    def _painted(
        frames: np.ndarray, targets: np.ndarray, profiles: np.ndarray | None, source: MouthSource | None
    ) -> np.ndarray:
        """One portrait's frames with the mouth interior painted in, one profile (or None) per frame."""
        if source is None:
            raise RuntimeError("render() before prepare()")
        pts = np.asarray(targets, np.float32)
        lit = _each(profiles, len(pts))
        return np.stack([paint_interior(f, p, source, q) for f, p, q in zip(frames, pts, lit, strict=True)])


def profiles_arg(profiles: np.ndarray | None, frames: slice | list[int] = slice(None)) -> dict:
    """`render`'s keyword for the driver's mouth profiles at these frames: {"profiles": …} for a MouthFilled
    renderer, or {} without profiles (which every renderer takes)."""
    return {} if profiles is None else {"profiles": profiles[frames]}


def _each(profiles: np.ndarray | None, n: int) -> Sequence[np.ndarray | None]:
    """One profile (or None) per frame."""
    if profiles is None:
        return [None] * n
    profiles = np.asarray(profiles, np.float32)
    if profiles.shape != (n, *PROFILE):
        raise ValueError(f"expected {(n, *PROFILE)} mouth profiles, got {profiles.shape}")
    return list(profiles)
