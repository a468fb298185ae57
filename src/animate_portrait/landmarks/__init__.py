"""68-point facial landmarks: backends behind `LandmarkDetector`, and a detect-then-track loop for video."""

from __future__ import annotations

from .base import Box, LandmarkDetector
from .track import TrackResult, track

__all__ = ["Box", "LandmarkDetector", "TrackResult", "get_detector", "track"]


def get_detector(name: str = "dlib") -> LandmarkDetector:
    """The backend by name: "dlib" (default, offline) or "fan" (optional extra `animate-portrait[fan]`)."""
    if name == "dlib":
        from .dlib_backend import DlibDetector

        return DlibDetector()
    if name == "fan":
        from .fan_backend import FanDetector

        return FanDetector()
    raise ValueError(f"unknown landmark backend {name!r}: use 'dlib' or 'fan'")
