"""Default backend: dlib's HOG face detector + its 68-point shape predictor (offline, pip-installed data).

The model files come from the `face-recognition-models` wheel. We locate them through importlib instead of
importing the package, because its `__init__` needs pkg_resources, which new setuptools no longer ship.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from ..errors import InputError
from ..types import Landmarks
from .base import Box

DETECT_SIDE = 800  # detect on a copy at most this big: fast, and 8000² photos don't exhaust memory
UPSAMPLE_BELOW = 256  # HOG needs faces of ~80 px: upsample images smaller than this once
WEAK_FRACTION = 0.25  # detections this much weaker than the best one are textures (a badge, a collar)
# A tight landmark box -> the square dlib's detector would give for that face (measured on frontal faces),
# so that `refine` starts the shape predictor where it was trained to start.
RECT_SHIFT_Y = -0.07  # rect centre, in landmark-box heights from the box centre
RECT_SIDE = 0.95  # rect side, in landmark-box (width + height) / 2


def _model_path(name: str) -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(None, "the dlib landmark models are missing: pip install face-recognition-models")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise InputError(path, "dlib model file is missing: reinstall face-recognition-models")
    return path


@cache
def _models() -> tuple[dlib.fhog_object_detector, dlib.shape_predictor]:
    """Loaded once per process (the predictor file is ~100 MB)."""
    predictor = dlib.shape_predictor(str(_model_path("shape_predictor_68_face_landmarks.dat")))
    return dlib.get_frontal_face_detector(), predictor


class DlibDetector:
    """`LandmarkDetector` on dlib. Works on any image size; landmarks are found at full resolution."""

    def __init__(self) -> None:
        self._detector, self._predictor = _models()

    def detect(self, image: np.ndarray) -> list[Landmarks]:
        h, w = image.shape[:2]
        scale = min(1.0, DETECT_SIDE / max(h, w))
        small = image
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR, reducing_gap=3.0))
        upsample = 1 if max(small.shape[:2]) < UPSAMPLE_BELOW else 0
        rects, scores, _ = self._detector.run(small, upsample, 0.0)
        if not rects:
            return []
        best = max(scores)
        kept = [r for r, s in zip(rects, scores, strict=True) if s >= WEAK_FRACTION * best]
        kept.sort(key=lambda r: r.width() * r.height(), reverse=True)
        # The shape predictor runs on the full-resolution image: sharper points, same cost at any size.
        return [
            self._shape(image, [r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale])
            for r in kept
        ]

    def refine(self, image: np.ndarray, box: Box) -> Landmarks:
        x0, y0, x1, y1 = box
        half = RECT_SIDE * ((x1 - x0) + (y1 - y0)) / 4
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + RECT_SHIFT_Y * (y1 - y0)
        return self._shape(image, [cx - half, cy - half, cx + half, cy + half])

    def _shape(self, image: np.ndarray, rect: list[float]) -> Landmarks:
        r = dlib.rectangle(*(int(round(v)) for v in rect))
        shape = self._predictor(np.ascontiguousarray(image), r)
        pts = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        return Landmarks(pts)
