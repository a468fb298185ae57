"""--side-by-side: every output frame with the driver's frame on its left, as LivePortrait's concatenated
video and First Order Motion Model's demo show a result, so a viewer can judge how the motion was followed.

The panel is the driver's own frame, scaled to the output's height. A motion file whose video is not at hand
(made on another machine) shows its landmark sketch on black instead: the motion is still there to compare.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from . import video
from .sketch import draw_sketch
from .still import StillWriter
from .types import Motion


class DriverPanels:
    """The driver's frames one at a time, `height` px high, decoded as they are asked for."""

    def __init__(self, driving: Motion, height: int, n_frames: int) -> None:
        frame_w, frame_h = driving.frame_size
        self.height = int(height)
        self.scale = self.height / frame_h
        self.width = max(2, 2 * round(frame_w * self.scale / 2))  # even, so an even output stays even
        self._points = driving.points[:n_frames]
        self._source = Path(driving.source) if driving.source else None
        self._frames: Iterator[np.ndarray] | None = None
        self._t = 0

    def next(self) -> np.ndarray:
        """(height, width, 3) uint8: the next driver frame, or its sketch where the video has none."""
        if self._frames is None:
            self._frames = self._open()
        frame = next(self._frames, None)
        t = min(self._t, len(self._points) - 1)
        self._t += 1
        if frame is None:  # no video at hand, or it ended early: the landmarks still show the motion
            return draw_sketch(self._points[t] * self.scale, (self.width, self.height))
        resized = Image.fromarray(frame).resize((self.width, self.height), Image.Resampling.BILINEAR)
        return np.asarray(resized)

    def _open(self) -> Iterator[np.ndarray]:
        if self._source is None or not self._source.is_file():
            return iter(())
        return video.read_frames(self._source, len(self._points))

    def close(self) -> None:
        """Stop the driver's decoder (its ffmpeg) when the output ends before the driver does."""
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()


class SideBySideWriter:
    """A VideoWriter whose frames get the driver's panel on their left; the same interface."""

    def __init__(self, writer: video.VideoWriter | StillWriter, panels: DriverPanels) -> None:
        self.writer = writer
        self.panels = panels

    @property
    def size(self) -> tuple[int, int]:
        return self.writer.size

    @property
    def has_audio(self) -> bool:
        return self.writer.has_audio

    @property
    def n_frames(self) -> int:
        return self.writer.n_frames

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(np.concatenate([self.panels.next(), frame], axis=1))

    def __enter__(self) -> SideBySideWriter:
        self.writer.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.writer.__exit__(exc_type, exc, tb)
        finally:
            self.panels.close()
