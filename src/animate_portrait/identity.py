"""Who is in a picture: dlib's 128-d face descriptor and the L2 distance between two faces.

The descriptor is dlib's ResNet (`dlib_face_recognition_resnet_model_v1.dat`, shipped by the
`face-recognition-models` wheel), 99.38% on LFW; two faces closer than `SAME_PERSON` (0.6, dlib's own
threshold) are the same person. The evaluation uses it for identity preservation, and few-shot input
checks use it to find the odd image out.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .types import Landmarks

SAME_PERSON = 0.6
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


@lru_cache(maxsize=1)
def _model():
    import dlib

    # The landmark backend's locator: finds the .dat without importing face_recognition_models.
    from .landmarks.dlib_backend import _model_path

    return dlib.face_recognition_model_v1(str(_model_path(MODEL_FILE)))


@lru_cache(maxsize=1)
def _detector():
    from .landmarks import get_detector

    return get_detector("dlib")


def _shape(points: np.ndarray):
    """The 68 points as a dlib full_object_detection: dlib aligns its 150² face chip from them."""
    import dlib

    pts = np.asarray(points, np.float64)
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    parts = [dlib.point(int(round(x)), int(round(y))) for x, y in pts]
    return dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)), parts)


def descriptor(image: np.ndarray, landmarks: Landmarks | None = None) -> np.ndarray | None:
    """The 128-d descriptor of the face at `landmarks` (or of the largest face found); None if no face."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if landmarks is None:
        faces = _detector().detect(image)
        if not faces:
            return None
        landmarks = faces[0]
    if not np.isfinite(landmarks.points).all():
        return None
    vector = _model().compute_face_descriptor(image, _shape(landmarks.points))
    return np.asarray(vector, np.float32)


def compare(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """L2 distance between two descriptors; inf when either face is missing (never "the same person")."""
    if a is None or b is None:
        return float("inf")
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def distance(image_a: np.ndarray, image_b: np.ndarray) -> float:
    """L2 distance between the largest faces of two RGB images; inf when a face is missing in either."""
    a = descriptor(image_a)
    return float("inf") if a is None else compare(a, descriptor(image_b))
