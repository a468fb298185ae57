"""Landmark backends and the tracker on a real face (the astronaut), with real dlib models."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest
from PIL import Image

from animate_portrait.errors import InputError
from animate_portrait.landmarks import get_detector, track


@pytest.fixture(scope="module")
def dlib_detector():
    return get_detector("dlib")


def _eye_distance(points: np.ndarray) -> float:
    return float(np.hypot(*(points[36:42].mean(0) - points[42:48].mean(0))))


def test_one_face_with_plausible_points(astronaut, dlib_detector):
    faces = dlib_detector.detect(astronaut)
    assert len(faces) == 1  # weak detections on the suit's badges are dropped
    p = faces[0].points
    # Eileen Collins' face sits in x 170..280, y 80..190 of the 512² photo.
    assert p[:, 0].min() > 160 and p[:, 0].max() < 290 and p[:, 1].min() > 70 and p[:, 1].max() < 200
    assert 35 < _eye_distance(p) < 55
    assert p[36:42, 0].mean() < p[42:48, 0].mean()  # iBUG order: 36-41 is the left eye in the image
    assert p[8, 1] > p[57, 1] > p[33, 1] > p[27, 1]  # chin below mouth below nose tip below nose root


def test_refine_is_stable_in_place(astronaut, dlib_detector):
    face = dlib_detector.detect(astronaut)[0]
    lm = face
    for _ in range(10):
        lm = dlib_detector.refine(astronaut, lm.box)
    assert np.abs(lm.points - face.points).max() < 3


def test_huge_image_is_detected_on_a_downscaled_copy(astronaut, dlib_detector):
    big = np.asarray(Image.fromarray(astronaut).resize((8000, 8000), Image.BILINEAR))
    t = time.perf_counter()
    faces = dlib_detector.detect(big)
    assert time.perf_counter() - t < 5
    assert len(faces) == 1
    small = dlib_detector.detect(astronaut)[0].points * (8000 / 512)
    assert np.abs(faces[0].points - small).mean() < 8000 / 512 * 2  # same face, full-resolution points


def test_small_crop_is_upsampled(astronaut, dlib_detector):
    tiny = np.asarray(Image.fromarray(astronaut[60:300, 120:330]).resize((105, 120)))
    assert len(dlib_detector.detect(tiny)) == 1


def test_magnified_finds_a_small_face_in_the_image_pixels(astronaut, dlib_detector):
    from animate_portrait.landmarks.magnify import Magnified

    side = 300  # the face's landmarks span about 55 px: below what dlib's 80-px windows find
    small = np.asarray(Image.fromarray(astronaut).resize((side, side), Image.LANCZOS))
    assert dlib_detector.detect(small) == []
    magnified = Magnified(dlib_detector)
    (found,) = magnified.detect(small)
    expected = dlib_detector.detect(astronaut)[0].points * (side / astronaut.shape[0])
    assert np.abs(found.points - expected).mean() < 2.0
    again = magnified.refine(small, found.box)
    assert np.abs(again.points - found.points).mean() < 1.0


def test_blank_image_has_no_face(dlib_detector):
    assert dlib_detector.detect(np.zeros((300, 400, 3), np.uint8)) == []
    assert dlib_detector.detect(np.full((64, 64, 3), 128, np.uint8)) == []


def test_track_follows_motion_and_reports_missing_frames(astronaut, dlib_detector):
    frames = [np.roll(astronaut, 4 * i, axis=1) for i in range(8)]
    frames[4] = np.zeros_like(astronaut)
    result = track(iter(frames), dlib_detector, detect_every=30)
    assert result.points.shape == (8, 68, 2) and result.points.dtype == np.float32
    assert result.found.tolist() == [True] * 4 + [False] + [True] * 3
    assert np.isnan(result.points[4]).all()
    nose = result.points[result.found, 30, 0]
    shifts = np.diff(nose) / np.diff(np.flatnonzero(result.found))
    assert np.abs(shifts - 4).max() < 1.5  # the nose tip moves with the image, 4 px a frame
    assert result.n_faces_max == 1


def test_track_reports_the_most_faces(astronaut, dlib_detector):
    pair = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    result = track([pair, pair], dlib_detector)
    assert result.n_faces_max == 2 and result.found.all()


def test_unknown_and_missing_backends():
    if importlib.util.find_spec("face_alignment") is not None:
        pytest.skip("face-alignment is installed here; this test checks the message when it is not")
    with pytest.raises(InputError, match=r"animate-portrait\[fan\].*--landmarks dlib"):
        get_detector("fan")  # face-alignment is not installed here
    with pytest.raises(ValueError):
        get_detector("nope")
