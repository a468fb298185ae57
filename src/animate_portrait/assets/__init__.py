"""Embedded defaults for `animate-portrait demo`: only material this repository may ship.

- The portrait is NASA's public-domain photo of astronaut Eileen Collins, read from scikit-image's
  package data (nothing is downloaded).
- The motion file holds only landmarks that our own `motion` command derived from a talking-face clip
  (see MOTION_CARD.md beside it); no frame of the clip is shipped.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path


def demo_motion_path() -> Path:
    return Path(str(resources.files(__package__) / "demo.motion.npz"))


def demo_portrait_path() -> Path:
    """The astronaut as a PNG file (written once to the temp folder, since the pipeline reads paths)."""
    from PIL import Image
    from skimage import data

    path = Path(tempfile.gettempdir()) / "animate-portrait-astronaut.png"
    if not path.is_file():
        partial = path.with_suffix(".partial.png")
        Image.fromarray(data.astronaut()).save(partial)
        partial.replace(path)
    return path
