"""Shared fixtures: real faces that the repository may ship, and ../shared/data when present."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """NASA's public-domain portrait of Eileen Collins (512×512 RGB), shipped inside scikit-image."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (CI has it); tests that need it are skipped on a fresh machine without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data at {SHARED_DATA}, which is absent on this machine")
    return SHARED_DATA


@dataclass(frozen=True)
class Driver:
    """A real talking-face video made from the astronaut: her mouth opens and closes, her head sways."""

    path: Path
    fps: float
    n_frames: int
    opening: np.ndarray  # (T,) how far the mouth was opened in each frame, in crop pixels
    has_audio: bool


def _tone(path: Path, seconds: float) -> Path:
    import subprocess

    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
           f"sine=frequency=440:duration={seconds}", "-c:a", "pcm_s16le", str(path)]
    subprocess.run(cmd, check=True)
    return path


def make_driver(folder: Path, n_frames: int = 24, fps: float = 12.0, audio: bool = True) -> Driver:
    """Warp the astronaut's face crop: lower lip and chin move down and up, the head sways sideways."""
    from skimage import data

    from animate_portrait import face, video
    from animate_portrait.engines import get_renderer
    from animate_portrait.landmarks import get_detector
    from animate_portrait.types import SourceFace

    image = np.ascontiguousarray(data.astronaut())
    found = get_detector("dlib").detect(image)[0]
    crop = face.crop_for(found, 256)
    points = crop.to_crop(found.points)
    source = SourceFace(Path("astronaut.png"), image, crop, face.extract(image, crop), points)
    renderer = get_renderer("warp", 256, "cpu", None)
    renderer.prepare([source])
    t = np.arange(n_frames)
    opening = 14.0 * (0.5 - 0.5 * np.cos(2 * np.pi * t / 8))  # open/close every 8 frames
    sway = 6.0 * np.sin(2 * np.pi * t / n_frames)
    targets = np.repeat(points[None], n_frames, axis=0).copy()
    lower = [6, 7, 8, 9, 10, 55, 56, 57, 58, 59, 65, 66, 67]  # chin, outer and inner lower lip
    targets[:, lower, 1] += opening[:, None]
    targets[:, :, 0] += sway[:, None]
    frames = renderer.render(targets)
    path = folder / "astronaut_talks.mp4"
    sound = _tone(folder / "tone.wav", n_frames / fps + 0.5) if audio else None
    with video.VideoWriter(path, fps, (256, 256), audio_from=sound, overwrite=True) as writer:
        for frame in frames:
            writer.write(frame)
    return Driver(path, fps, n_frames, opening, audio)


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Driver:
    return make_driver(tmp_path_factory.mktemp("driver"))


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("portrait") / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    return path
