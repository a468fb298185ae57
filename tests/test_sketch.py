"""The landmark image: the paper's colours at the right places, on black."""

from __future__ import annotations

import numpy as np
import pytest

from animate_portrait.landmarks import get_detector
from animate_portrait.sketch import draw_sketch


@pytest.fixture(scope="module")
def crop_points(astronaut):
    from animate_portrait.face import crop_for

    face = get_detector("dlib").detect(astronaut)[0]
    return crop_for(face, 256).to_crop(face.points)


def _colour_near(img: np.ndarray, xy: np.ndarray, colour) -> bool:
    x, y = np.round(xy).astype(int)
    patch = img[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3)
    return bool((patch == colour).all(axis=1).any())


@pytest.mark.parametrize(
    "index, colour",
    [
        (8, (255, 255, 255)),
        (19, (255, 0, 0)),
        (24, (0, 255, 0)),
        (28, (0, 0, 255)),
        (33, (0, 0, 255)),
        (37, (255, 0, 255)),
        (44, (0, 255, 255)),
        (51, (255, 255, 0)),
        (62, (255, 255, 0)),
    ],
)
def test_colours_at_their_landmarks(crop_points, index, colour):
    img = draw_sketch(crop_points, 256)
    assert _colour_near(img, crop_points[index], colour)


def test_black_background_and_thin_lines(crop_points):
    img = draw_sketch(crop_points, 256)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    assert (img[:10] == 0).all() and (img[:, :10] == 0).all()  # corners far from the face stay black
    drawn = (img > 0).any(axis=2).mean()
    assert 0.02 < drawn < 0.15  # polylines ~2 px wide, not filled shapes


def test_closed_curves_join_last_to_first(crop_points):
    img = draw_sketch(crop_points, 256)
    mid = (crop_points[41] + crop_points[36]) / 2  # on the closing segment of the left eye
    assert _colour_near(img, mid, (255, 0, 255))


def test_thickness_scales_with_size(crop_points):
    small = (draw_sketch(crop_points, 256) > 0).any(axis=2).sum()
    big = (draw_sketch(crop_points * 2, 512) > 0).any(axis=2).sum()
    assert 3 < big / small < 5  # twice the length and twice the width


def test_nan_parts_are_skipped(crop_points):
    pts = crop_points.copy()
    pts[0:17] = np.nan
    img = draw_sketch(pts, 256)
    assert not (img == 255).all(axis=2).any()  # no white jaw
    assert _colour_near(img, pts[51], (255, 255, 0))
