"""Crop, extract and paste-back on the real astronaut face."""

from __future__ import annotations

import time

import numpy as np
import pytest

from animate_portrait import face
from animate_portrait.landmarks import get_detector
from animate_portrait.types import Crop, Landmarks


@pytest.fixture(scope="module")
def landmarks(astronaut) -> Landmarks:
    return get_detector("dlib").detect(astronaut)[0]


def test_crop_holds_the_whole_face_with_margin(landmarks):
    crop = face.crop_for(landmarks, 256)
    p = crop.to_crop(landmarks.points)
    assert crop.size == 256 and 1.8 <= crop.side / max(np.ptp(landmarks.points, axis=0)) <= 2.0
    assert p.min() > 256 * 0.15 and p.max() < 256 * 0.9  # margin all round, more room above for hair
    assert p[:, 1].min() > 256 - p[:, 1].max()  # forehead/hair room above the brows exceeds room below


def test_extract_identity_and_speed(astronaut):
    crop = Crop(center=(164.0, 114.0), side=128.0, size=128)
    assert np.array_equal(face.extract(astronaut, crop), astronaut[50:178, 100:228])
    crop = Crop(center=(225.0, 120.0), side=180.0, size=256)
    t = time.perf_counter()
    for _ in range(20):
        face.extract(astronaut, crop)
    assert (time.perf_counter() - t) / 20 < 0.01  # ~1 ms; a generous bound for a busy machine


def test_extract_points_land_on_the_same_features(astronaut, landmarks):
    crop = face.crop_for(landmarks, 256)
    img = face.extract(astronaut, crop).astype(int)
    for i in (30, 36, 48, 8):
        u, v = np.round(crop.to_crop(landmarks.points[i : i + 1])[0]).astype(int)
        x, y = np.round(landmarks.points[i]).astype(int)
        assert np.abs(img[v, u] - astronaut[y, x]).max() < 30


def test_extract_replicates_borders(astronaut):
    crop = Crop(center=(0.0, 0.0), side=100.0, size=50)
    out = face.extract(astronaut, crop)
    assert out.shape == (50, 50, 3)
    assert np.abs(out[:20, :20].astype(int) - astronaut[0, 0]).max() <= 1  # corner pixel, replicated
    far = face.extract(astronaut, Crop(center=(-900.0, 2000.0), side=40.0, size=16))
    assert (far == astronaut[-1, 0]).all()


def test_paste_back_round_trip_touches_only_the_box(astronaut, landmarks):
    crop = face.crop_for(landmarks, 256)
    out = face.paste_back(astronaut, face.extract(astronaut, crop), crop)
    assert out is not astronaut and out.shape == astronaut.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - astronaut)
    assert diff.mean() < 1.0 and np.percentile(diff, 99) < 12
    (x0, y0), s = crop.origin, crop.side
    outside = np.ones(astronaut.shape[:2], bool)
    outside[int(y0) : int(np.ceil(y0 + s)) + 1, int(x0) : int(np.ceil(x0 + s)) + 1] = False
    assert (diff[outside] == 0).all()


def test_paste_back_feathers_to_the_border(astronaut, landmarks):
    crop = face.crop_for(landmarks, 256)
    black = np.zeros((256, 256, 3), np.uint8)
    out = face.paste_back(astronaut, black, crop).astype(int)
    cx, cy = (round(v) for v in crop.center)
    assert (out[cy, cx] == 0).all()  # the middle is the pasted face
    x_edge = int(crop.origin[0]) + 1
    assert np.abs(out[cy, x_edge] - astronaut[cy, x_edge]).max() < 8  # the border is the picture
    row = out[cy, x_edge:cx, 0]  # a smooth ramp in between: no step larger than a few levels
    assert np.abs(np.diff(row - astronaut[cy, x_edge:cx, 0])).max() < 40


def test_overlapping_crops_each_keep_their_own_face(astronaut):
    """Two faces close together: B's crop covers A's middle (as its still background) and must not blend
    it back over A's animated face; each pixel goes to the crop whose centre is nearer."""
    a, b = Crop(center=(200.0, 200.0), side=160.0, size=64), Crop(center=(264.0, 200.0), side=160.0, size=64)
    red, blue = np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    out = face.paste_back_all(astronaut, [red, blue], [a, b]).astype(int)
    assert (out[200, 200] == (255, 0, 0)).all() and (out[200, 264] == (0, 0, 255)).all()
    assert (out[200, 180:225, 0] > 240).all() and (out[200, 240:285, 2] > 240).all()  # no mix near either
    row = out[200, 200:265]
    assert (row[:, 0] + row[:, 2] > 240).all()  # between them: shared, never the picture showing through
    assert np.abs(np.diff(row[:, 0])).max() < 64  # and a soft hand-over, not a cut
    np.testing.assert_array_equal(
        face.paste_back_all(astronaut, [red], [a]), face.paste_back(astronaut, red, a)
    )
    far = Crop(center=(-500.0, -500.0), side=100.0, size=64)  # off the picture: nothing of it, no error
    np.testing.assert_array_equal(
        face.paste_back_all(astronaut, [red, blue], [a, far]), face.paste_back(astronaut, red, a)
    )


def test_paste_back_at_the_image_corner_is_clipped(astronaut):
    crop = Crop(center=(10.0, 10.0), side=128.0, size=64)
    out = face.paste_back(astronaut, np.zeros((64, 64, 3), np.uint8), crop)
    changed = (out != astronaut).any(axis=2)
    assert changed.any() and not changed[80:].any() and not changed[:, 80:].any()


def test_crop_track_is_smooth_and_fills_gaps(landmarks):
    rng = np.random.default_rng(0)
    t = np.arange(60)
    pts = landmarks.points[None] + np.stack([t * 1.0, 0 * t], 1)[:, None, :].astype(np.float32)
    noisy = pts + rng.normal(0, 1.5, pts.shape).astype(np.float32)
    noisy[20:23] = np.nan
    crops = face.crop_track(noisy, 256)
    assert len(crops) == 60 and all(c.size == 256 for c in crops)
    centre = np.array([c.center[0] for c in crops])
    ideal = np.array([face.crop_for(Landmarks(p), 256).center[0] for p in pts])
    raw = np.array(
        [face.crop_for(Landmarks(p), 256).center[0] if np.isfinite(p).all() else np.nan for p in noisy]
    )
    assert np.abs(centre - ideal).std() < 0.6 * np.nanstd(raw - ideal)  # less jitter than per-frame crops
    assert np.abs(centre - ideal).max() < 3  # and it follows the pan without lag
    sides = np.array([c.side for c in crops])
    assert np.ptp(sides) < 0.05 * sides.mean()


def test_extract_shrinks_a_big_face(astronaut):
    """A crop much larger than its output (scale < 1), as for big photos, stays inside PIL's box rules."""
    from PIL import Image

    from animate_portrait.face import crop_for, extract
    from animate_portrait.landmarks import get_detector

    big = np.asarray(Image.fromarray(astronaut).resize((3072, 3072), Image.BILINEAR))
    crop = crop_for(get_detector("dlib").detect(big)[0], 128)
    assert crop.scale < 0.2
    small = extract(big, crop)
    reference = extract(astronaut, crop_for(get_detector("dlib").detect(astronaut)[0], 128))
    assert small.shape == (128, 128, 3)
    assert np.abs(small.astype(float) - reference).mean() < 12
