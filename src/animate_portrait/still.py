"""A still image as the output (-o face.png/.jpg/.webp): the one frame a photo driver gives.

LivePortrait writes an image when it is driven by an image; here a one-frame driver writes any of the
still formats (types.STILL_FORMATS), through the same interface as video.VideoWriter, so that the
pipeline, --side-by-side and batch need no second path. A driver of more frames is refused before any
rendering: one frame of it would be an arbitrary choice.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import numpy as np
from PIL import Image

from . import video
from .errors import InputError
from .types import STILL_FORMATS

JPEG_QUALITY = 95  # Pillow's default (75) shows blocks around the eyes of a 1024 px portrait


def is_still(path: Path) -> bool:
    return Path(path).suffix.lower() in STILL_FORMATS


def check_frames(path: Path, n_frames: int) -> None:
    """A still image holds one frame: fail when the driver gives more."""
    if n_frames > 1:
        raise InputError(
            path,
            f"a still image holds one frame, and the driver gives {n_frames}: drive it with a photo, or "
            "write a video (.mp4)",
        )


def check_driver(output: Path, driver: Path, max_frames: int | None) -> None:
    """Before the driver's analysis: a still output and a driving video of more than one frame."""
    if not is_still(output) or Path(driver).suffix.lower() == ".npz":  # a motion file: checked once read
        return
    n = video.probe(Path(driver)).n_frames
    check_frames(output, min(n, max_frames or n))


class StillWriter:
    """Write one RGB frame as a PNG, JPEG or WebP, atomically, when the `with` block ends without error."""

    has_audio = False

    def __init__(self, path: Path, size: tuple[int, int], n_frames: int, overwrite: bool = False) -> None:
        self.path = Path(path)
        video.check_output(self.path, overwrite)
        check_frames(self.path, n_frames)
        self.size = (int(size[0]), int(size[1]))
        self.n_frames = 0
        self._frame: np.ndarray | None = None

    def __enter__(self) -> StillWriter:
        return self

    def write(self, frame: np.ndarray) -> None:
        w, h = self.size
        if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise ValueError(f"expected a ({h}, {w}, 3) uint8 frame, got {frame.shape} {frame.dtype}")
        check_frames(self.path, self.n_frames + 1)
        self._frame = frame.copy()
        self.n_frames += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            return
        if self._frame is None:
            raise InputError(self.path, "no frames to write")
        image = Image.fromarray(self._frame)
        fmt = STILL_FORMATS[self.path.suffix.lower()]
        options = {} if fmt == "PNG" else {"quality": JPEG_QUALITY}
        video.write_atomically(self.path, lambda tmp: image.save(tmp, format=fmt, **options))
