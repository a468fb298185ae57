"""Mouth interior: read in the driver, painted only where the lips part further than the portrait's, and
dlib sees it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from animate_portrait import motion
from animate_portrait.engines import get_renderer
from animate_portrait.engines.mouth import (
    INNER,
    PROFILE,
    PROFILE_ROWS,
    MouthFilled,
    MouthSource,
    inner_gap,
    interior_track,
    paint_interior,
    read_interior,
)
from animate_portrait.types import Crop, SourceFace
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


def _mouth_drawn(size: int, opening: float, upper: tuple, lower: tuple) -> tuple[np.ndarray, np.ndarray]:
    """A skin frame whose open mouth shows `upper` colour in its top half and `lower` in its bottom half."""
    points = face_points(size, opening)
    frame = _skin(size)
    top, bottom = int(np.floor(points[62, 1])), int(np.ceil(points[66, 1]))
    middle = (top + bottom) // 2
    x0, x1 = int(points[60, 0]), int(points[64, 0]) + 1
    frame[top:middle, x0:x1] = upper
    frame[middle : bottom + 1, x0:x1] = lower
    return frame, points


def test_read_interior_finds_teeth_above_a_dark_gap() -> None:
    frame, points = _mouth_drawn(128, 0.3, (245, 245, 240), (25, 15, 15))
    light, white = read_interior(frame, points)
    assert light.shape == white.shape == (PROFILE_ROWS,)
    assert light[2:6].min() > 1.2 and white[2:6].min() > 0.9  # teeth: lighter than the skin, and white
    assert light[-6:-2].max() < 0.3  # the dark below them


def test_read_interior_tells_a_tongue_from_teeth_by_its_colour() -> None:
    """As light as the skin, but redder than it: a tongue (whiteness 0), where white is teeth."""
    tongue, _ = _mouth_drawn(128, 0.3, (200, 90, 90), (200, 90, 90))
    teeth, points = _mouth_drawn(128, 0.3, (175, 175, 170), (175, 175, 170))
    assert read_interior(tongue, points)[1].max() < 0.1
    assert read_interior(teeth, points)[1].min() > 0.9


def test_read_interior_of_a_closed_mouth_is_nan() -> None:
    frame, points = _skin(128), face_points(128, 0.0)
    assert np.isnan(read_interior(frame, points)).all()


def test_interior_track_drops_a_one_frame_misreading_and_keeps_unread_frames() -> None:
    readings = np.full((9, *PROFILE), 0.3, np.float32)
    readings[4] = 1.0  # one frame misread as all teeth
    readings[7] = np.nan  # lips shut
    track = interior_track(readings)
    np.testing.assert_allclose(track[4], 0.3)
    assert np.isnan(track[7]).all() and np.isfinite(track[[6, 8]]).all()


def test_paint_follows_the_drivers_profile_with_dark_at_the_lips() -> None:
    """A driver showing lower teeth only: the portrait's opening is light low down, dark under the upper
    lip, and dark again just above the lower lip (the shadow where teeth meet lips)."""
    size = 128
    target = face_points(size, 0.35)
    frame = _skin(size)
    light = np.where(np.arange(PROFILE_ROWS) >= PROFILE_ROWS // 2, 1.2, 0.1)
    lower_teeth = np.stack([light, np.ones(PROFILE_ROWS)]).astype(np.float32)
    out = paint_interior(frame, target, _closed_source(size), lower_teeth).astype(float).mean(-1)
    cx = int(round(target[60:68, 0].mean()))
    column = out[int(np.ceil(target[62, 1])) : int(np.floor(target[66, 1])) + 1, cx]
    n = len(column)
    assert column[3 : n // 3].max() < 60  # dark below the upper lip (its edge is blended)
    assert column[n // 2 : n - n // 6].max() > 150  # light lower teeth
    assert column[-4:].min() < column[n // 2 : n - n // 6].max() - 40  # a shadow at the lower lip
    default = paint_interior(frame, target, _closed_source(size)).astype(float).mean(-1)
    assert default[int(np.ceil(target[62, 1])) + n // 6, cx] > column[n // 6] + 60  # unread: upper teeth


def _closed_face(size: int) -> SourceFace:
    face = _skin(size)
    return SourceFace(
        Path("p.png"), face, Crop((size / 2, size / 2), float(size), size), face, face_points(size)
    )


def test_mouth_profiles_must_match_the_targets() -> None:
    filled = MouthFilled(get_renderer("static", 64, "cpu"))
    filled.prepare([_closed_face(64)])
    targets = face_points(64, 0.3)[None].repeat(2, 0)
    assert filled.render(targets, np.full((2, *PROFILE), 0.5, np.float32)).shape == (2, 64, 64, 3)
    with pytest.raises(ValueError, match="mouth profiles"):
        filled.render(targets, np.full((3, *PROFILE), 0.5, np.float32))


def test_a_real_driver_showing_teeth(shared_data) -> None:
    """A training clip whose speaker grins, teeth showing (frames 15-62), lips shut before and after."""
    from animate_portrait.landmarks import get_detector

    clip = shared_data / "clips" / "train" / "KwaiVGI__LivePortrait__d0.mp4"
    profiles = motion.analyse_driver(clip, get_detector("dlib"), max_frames=64).mouth
    assert profiles is not None and profiles.shape == (64, *PROFILE)
    assert np.isnan(profiles[:5]).all()
    grin = profiles[20:61:10]
    assert (grin[:, 0, 6:10].min(axis=1) > 0.9).all()  # teeth, about as light as the skin
    assert (grin[:, 1, 6:10].min(axis=1) > 0.9).all()  # and white


@pytest.mark.parametrize(
    "engine, mouth, interior, painted",
    [
        ("warp", True, "driver", True),
        ("warp", True, "painted", False),
        ("warp", False, "driver", False),
        ("static", True, "driver", False),
    ],
)
def test_the_pipeline_hands_the_drivers_mouth_to_the_renderer(
    astronaut_png: Path, engine: str, mouth: bool, interior: str, painted: bool
) -> None:
    """Each chunk of targets comes with the driver's mouth profiles for its frames, where the mouth is
    painted with them (--mouth-interior driver, an engine that moves the face), and a motion file without
    them gives None."""
    from dataclasses import replace

    from animate_portrait.assets import demo_motion_path
    from animate_portrait.pipeline import Pipeline
    from animate_portrait.types import RenderConfig

    driving = motion.load_motion(demo_motion_path()).cut(slice(0, 20))
    config = RenderConfig(engine=engine, crop_only=True, mouth=mouth, mouth_interior=interior, gaze=False)
    pipeline = Pipeline(config)
    lead = pipeline.load_source(astronaut_png)
    chunks = list(pipeline.moves([lead], driving))
    assert sum(c.targets.shape[1] for c in chunks) == 20
    if not painted:
        assert all(c.mouths is None for c in chunks)
        return
    np.testing.assert_array_equal(np.concatenate([c.mouths for c in chunks]), driving.mouth)
    assert all(c.mouths is None for c in pipeline.moves([lead], replace(driving, mouth=None)))


def test_the_drivers_mouth_changes_only_the_portraits_mouth() -> None:
    """A closed-mouth portrait opened by the target: a driver showing teeth and one showing a dark mouth
    give different pixels inside the lips and the same everywhere else."""
    size = 128
    filled = MouthFilled(get_renderer("warp", size, "cpu", mouth=False))
    filled.prepare([_closed_face(size)])
    targets = face_points(size, 0.3)[None]
    teeth = filled.render(targets, np.full((1, *PROFILE), 1.1, np.float32)).astype(int)
    dark = filled.render(targets, np.full((1, *PROFILE), 0.1, np.float32)).astype(int)
    differs = np.abs(teeth - dark).max(-1)[0] > 2
    ys, xs = np.nonzero(differs)
    inner = targets[0, 60:68]
    assert len(xs) > 50 and teeth[0][differs].mean() > dark[0][differs].mean() + 60
    assert xs.min() >= inner[:, 0].min() - 4 and xs.max() <= inner[:, 0].max() + 4
    assert ys.min() >= inner[:, 1].min() - 4 and ys.max() <= inner[:, 1].max() + 4
