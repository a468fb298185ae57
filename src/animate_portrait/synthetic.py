"""A real talking-face video made without third-party footage: the astronaut's own face, warped.

Tests and the benchmark use it so that they run on a fresh machine (no ../shared, no downloads).
Her lower lip and chin move down and up (mouth opens and closes every 8 frames) while the head sways.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOWER_FACE = [6, 7, 8, 9, 10, 55, 56, 57, 58, 59, 65, 66, 67]  # chin, outer and inner lower lip


@dataclass(frozen=True)
class TalkingVideo:
    path: Path
    fps: float
    n_frames: int
    opening: np.ndarray  # (T,) how far the mouth was pulled open in each frame, crop pixels
    has_audio: bool


def astronaut() -> np.ndarray:
    """NASA's public-domain portrait of Eileen Collins, from scikit-image's package data."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def tone(path: Path, seconds: float, frequency: float = 440) -> Path:
    """A test tone (440 Hz by default) made by the bundled ffmpeg; the suffix picks the format."""
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
           f"sine=frequency={frequency}:duration={seconds}", str(path)]  # fmt: skip
    subprocess.run(cmd, check=True)
    return path


def talking_video(folder: Path, n_frames: int = 24, fps: float = 12.0, audio: bool = True) -> TalkingVideo:
    from . import face, video
    from .engines import get_renderer
    from .landmarks import get_detector
    from .types import SourceFace

    image = astronaut()
    found = get_detector("dlib").detect(image)[0]
    crop = face.crop_for(found, 256)
    points = crop.to_crop(found.points)
    source = SourceFace(Path("astronaut.png"), image, crop, face.extract(image, crop), points)
    renderer = get_renderer("warp", 256, "cpu", None)
    renderer.prepare([source])
    t = np.arange(n_frames)
    opening = 14.0 * (0.5 - 0.5 * np.cos(2 * np.pi * t / 8))
    sway = 6.0 * np.sin(2 * np.pi * t / max(n_frames, 1))
    targets = np.repeat(points[None], n_frames, axis=0).copy()
    targets[:, LOWER_FACE, 1] += opening[:, None]
    targets[:, :, 0] += sway[:, None]
    path = folder / "astronaut_talks.mp4"
    sound = tone(folder / "tone.wav", n_frames / fps + 0.5) if audio else None
    with video.VideoWriter(path, fps, (256, 256), audio_from=sound, overwrite=True) as writer:
        for start in range(0, n_frames, 16):  # small batches: memory stays flat for long videos
            for frame in renderer.render(targets[start : start + 16]):
                writer.write(frame)
    return TalkingVideo(path, fps, n_frames, opening, audio)
