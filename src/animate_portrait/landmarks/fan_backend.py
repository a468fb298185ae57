"""Optional backend: the `face_alignment` package (FAN, Bulat & Tzimiropoulos 2017), `animate-portrait[fan]`.

It downloads its weights at first use; on an offline machine without them cached it cannot start, and we
say so plainly instead of letting a network traceback through.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..types import Landmarks
from .base import Box

_HOW = "install animate-portrait[fan] and make its weights available offline, or use --landmarks dlib"


class FanDetector:
    """`LandmarkDetector` on face-alignment's 2D FAN, with its default face detector."""

    def __init__(self, device: str = "cpu") -> None:
        try:
            import face_alignment
        except ImportError:
            raise InputError(None, f"the 'fan' landmark backend needs face-alignment: {_HOW}") from None
        try:
            self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device)
        except Exception as e:  # no network, no cached weights, incompatible version...
            raise InputError(
                None, f"face-alignment could not load its weights ({type(e).__name__}): {_HOW}"
            ) from None

    def detect(self, image: np.ndarray) -> list[Landmarks]:
        found = self._fa.get_landmarks_from_image(image) or []
        faces = [Landmarks(np.asarray(p, np.float32)[:, :2]) for p in found]
        return sorted(faces, key=lambda f: f.size, reverse=True)

    def refine(self, image: np.ndarray, box: Box) -> Landmarks:
        x0, y0, x1, y1 = box
        pad = 0.1 * (x1 - x0)  # FAN's detector boxes are a little looser than the tight landmark box
        found = self._fa.get_landmarks_from_image(
            image, detected_faces=[(x0 - pad, y0 - pad, x1 + pad, y1 + pad)]
        )
        if not found:
            raise InputError(None, "face-alignment returned no landmarks for a tracked face")
        return Landmarks(np.asarray(found[0], np.float32)[:, :2])
