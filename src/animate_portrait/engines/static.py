"""The `static` engine: the portrait's face crop, unchanged. A baseline for metrics and a smoke test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..models.blocks import identity_grid
from ..types import SourceFace
from .base import check_sources, check_targets


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

    def sampling_grid(self, targets: np.ndarray) -> np.ndarray:
        """(B, 2, 2, 2): every output pixel reads the source where it is (detail.py)."""
        n = len(check_targets(targets))
        return np.repeat(identity_grid(2).numpy(), n, axis=0)
