"""Small typed values that travel between pipeline stages.

Coordinates are always (x, y) in pixels of the image they refer to, float32.
Images are always RGB uint8 arrays of shape (H, W, 3) unless a name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

N_POINTS = 68  # the iBUG 68-point layout used by dlib, face-alignment and the paper


@dataclass(frozen=True)
class Landmarks:
    """68 iBUG points of one face, (x, y) pixels in the image they were found in."""

    points: np.ndarray  # (68, 2) float32

    def __post_init__(self) -> None:
        if self.points.shape != (N_POINTS, 2):
            raise ValueError(f"expected (68, 2) landmarks, got {self.points.shape}")

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Tight bounding box (x0, y0, x1, y1) of the points."""
        x0, y0 = self.points.min(axis=0)
        x1, y1 = self.points.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def size(self) -> float:
        """A pose-robust face scale: the diagonal of the tight box."""
        x0, y0, x1, y1 = self.box
        return float(np.hypot(x1 - x0, y1 - y0))


@dataclass(frozen=True)
class Crop:
    """A square, axis-aligned face crop: `side` source pixels around `center`, resized to `size`².

    Axis-aligned (no rotation) so that paste-back is a plain resize + feathered blend of one box.
    """

    center: tuple[float, float]
    side: float
    size: int

    @property
    def scale(self) -> float:
        """Crop pixels per source pixel."""
        return self.size / self.side

    @property
    def origin(self) -> tuple[float, float]:
        return self.center[0] - self.side / 2, self.center[1] - self.side / 2

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) source-image points into crop pixels."""
        ox, oy = self.origin
        return ((points - np.array([ox, oy], np.float32)) * self.scale).astype(np.float32)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) crop pixels back into source-image points."""
        ox, oy = self.origin
        return (points / self.scale + np.array([ox, oy], np.float32)).astype(np.float32)


@dataclass(frozen=True)
class SourceFace:
    """One portrait image prepared for rendering: the whole picture and its face crop."""

    path: Path
    image: np.ndarray  # full picture, RGB uint8
    crop: Crop
    face: np.ndarray  # (size, size, 3) RGB uint8 crop of `image`
    points: np.ndarray  # (68, 2) float32 landmarks in crop pixels
    n_faces: int = 1  # faces found in the picture; the largest was taken


@dataclass
class Motion:
    """A driver analysed once: landmarks per frame (driver pixels), reusable for many portraits."""

    points: np.ndarray  # (T, 68, 2) float32, gaps already filled and smoothed
    found: np.ndarray  # (T,) bool: whether a face was detected in that frame (False: filled from neighbours)
    fps: float
    frame_size: tuple[int, int]  # (width, height) of the driver video
    source: str = ""  # the driver video's path, used to copy its audio; may be empty
    has_audio: bool = False
    n_faces_max: int = 1  # most faces seen in one frame; the largest was followed
    gaze: np.ndarray | None = None  # (T, 2) the irises' offset in eye widths (gaze.py); None: not read
    # (T, 2, R) how light and how white the mouth's opening is, top to bottom (engines/mouth.py); NaN: unread
    mouth: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.gaze is not None and np.shape(self.gaze) != (len(self.points), 2):
            raise ValueError(f"gaze has shape {np.shape(self.gaze)}, expected ({len(self.points)}, 2)")
        if self.mouth is not None and (np.ndim(self.mouth) != 3 or len(self.mouth) != len(self.points)):
            raise ValueError(f"mouth has shape {np.shape(self.mouth)}, expected ({len(self.points)}, 2, R)")

    @property
    def n_frames(self) -> int:
        return int(self.points.shape[0])

    def cut(self, frames: slice | np.ndarray) -> Motion:
        """These frames of every per-frame track (points, found, gaze, mouth), in this order: a slice, or
        indices (repeats allowed: a motion looped); the rest as it is."""

        def part(track: np.ndarray | None) -> np.ndarray | None:
            return None if track is None else track[frames]

        return replace(
            self,
            points=self.points[frames],
            found=self.found[frames],
            gaze=part(self.gaze),
            mouth=part(self.mouth),
        )

    def looped(self, n_frames: int) -> Motion:
        """This motion played over and over until it lasts `n_frames`; silent, as the driver's audio
        would not loop with it."""
        return replace(self.cut(np.arange(n_frames) % self.n_frames), has_audio=False)

    @property
    def n_filled(self) -> int:
        return int((~self.found).sum())


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    size: tuple[int, int]  # (width, height)
    n_frames: int  # from the container; may be an estimate, trust the decoded count
    has_audio: bool
    audio_codec: str | None = None


