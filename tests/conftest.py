"""Shared fixtures: real faces that the repository may ship, and ../shared/data when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from animate_portrait.synthetic import TalkingVideo, talking_video

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """NASA's public-domain portrait of Eileen Collins (512×512 RGB), shipped inside scikit-image."""
    from animate_portrait.synthetic import astronaut

    return astronaut()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (CI has it); tests that need it are skipped on a fresh machine without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data at {SHARED_DATA}, which is absent on this machine")
    return SHARED_DATA


Driver = TalkingVideo


def make_driver(folder: Path, n_frames: int = 24, fps: float = 12.0, audio: bool = True) -> TalkingVideo:
    return talking_video(folder, n_frames, fps, audio)


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Driver:
    return make_driver(tmp_path_factory.mktemp("driver"))


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("portrait") / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    return path


def sound_of(path: Path, rate: int = 8000) -> tuple[float, float]:
    """(seconds, loudest frequency in Hz) of a file's audio, decoded by the bundled ffmpeg."""
    import subprocess

    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-vn"]
    cmd += ["-f", "s16le", "-ac", "1", "-ar", str(rate), "-"]
    samples = np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, np.int16)
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return len(samples) / rate, float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])
