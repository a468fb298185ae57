"""The one interface every face renderer implements (static, warp, neural)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ..types import N_POINTS, SourceFace


@runtime_checkable
class Renderer(Protocol):
    """Renders the portrait's face crop posed by target landmarks.

    `prepare` takes the K source crops of one person (K-shot) once per portrait; `render` is then
    called with batches of target landmarks in crop pixels and returns (B, size, size, 3) uint8 crops.
    `sampling_grid` says, for the same targets, where each output pixel reads the first source's crop:
    (B, g, g, 2) grid_sample coordinates (align_corners=False) at the engine's own resolution g, which
    lets detail.py move that source's full-resolution pixels the same way.
    """

    size: int

    def prepare(self, sources: Sequence[SourceFace]) -> None: ...

    def render(self, targets: np.ndarray) -> np.ndarray: ...

    def sampling_grid(self, targets: np.ndarray) -> np.ndarray: ...


def check_targets(targets: np.ndarray) -> np.ndarray:
    """Targets as a (B, 68, 2) float32 array; ValueError for any other shape."""
    targets = np.asarray(targets, np.float32)
    if targets.ndim != 3 or targets.shape[1:] != (N_POINTS, 2):
        raise ValueError(f"expected (B, 68, 2) target landmarks, got {targets.shape}")
    return targets


def check_sources(sources: Sequence[SourceFace], size: int) -> None:
    """At least one source, each with a (size, size, 3) crop."""
    if not sources:
        raise ValueError("a renderer needs at least one source face")
    for source in sources:
        if source.face.shape != (size, size, 3):
            raise ValueError(f"source crop is {source.face.shape}, the renderer works at {size}x{size}")
