"""The `static` engine: the portrait's face crop, unchanged. A baseline for metrics and a smoke test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..models.blocks import identity_grid
from ..types import SourceFace
from .base import Traced, check_sources, check_targets


class StaticRenderer:
    """Ignores the targets and returns the first source's crop for every frame."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._face: np.ndarray | None = None

    def prepare(self, sources: Sequence[SourceFace]) -> None:
        check_sources(sources, self.size)
        self._face = sources[0].face

    def render(self, targets: np.ndarray) -> np.ndarray:
        if self._face is None:
            raise RuntimeError("call prepare() before render()")
        n = len(check_targets(targets))
        return np.repeat(self._face[None], n, axis=0)

    def render_traced(self, targets: np.ndarray) -> Traced:
        """The crops and (B, 2, 2, 2) grids: every output pixel reads the source where it is."""
        frames = self.render(targets)
        return Traced(frames, np.repeat(identity_grid(2).numpy(), len(frames), axis=0))
