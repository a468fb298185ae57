"""Small faces: a detector that looks at each image magnified, for faces below what its backend finds.

dlib's HOG searches 80-px windows, so it finds faces whose landmarks span about 60 px or more: not the
face in a 256² wide shot of a speaker on a stage (3 of the 8 `wide` clips), nor in a small web portrait.
Magnified twice it reaches about 30 px. The callers use it only when a first, plain search found no face
in a small image, so ordinary inputs cost nothing more.
"""

from __future__ import annotations

import numpy as np

from ..types import Landmarks
from .base import Box, LandmarkDetector

SMALL_IMAGE = 512  # longer side, px: images at most this big with no face found are searched again
FACTOR = 2.0


def scale_image(image: np.ndarray, scale: float) -> np.ndarray:
    """(H, W, 3) uint8 resized by `scale` (Lanczos)."""
    from PIL import Image

    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


def is_small(height: int, width: int) -> bool:
    return max(height, width) <= SMALL_IMAGE


class Magnified:
    """`LandmarkDetector` that runs `inner` on the image magnified `factor` times; points come back in
    the image's own pixels."""

    def __init__(self, inner: LandmarkDetector, factor: float = FACTOR) -> None:
        self.inner = inner
        self.factor = factor

    def detect(self, image: np.ndarray) -> list[Landmarks]:
        found = self.inner.detect(scale_image(image, self.factor))
        return [Landmarks(f.points / self.factor) for f in found]

    def refine(self, image: np.ndarray, box: Box) -> Landmarks:
        big = tuple(v * self.factor for v in box)
        return Landmarks(self.inner.refine(scale_image(image, self.factor), big).points / self.factor)
