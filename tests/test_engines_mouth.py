"""Mouth interior painting: only where the lips part further than the portrait's, and dlib sees it."""

from __future__ import annotations

import numpy as np
import pytest

from animate_portrait import motion
from animate_portrait.engines import get_renderer
from animate_portrait.engines.mouth import INNER, MouthFilled, MouthSource, inner_gap, paint_interior
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


def _closed_source(size: int = 64) -> MouthSource:
    points = face_points(size, 0.0)
    return MouthSource(_skin(size), points, float(inner_gap(points)))


def test_no_paint_when_the_lips_part_no_further_than_the_portraits() -> None:
    frame, target = _skin(), face_points(64, 0.15)
    source = MouthSource(frame, target, float(inner_gap(target)))
    assert paint_interior(frame, target, source) is frame


def test_paint_darkens_inside_the_lips_only_with_teeth_on_top() -> None:
    frame, target = _skin(), face_points(64, 0.3)
    out = paint_interior(frame, target, _closed_source())
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


def test_an_open_source_mouth_keeps_its_own_teeth_under_the_upper_lip() -> None:
    """A smiling source (teeth showing): opening further moves its own teeth with the upper lip, and
    what opens below them is dark; no painted teeth band replaces them."""
    size = 96
    src_points = face_points(size, 0.1)
    face = _skin(size)
    top, bottom = int(np.ceil(src_points[62, 1])), int(np.floor(src_points[66, 1]))
    x0, x1 = int(src_points[60, 0]) + 2, int(src_points[64, 0]) - 2
    face[top : bottom + 1, x0:x1] = (40, 200, 40)  # "teeth" in a colour nothing else has
    source = MouthSource(face, src_points, float(inner_gap(src_points)))
    target = face_points(size, 0.35)  # same upper lip, the jaw drops
    frame = _skin(size)  # what a warp might give: skin stretched over the opening
    out = paint_interior(frame, target, source).astype(float)
    cx = int(round(target[60:68, 0].mean()))
    column = out[int(np.ceil(target[62, 1])) : int(np.floor(target[66, 1])) + 1, cx]
    green = (column[:, 1] - column[:, 0]) > 80
    assert green[: len(column) // 3].any()  # the source's teeth, under the upper lip
    assert not green[-len(column) // 3 :].any() and column[-len(column) // 3 :].mean() < 80  # dark below


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
