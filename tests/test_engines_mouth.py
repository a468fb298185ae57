"""Mouth interior painting: only where the lips part further than the portrait's, and dlib sees it."""

from __future__ import annotations

import numpy as np
import pytest

from animate_portrait import motion
from animate_portrait.engines import get_renderer
from animate_portrait.engines.mouth import INNER, MouthFilled, inner_gap, paint_interior
from test_engines import LOWER_FACE, SIZE, find
from test_models import face_points

pytest_plugins = ["test_engines"]  # the astronaut `source` and dlib `detector` fixtures


def _skin(size: int = 64) -> np.ndarray:
    frame = np.empty((size, size, 3), np.uint8)
    frame[:] = (200, 150, 120)
    return frame


def test_inner_gap_grows_with_the_opening() -> None:
    closed, opened = face_points(64, 0.0), face_points(64, 0.15)
    assert inner_gap(closed) < 2.0 < inner_gap(opened)
    assert inner_gap(np.stack([closed, opened])).shape == (2,)


def test_no_paint_when_the_lips_part_no_further_than_the_portraits() -> None:
    frame, target = _skin(), face_points(64, 0.15)
    assert paint_interior(frame, target, source_gap=float(inner_gap(target))) is frame


def test_paint_darkens_inside_the_lips_only_with_teeth_on_top() -> None:
    frame, target = _skin(), face_points(64, 0.3)
    out = paint_interior(frame, target, source_gap=0.0)
    inner = target[INNER]
    x0, y0 = np.floor(inner.min(0)).astype(int) - 3
    x1, y1 = np.ceil(inner.max(0)).astype(int) + 4
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], frame[outside])  # nothing outside the mouth box changes
    cx = int(round(inner[:, 0].mean()))
    top, bottom = int(np.ceil(target[62, 1])), int(np.floor(target[66, 1]))
    column = out[top : bottom + 1, cx].astype(float).mean(1)
    assert column.min() < 0.5 * frame.mean()  # a dark interior
    assert column[: len(column) // 3].max() > column[len(column) // 2 :].min() + 60  # teeth above


@pytest.mark.slow
def test_dlib_sees_the_painted_opening_on_a_real_face(source, detector) -> None:
    """On the astronaut (closed mouth), a warped-open mouth reads as more open to dlib once painted."""
    target = source.points.copy()
    shift = 0.2 * np.linalg.norm(target[45] - target[36])
    target[LOWER_FACE, 1] += shift
    plain = get_renderer("warp", SIZE, "cpu", None, mouth=False)
    filled = get_renderer("warp", SIZE, "cpu", None)
    assert isinstance(filled, MouthFilled)
    seen = []
    for r in (plain, filled):
        r.prepare([source])
        seen.append(motion.mouth_opening(find(detector, r.render(target[None])[0])))
    wanted = motion.mouth_opening(target)
    assert seen[1] > seen[0] and abs(seen[1] - wanted) < abs(seen[0] - wanted)
