"""Driver motion: gap filling, temporal smoothing, motion files and retargeting onto a portrait.

Retargeting is *relative* by default, as in First Order Motion Model (Siarohin et al. 2019, "relative
keypoint displacement") and LivePortrait: the portrait keeps its own face shape and only takes the
driver's pose and expression changes. The paper's landmark-driven generator (Zakharov et al. 2019) uses
the driver's landmarks directly and so leaks the driver's face shape; that is `relative=False` here.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from itertools import chain
from pathlib import Path

import numpy as np
from scipy.signal import savgol_filter

from .errors import InputError, NoFaceError
from .types import MAX_TRAVEL, N_POINTS, REGION_NAMES, Motion, face_extent

MOTION_FORMAT = 1  # bump when the .npz layout changes; load_motion refuses other versions

# Points that move with the skull but hardly with expression: nose bridge and base, eye corners.
# Brows, lids, lips and jaw are left out: they are the expression we want to keep, not the pose.
STABLE = np.array([27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45])
# Upper/lower pairs that may meet but never cross: inner lips (61-63 / 67-65) and eyelids.
_UPPER = np.array([61, 62, 63, 37, 38, 43, 44])
_LOWER = np.array([67, 66, 65, 41, 40, 47, 46])
# What a mouth opening moves (chin and lips), and the eyelids (not the eye corners, which are STABLE):
# the parts of the driver's neutral face taken from other frames than frame 0 (see neutral_reference).
MOUTH_REGION = np.r_[5:12, 48:68]
EYE_REGION = np.array([37, 38, 40, 41, 43, 44, 46, 47])
NEUTRAL_MOUTH_PERCENTILE = 5.0
# A one-frame driver (a photo) has no resting face of its own: photo_reference closes its mouth and moves
# its mouth and chin this share of the way to the average resting face's (assets/neutral_face.txt).
# Chosen among 0, 0.25, 0.5 and 1 on training and `wide` clips, a frame at a time against the same frame
# inside its video (docs/RESULTS.md, "A photo as the driver").
PHOTO_TEMPLATE_SHARE = 0.25
# How far each point of the mouth and chin rises when photo_reference closes a mouth, as a share of the
# inner lips' gap: the lower lip all of it, the corners half, the chin less towards the jaw's sides.
_CLOSING = {
    **dict.fromkeys((55, 56, 57, 58, 59, 65, 66, 67, 7, 8, 9), 1.0),
    **dict.fromkeys((48, 54, 60, 64), 0.5),
    **dict.fromkeys((6, 10), 0.75),
    **dict.fromkeys((5, 11), 0.4),
}
# What each --region takes from the driver (LivePortrait's animation_region): the head's pose, and the
# expression change of which points. "eyes" takes the brows too: they move with a blink and a stare.
REGIONS = {
    "all": (True, np.arange(N_POINTS)),
    "expression": (False, np.arange(N_POINTS)),
    "pose": (True, np.array([], int)),
    "lips": (False, MOUTH_REGION),
    "eyes": (False, np.r_[17:27, 36:48]),
}
assert tuple(REGIONS) == REGION_NAMES
TRAVEL_KNEE = 0.6  # share of the travel limit (types.MAX_TRAVEL) below which travel is unchanged

# One-Euro filter (Casiez et al. 2012): a first-order low-pass whose cutoff rises with speed, measured
# here in face sizes (box diagonals) per second so one setting fits a 100 px and a 1000 px face.
# - MIN_CUTOFF 1 Hz: on a still face, detector jitter is cut by 2-3x (see tests/test_motion.py).
# - BETA 20: a mouth opening at ~0.5 face size/s lifts the cutoff above 10 Hz, so syllables (3-5 Hz)
#   keep >= 80% of their amplitude.
# - SPEED_WINDOW 5 frames: the speed comes from a centred Savitzky-Golay derivative (we have the whole
#   track), which reacts to a mouth opening *before* it happens instead of a frame or two late, and is
#   less noisy than the raw frame difference the causal filter uses.
MIN_CUTOFF, BETA, SPEED_WINDOW = 1.0, 20.0, 5


def _low_pass(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """First-order recursive low-pass over axis 0 with a per-sample, per-coordinate factor alpha."""
    out = np.empty_like(x)
    out[0] = x[0]
    for t in range(1, len(x)):
        out[t] = out[t - 1] + alpha[t] * (x[t] - out[t - 1])
    return out


def smooth(points: np.ndarray, fps: float) -> np.ndarray:
    """Remove landmark jitter on still faces while keeping fast mouth motion (One-Euro filter).

    Each coordinate gets its own speed-driven cutoff, so a still forehead is smoothed hard while the
    lips of the same frame pass almost untouched. A causal low-pass lags, which would put the mouth
    behind the audio; we have the whole track, so we run it forwards and backwards and average the two,
    which cancels the lag to first order.
    """
    points = np.asarray(points, np.float32)
    if points.ndim != 3 or points.shape[1:] != (N_POINTS, 2):
        raise ValueError(f"expected (T, 68, 2) points, got {points.shape}")
    if len(points) < SPEED_WINDOW:
        return points.copy()
    flat = points.reshape(len(points), -1).astype(np.float64)
    box = points.max(axis=1) - points.min(axis=1)
    face = max(float(np.median(np.hypot(box[:, 0], box[:, 1]))), 1.0)
    speed = np.abs(savgol_filter(flat, SPEED_WINDOW, 2, deriv=1, axis=0)) * fps / face
    cutoff = MIN_CUTOFF + BETA * speed
    alpha = 1.0 / (1.0 + fps / (2 * np.pi * cutoff))  # the low-pass factor for this cutoff and rate
    forward = _low_pass(flat, alpha)
    backward = _low_pass(flat[::-1], alpha[::-1])[::-1]
    return ((forward + backward) / 2).reshape(points.shape).astype(np.float32)


def fill_gaps(points: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Frames without a face (found=False) take landmarks interpolated linearly between their nearest
    detected neighbours; leading/trailing gaps hold the nearest detected frame."""
    points = np.asarray(points, np.float32)
    found = np.asarray(found, bool)
    if not found.any():
        raise ValueError("fill_gaps needs at least one frame with a face")
    if found.all():
        return points.copy()
    t = np.arange(len(points))
    flat = points.reshape(len(points), -1)
    # np.interp holds the end values beyond the first/last sample: exactly the edge rule we want.
    filled = np.stack([np.interp(t, t[found], flat[found, i]) for i in range(flat.shape[1])], axis=1)
    return filled.reshape(points.shape).astype(np.float32)


