"""Landmarks through a video: detect once, then follow the face cheaply from frame to frame.

Full detection (a face search over the whole frame) is the slow part, so it runs only on the first frame,
every `detect_every` frames (to notice a larger face or a cut), and whenever the followed face is lost.
In between, `refine` starts the shape predictor from the previous frame's landmark box, which also keeps
the points temporally coherent. Since a shape predictor always answers, each tracked frame is verified
with a face search limited to a small window around the face; a frame without a face gets found=False and
NaN points. No smoothing here: motion.py smooths the whole track at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..types import N_POINTS, Landmarks
from .base import Box, LandmarkDetector

WINDOW = 2.4  # verification window side, in landmark-box sizes: room for the face and its motion
WINDOW_FACE_PX = 120  # the face is resized to about this in the window: enough for HOG, and cheap
MAX_JUMP = 0.35  # a tracked box moving more than this (in face sizes) per frame is a lost track
MAX_SCALE = 1.33  # ... as is one that grows or shrinks more than this per frame


@dataclass
class TrackResult:
    points: np.ndarray  # (T, 68, 2) float32, frame pixels; NaN where no face was found
    found: np.ndarray  # (T,) bool
    n_faces_max: int  # most faces seen in one (fully searched) frame; the largest one is followed
    # per reader: (T, ...) what it said of each frame's face, NaN without one; {} when nothing was read
    readings: dict[str, np.ndarray] = field(default_factory=dict)


def track(
    frames: Iterable[np.ndarray],
    detector: LandmarkDetector,
    detect_every: int = 30,
    on_frame: Callable[[int], None] | None = None,
    read: Mapping[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] | None = None,
) -> TrackResult:
    """Landmarks of the largest face in every frame; streams `frames`, keeping only the points, and what
    each of `read`'s readers, `reader(frame, points)`, says of each found face (gaze.read_gaze: the irises),
    while the frame is here."""
    points: list[np.ndarray] = []
    readings: dict[str, list[np.ndarray | None]] = {name: [] for name in read or {}}
    n_faces_max = 0
    prev: Landmarks | None = None
    since_search = 0
    for i, frame in enumerate(frames):
        current = None
        if prev is not None and since_search < detect_every:
            cand = detector.refine(frame, prev.box)
            if _follows(cand, prev) and _face_in_window(frame, cand.box, detector):
                current = cand
                since_search += 1
        if current is None:
            faces = detector.detect(frame)
            n_faces_max = max(n_faces_max, len(faces))
            current = _pick(faces, prev)
            since_search = 0
        prev = current
        points.append(current.points if current is not None else np.full((N_POINTS, 2), np.nan, np.float32))
        for name, reader in (read or {}).items():
            readings[name].append(reader(frame, current.points) if current is not None else None)
        if on_frame is not None:
            on_frame(i)
    pts = np.stack(points).astype(np.float32) if points else np.zeros((0, N_POINTS, 2), np.float32)
    found = ~np.isnan(pts).any(axis=(1, 2))
    stacked = {name: _stacked(said) for name, said in readings.items()}
    return TrackResult(
        pts, found, n_faces_max, {name: said for name, said in stacked.items() if said is not None}
    )


def _stacked(readings: list[np.ndarray | None]) -> np.ndarray | None:
    """The readings as one float32 array, NaN for frames without a face; None when nothing was read."""
    shape = next((np.shape(r) for r in readings if r is not None), None)
    if shape is None:
        return None
    blank = np.full(shape, np.nan, np.float32)
    return np.stack([blank if r is None else np.asarray(r, np.float32) for r in readings])


def _pick(faces: list[Landmarks], prev: Landmarks | None) -> Landmarks | None:
    """Keep following the same face when it is still there; otherwise take the largest."""
    if prev is not None:
        for face in faces:
            if _iou(face.box, prev.box) > 0.3:
                return face
    return faces[0] if faces else None


def _follows(cand: Landmarks, prev: Landmarks) -> bool:
    jump = np.hypot(*(cand.points.mean(0) - prev.points.mean(0))) / prev.size
    ratio = cand.size / max(prev.size, 1e-6)
    return bool(jump < MAX_JUMP and 1 / MAX_SCALE < ratio < MAX_SCALE)


def _face_in_window(frame: np.ndarray, box: Box, detector: LandmarkDetector) -> bool:
    """Is there really a face at `box`? A face search in a small window around it (~15 ms)."""
    x0, y0, x1, y1 = box
    side = WINDOW * max(x1 - x0, y1 - y0, 1.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = frame.shape[:2]
    wx0, wy0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    wx1, wy1 = min(w, int(cx + side / 2)), min(h, int(cy + side / 2))
    if wx1 - wx0 < 8 or wy1 - wy0 < 8:
        return False
    scale = WINDOW_FACE_PX / max(x1 - x0, y1 - y0, 1.0)
    window = Image.fromarray(np.ascontiguousarray(frame[wy0:wy1, wx0:wx1]))
    window = window.resize((max(1, round((wx1 - wx0) * scale)), max(1, round((wy1 - wy0) * scale))))
    local = ((x0 - wx0) * scale, (y0 - wy0) * scale, (x1 - wx0) * scale, (y1 - wy0) * scale)
    return any(_iou(f.box, local) > 0.3 for f in detector.detect(np.asarray(window)))


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
