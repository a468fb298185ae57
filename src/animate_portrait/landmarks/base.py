"""The one small interface every landmark backend implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..types import Landmarks

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) image pixels


class LandmarkDetector(Protocol):
    """68 iBUG landmarks from an RGB uint8 image."""

    def detect(self, image: np.ndarray) -> list[Landmarks]:
        """All faces in the image, largest first (big images are searched on a downscaled copy)."""
        ...

    def refine(self, image: np.ndarray, box: Box) -> Landmarks:
        """Landmarks of the face inside `box`, a tight landmark box (`Landmarks.box`) from a nearby frame.

        Cheap (no face search): the tracker calls it on every frame. It always returns 68 points, so the
        caller checks that a face is still there.
        """
        ...