# How far relative motion may move the portrait's face, in its face extents (face.crop_for's unit: the
# larger side of the landmark box). The crop is 1.9 extents wide and its outer quarter is the paste-back
# feather, so a face moved by more than about 0.2 extents reaches it; a driver whose head crosses its
# frame (0.7 extents in a training clip, docs/RESULTS.md "Hard drivers") would carry the face out of the
# crop. Travel up to motion.TRAVEL_KNEE of it is kept as it is, beyond that it eases towards the limit.
MAX_TRAVEL = 0.25
# What relative motion may take from the driver (--region; motion.REGIONS says which points).
REGION_NAMES = ("all", "expression", "pose", "lips", "eyes")
# What a painted mouth opening shows (--mouth-interior; engines/mouth.py).
MOUTH_INTERIORS = ("painted", "driver")

# Output containers by suffix, and the encoder family each takes (video.VideoWriter). H.264 + AAC plays
# everywhere; WebM (VP9 + Opus) is what browsers and web pipelines take without a licence question; GIF (no
# sound) is what chats and READMEs show inline, and what FOMM writes. Any other suffix fails before any work,
# not after the whole render as ffmpeg's own error would.
OUTPUT_FORMATS = {
    ".mp4": "h264",
    ".m4v": "h264",
    ".mov": "h264",
    ".mkv": "h264",
    ".webm": "vp9",
    ".gif": "gif",
    ".png": "still",
    ".jpg": "still",
    ".jpeg": "still",
    ".webp": "still",
}
# The still images (still.StillWriter, for a one-frame driver), with Pillow's name for each format.
STILL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
assert all(OUTPUT_FORMATS[s] == "still" for s in STILL_FORMATS)
OUTPUT_HELP = (
    "Output video: .mp4, .mov, .mkv (H.264 + AAC), .webm (VP9 + Opus) or .gif (no sound); or, with a photo "
    "as the driver, a still image: .png, .jpg, .webp."
)


def face_extent(points: np.ndarray) -> float:
    """The larger side of the tight landmark box (NaN points ignored), at least 1 px: the unit of the
    crop's size (face.crop_for) and of the head's travel (MAX_TRAVEL)."""
    lo, hi = np.nanmin(points, axis=0), np.nanmax(points, axis=0)
    return float(max(hi[0] - lo[0], hi[1] - lo[1], 1.0))


@dataclass
class RenderConfig:
    """What the user chose; the pipeline reads it, the stages get only the parts they need."""

    size: int = 256
    engine: str = "warp"
    device: str = "auto"
    landmarks: str = "dlib"
    relative: bool = True
    max_travel: float | None = MAX_TRAVEL  # None: all of the driver's travel
    region: str = "all"  # relative motion: what the portrait takes from the driver (motion.REGIONS)
    expression_scale: float = 1.0  # relative motion: the driver's expression change × this
    faces: str = "largest"  # "all": every face in the picture is driven (pipeline._render_every_face)
    crop_only: bool = False
    side_by_side: bool = False  # the driver's frame left of each output frame (compare.py)
    audio: bool = True
    audio_file: Path | None = None  # a soundtrack instead of the driver's (--audio)
    max_frames: int | None = None
    weights: Path | None = None
    overwrite: bool = False
    finetune_steps: int = 0  # neural engine, batch: fine-tune on each portrait first (persons.py)
    mouth: bool = True  # paint the mouth interior where the lips part (engines/mouth.py)
    # what the opening shows: upper teeth (painted), or what the driver's does (MOUTH_INTERIORS)
    mouth_interior: str = "painted"
    gaze: bool = True  # the irises follow the driver's (gaze.py), where the motion has them
    detail: bool = True  # a face pasted back into a big picture keeps its full-resolution detail (detail.py)