def analyse_driver(
    path: Path,
    detector: object,
    max_frames: int | None = None,
    on_frame: Callable[[], None] | None = None,
) -> Motion:
    """Decode a driving video, track its 68 landmarks, fill frames without a face and smooth."""
    # Imported here so that loading a motion file (batch runs, tests) needs neither ffmpeg nor dlib.
    from . import landmarks, video
    from .engines.mouth import interior_track, read_interior
    from .gaze import gaze_track, read_gaze
    from .landmarks.magnify import Magnified, is_small

    info = video.probe(path)

    def counted(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in frames:
            if on_frame is not None:
                on_frame()
            yield frame

    small = is_small(info.size[1], info.size[0])
    frames = video.read_frames(path, max_frames)
    first = next(frames, None)
    if small and first is not None and not detector.detect(first) and Magnified(detector).detect(first):
        detector = Magnified(detector)  # a wide shot with a small face: magnify it from the start
    everything = counted(chain([] if first is None else [first], frames))
    readers = {"gaze": read_gaze, "mouth": read_interior}  # read while each frame is in memory
    result = landmarks.track(everything, detector, read=readers)
    if not result.found.any() and small and not isinstance(detector, Magnified):
        # no face in the first frame at either size, nor later at this one: once more, magnified (the bar
        # has counted the frames already, so this pass runs without it)
        result = landmarks.track(video.read_frames(path, max_frames), Magnified(detector), read=readers)
    found = np.asarray(result.found, bool)
    if not found.any():
        raise NoFaceError(path, "no face found in any frame")
    points = smooth(fill_gaps(result.points, found), info.fps)
    return Motion(
        points=points,
        found=found,
        fps=float(info.fps),
        frame_size=(int(info.size[0]), int(info.size[1])),
        source=str(path),
        has_audio=bool(info.has_audio),
        n_faces_max=int(result.n_faces_max),
        gaze=gaze_track(result.readings["gaze"]) if "gaze" in result.readings else None,
        mouth=interior_track(result.readings["mouth"]) if "mouth" in result.readings else None,
    )


def save_motion(motion: Motion, path: Path) -> None:
    """Write a motion file atomically: a compressed .npz of plain arrays (no pickles), format-versioned."""
    from . import video

    arrays = dict(
        format_version=np.int64(MOTION_FORMAT),
        points=np.asarray(motion.points, np.float32),
        found=np.asarray(motion.found, bool),
        fps=np.float64(motion.fps),
        frame_size=np.asarray(motion.frame_size, np.int64),
        source=np.str_(motion.source),
        has_audio=np.bool_(motion.has_audio),
        n_faces_max=np.int64(motion.n_faces_max),
    )
    if motion.gaze is not None:  # optional: motion files from before gaze was read still load
        arrays["gaze"] = np.asarray(motion.gaze, np.float32)
    if motion.mouth is not None:  # optional too, and NaN where the mouth was too closed to read
        arrays["mouth"] = np.asarray(motion.mouth, np.float16)
    video.write_atomically(Path(path), lambda tmp: np.savez_compressed(tmp, **arrays))


def load_motion(path: Path) -> Motion:
    """Read a motion file written by save_motion; InputError when it is missing, not one, or malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "motion file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(path, f"not a motion file ({exc.__class__.__name__})") from None
    missing = {"format_version", "points", "found", "fps", "frame_size"} - arrays.keys()
    if missing:
        raise InputError(path, f"not a motion file (missing {', '.join(sorted(missing))})")
    if int(arrays["format_version"]) != MOTION_FORMAT:
        raise InputError(path, f"motion format {int(arrays['format_version'])}, expected {MOTION_FORMAT}")
    points, found = arrays["points"], arrays["found"]
    if points.ndim != 3 or points.shape[1:] != (N_POINTS, 2) or len(points) == 0:
        raise InputError(path, f"motion points have shape {points.shape}, expected (T, 68, 2)")
    if found.shape != (len(points),) or arrays["frame_size"].shape != (2,):
        raise InputError(path, "motion arrays have inconsistent shapes")
    fps = float(arrays["fps"])
    if not np.isfinite(points).all() or not fps > 0:
        raise InputError(path, "motion file holds non-finite points or a bad fps")
    gaze = arrays.get("gaze")
    if gaze is not None and (gaze.shape != (len(points), 2) or not np.isfinite(gaze).all()):
        raise InputError(
            path, f"motion gaze has shape {gaze.shape} or bad values, expected ({len(points)}, 2)"
        )
    mouth = arrays.get("mouth")
    if mouth is not None and (mouth.ndim != 3 or len(mouth) != len(points) or np.isinf(mouth).any()):
        raise InputError(
            path, f"motion mouth has shape {mouth.shape} or bad values, expected ({len(points)}, 2, R)"
        )
    return Motion(
        points=points.astype(np.float32),
        found=found.astype(bool),
        fps=fps,
        frame_size=(int(arrays["frame_size"][0]), int(arrays["frame_size"][1])),
        source=str(arrays.get("source", "")),
        has_audio=bool(arrays.get("has_audio", False)),
        n_faces_max=int(arrays.get("n_faces_max", 1)),
        gaze=None if gaze is None else gaze.astype(np.float32),
        mouth=None if mouth is None else mouth.astype(np.float32),
    )


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """Inner-lip gap (points 62-66) over the outer-eye-corner distance (36-45, the 300-W normaliser)."""
    points = np.asarray(points, np.float64)
    gap = np.linalg.norm(points[..., 66, :] - points[..., 62, :], axis=-1)
    iod = np.linalg.norm(points[..., 45, :] - points[..., 36, :], axis=-1)
    return gap / np.maximum(iod, 1e-6)


def eye_opening(points: np.ndarray) -> np.ndarray:
    """Mean lid gap (37-41, 38-40, 43-47, 44-46) over the outer-eye-corner distance: ~0.1 open, ~0 shut."""
    points = np.asarray(points, np.float64)
    gaps = np.linalg.norm(points[..., [41, 40, 47, 46], :] - points[..., [37, 38, 43, 44], :], axis=-1)
    iod = np.linalg.norm(points[..., 45, :] - points[..., 36, :], axis=-1)
    return gaps.mean(-1) / np.maximum(iod, 1e-6)


def _complex(points: np.ndarray) -> np.ndarray:
    return points[..., 0].astype(np.float64) + 1j * points[..., 1].astype(np.float64)


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares 2D similarity dst ≈ a·src + b over the last axis, with a, b complex (Umeyama 1991
    in 2D). Closed form in numpy, vectorised over frames: simpler than a torch/kornia round trip."""
    ms, md = src.mean(-1, keepdims=True), dst.mean(-1, keepdims=True)
    s0, d0 = src - ms, dst - md
    a = (d0 * s0.conj()).sum(-1) / np.maximum((np.abs(s0) ** 2).sum(-1), 1e-12)
    return a, md[..., 0] - a * ms[..., 0]


def in_pose_of(face: np.ndarray, posed: np.ndarray) -> np.ndarray:
    """`face` (68, 2) moved by the similarity that best maps its STABLE points onto `posed`'s: the same
    expression, in the other face's pose (position, size, roll)."""
    a, b = similarity(_complex(face[STABLE]), _complex(posed[STABLE]))
    return _points(a * _complex(face) + b)


def _down(face: np.ndarray) -> complex:
    """The unit direction perpendicular to the eyes' line, towards the mouth, of one face (68,) complex."""
    eye_line = face[42:48].mean() - face[36:42].mean()
    return 1j * eye_line / max(abs(eye_line), 1e-6)


def _gaps(x: np.ndarray, down: complex) -> np.ndarray:
    """Lower minus upper lip/lid position along the face's `down` direction (> 0: open)."""
    return ((x[..., _LOWER] - x[..., _UPPER]) * np.conj(down)).real


def _keep_apart(x: np.ndarray, down: complex, floor: np.ndarray) -> np.ndarray:
    """Move lips/lids that crossed (gap below `floor`) back to where they meet, each by half."""
    fix = np.clip(floor - _gaps(x, down), 0, None) / 2 * down
    x = x.copy()
    x[:, _UPPER] -= fix  # up, against `down`
    x[:, _LOWER] += fix
    return x


def _frame_at(values: np.ndarray, found: np.ndarray, percentile: float) -> int:
    """Index of the detected frame whose value ranks at `percentile` among the detected frames."""
    candidates = np.flatnonzero(found)
    order = candidates[np.argsort(values[candidates], kind="stable")]
    return int(order[int(round(percentile / 100 * (len(order) - 1)))])


def neutral_reference(points: np.ndarray, found: np.ndarray | None = None) -> np.ndarray:
    """The driver's neutral face (68, 2), against which relative retargeting measures expression.

    Frame 0 alone (FOMM's default) fails when a driver starts mid-word or mid-blink: an open mouth at
    frame 0 reads as "closed", so every later opening smaller than it is lost (a training clip that
    starts at opening 0.25 left the portrait's mouth shut for the whole clip), and shut eyes at frame 0
    make the portrait stare. FOMM's `--find_best_frame` changes the reference for pose too, which moves
    the portrait away from its own pose at frame 0. Here pose stays relative to frame 0 (its STABLE
    points are kept); only the mouth and chin are taken from the frame where the mouth is closed
    (the 5th percentile of opening, not the minimum, which a detector glitch can set) and the eyes
    from a frame where they are as open as usual (the median), each moved into frame 0's pose.
    `found`: frames where a face was really detected (gap-filled frames are guesses); default all.
    A one-frame driver has no other frame to take them from: photo_reference.
    """
    points = np.asarray(points, np.float32)
    if len(points) == 1:
        return photo_reference(points[0])
    found = np.ones(len(points), bool) if found is None else np.asarray(found, bool)
    if not found.any():
        found = np.ones(len(points), bool)
    d = _complex(points)
    reference = d[0].copy()
    for region, value, percentile in (
        (MOUTH_REGION, mouth_opening(points), NEUTRAL_MOUTH_PERCENTILE),
        (EYE_REGION, eye_opening(points), 50.0),
    ):
        t = _frame_at(value, found, percentile)
        a, b = similarity(d[t][STABLE], d[0][STABLE])  # frame t's pose -> frame 0's
        reference[region] = a * d[t][region] + b
    return _points(reference)


def photo_reference(face: np.ndarray, share: float = PHOTO_TEMPLATE_SHARE) -> np.ndarray:
    """A resting face (68, 2) for a one-frame driver, whose own resting face was never seen (a photo).

    LivePortrait measures a driving image's expression against an average neutral template; landmarks
    also hold a face's shape, so the average alone would read a wide or thick mouth as an expression.
    Here the photo's own mouth is closed (the lower lip and chin lifted by the inner lips' gap, _CLOSING)
    and then moved `share` of the way to the average resting face's mouth and chin, in the photo's pose:
    its opening carries over in full, a smile in part. The eyes and brows are the photo's own: an average
    would read small eyes as a squint.
    """
    face = np.asarray(face, np.float32)
    z = _complex(face)
    down = _down(z)
    gap = max(0.0, float(_gaps(z, down)[:3].mean()))  # the inner lips' pairs come first in _UPPER/_LOWER
    lift = np.zeros(N_POINTS)
    lift[list(_CLOSING)] = list(_CLOSING.values())
    closed = z - gap * down * lift
    average = _complex(in_pose_of(_average_resting_face(), face))
    closed[MOUTH_REGION] += share * (average[MOUTH_REGION] - closed[MOUTH_REGION])
    return _points(closed)


@cache
def _average_resting_face() -> np.ndarray:
    from importlib import resources

    return np.loadtxt(str(resources.files("animate_portrait.assets") / "neutral_face.txt"), np.float32)


def limit_travel(travel: np.ndarray, limit: float) -> np.ndarray:
    """Travel lengths (≥ 0) eased towards `limit`: unchanged up to TRAVEL_KNEE × limit, then a tanh
    shoulder with the same slope at the knee, so the face slows down instead of stopping dead."""
    knee = TRAVEL_KNEE * limit
    room = limit - knee
    if room <= 0:
        return np.minimum(travel, limit)
    return np.where(travel <= knee, travel, knee + room * np.tanh((travel - knee) / room))


def retarget(
    source: np.ndarray,
    driver: np.ndarray,
    relative: bool = True,
    reference: np.ndarray | None = None,
    max_travel: float | None = MAX_TRAVEL,
    region: str = "all",
    expression_scale: float = 1.0,
) -> np.ndarray:
    """Map driver landmarks (T, 68, 2, driver px) onto the portrait's landmarks (68, 2, crop px).

    Relative (default), with D_0 the driver's neutral face, `reference`: the pipeline passes
    neutral_reference(driver); the default is the first frame, where an open mouth reads as "closed"
    and can only close further, which `_keep_apart` stops at lips touching:
      A_t   similarity D_0 -> D_t on STABLE points (head pose change: rotation, scale, translation);
      E_t = A_t⁻¹(D_t) - D_0, the expression change in frame-0 coordinates;
      R     similarity D_0 -> S on STABLE points: carries E_t into the portrait's orientation and size
            (the face-size normalisation; stable points, not the bounding box, so an open mouth or a
            long chin at frame 0 does not change the scale);
      T_t = A_t's rotation/scale about the portrait's centre, applied to S + R(E_t), plus A_t's
            translation scaled by |R|.
    Absolute: one similarity R fitted from D_0 to S (STABLE points) applied to every frame: the
    driver's own face shape, placed where the portrait's face is.

    Passing `reference` also lets a long driver be retargeted in chunks, so memory does not grow with
    the video's length. `max_travel` (relative only; None: no limit) eases A_t's translation, once
    carried over, towards that many of the portrait's face extents (MAX_TRAVEL, limit_travel).

    Relative only: `region` (REGIONS) keeps the head's pose change, the expression change of some points,
    or both; `expression_scale` multiplies E_t (LivePortrait's driving multiplier: 0 still, >1 stronger).
    """
    source = np.asarray(source, np.float32)
    driver = np.asarray(driver, np.float32)
    if source.shape != (N_POINTS, 2) or driver.ndim != 3 or driver.shape[1:] != (N_POINTS, 2):
        raise ValueError(f"expected source (68, 2) and driver (T, 68, 2), got {source.shape}, {driver.shape}")
    s, d = _complex(source), _complex(driver)
    d0 = d[0] if reference is None else _complex(np.asarray(reference, np.float32))
    r_a, r_b = similarity(d0[STABLE], s[STABLE])
    if not relative:
        return _points(r_a * d + r_b)
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {', '.join(REGIONS)}")
    with_pose, moving = REGIONS[region]
    a, b = similarity(d0[STABLE], d[:, STABLE])  # (T,) each
    expression = (d - b[:, None]) / a[:, None] - d0
    kept = np.zeros(N_POINTS)
    kept[moving] = expression_scale
    expression = expression * kept
    if not with_pose:  # the head stays as the portrait holds it: no rotation, scale or travel
        a, b = np.ones_like(a), np.zeros_like(b)
    down = _down(s)
    # Floor at the portrait's own gap when that is negative (a detector quirk on closed mouths), so
    # an identity driver returns the portrait's landmarks unchanged.
    x = _keep_apart(s + r_a * expression, down, np.minimum(_gaps(s, down), 0))
    c_d, c_s = d0[STABLE].mean(), s[STABLE].mean()
    shift = abs(r_a) * (a * c_d + b - c_d)  # A_t's translation, rotation/scale taken about c_d, carried over
    if max_travel is not None:
        travel = np.abs(shift) / face_extent(source)
        eased = limit_travel(travel, max_travel)
        shift = shift * np.where(travel > 0, eased / np.maximum(travel, 1e-12), 1.0)
    return _points(a[:, None] * (x - c_s) + c_s + shift[:, None])


def _points(z: np.ndarray) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1).astype(np.float32)
