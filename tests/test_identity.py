"""dlib's face descriptor: the same person is close, another person is far, no face is infinitely far."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from animate_portrait import identity
from animate_portrait.landmarks import get_detector
from animate_portrait.types import Landmarks


def _shifted_brighter(image: np.ndarray) -> np.ndarray:
    """The same photo moved 9 px right and 5 px down, 15% brighter: what a re-render might look like."""
    moved = np.roll(image, (5, 9), axis=(0, 1))
    return np.clip(moved.astype(np.float32) * 1.15, 0, 255).astype(np.uint8)


def test_same_person_is_close(astronaut: np.ndarray):
    d = identity.distance(astronaut, _shifted_brighter(astronaut))
    assert d < identity.SAME_PERSON, d
    assert identity.distance(astronaut, astronaut) < 1e-4


def test_descriptor_from_given_landmarks_matches_detection(astronaut: np.ndarray):
    found = get_detector("dlib").detect(astronaut)[0]
    given = identity.descriptor(astronaut, found)
    detected = identity.descriptor(astronaut)
    assert given is not None and given.shape == (128,) and given.dtype == np.float32
    assert identity.compare(given, detected) < 1e-4


def test_no_face_is_infinitely_far(astronaut: np.ndarray):
    blank = np.full((256, 256, 3), 128, np.uint8)
    assert identity.descriptor(blank) is None
    assert identity.distance(astronaut, blank) == math.inf
    assert identity.distance(blank, astronaut) == math.inf
    assert identity.compare(None, np.zeros(128, np.float32)) == math.inf


def test_nan_landmarks_give_no_descriptor(astronaut: np.ndarray):
    missing = Landmarks(np.full((68, 2), np.nan, np.float32))
    assert identity.descriptor(astronaut, missing) is None


@pytest.mark.shared
def test_another_person_is_far(astronaut: np.ndarray, shared_data: Path):
    from animate_portrait import video

    other = shared_data / "portraits" / "FuxiVirtualHuman__styletalk__src_Obama_clip1.png"
    if not other.is_file():
        pytest.skip(f"{other.name} is not in the shared data")
    d = identity.distance(astronaut, video.read_image(other))
    assert d > identity.SAME_PERSON, d
