"""The one interface every face renderer implements (static, warp, neural)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from ..types import N_POINTS, SourceFace


class Traced(NamedTuple):
    """Rendered crops and where they read the lead source: `grids` holds (…, g, g, 2) grid_sample
    coordinates (align_corners=False) in the lead's crop at the engine's own resolution g, one per crop;
    None where the caller did not ask (`Pipeline.render_group`)."""

    frames: np.ndarray
    grids: np.ndarray | None


@runtime_checkable
class Renderer(Protocol):
    """Renders the portrait's face crop posed by target landmarks.

    `prepare` takes the K source crops of one person (K-shot) once per portrait; `render` is then
    called with batches of target landmarks in crop pixels and returns (B, size, size, 3) uint8 crops.
    `render_traced` returns the same crops and, from the same pass, where each output pixel read the
    first source's crop (`Traced`), which lets detail.py move that source's full-resolution pixels alike.
    """

    size: int

    def prepare(self, sources: Sequence[SourceFace]) -> None: ...

    def render(self, targets: np.ndarray) -> np.ndarray: ...

    def render_traced(self, targets: np.ndarray) -> Traced: ...


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


def rendered(
    renderer: Renderer, targets: np.ndarray, traced: bool, mouths: dict, group: bool = False
) -> Traced:
    """The renderer's crops of `targets`, with their grids where `traced` (else None). `mouths`: the
    keyword `engines.mouth.profiles_arg` gives; `group`: (P, t, 68, 2) targets, through `render_group`."""
    if group:
        if traced:
            return renderer.render_group_traced(targets, **mouths)
        return Traced(renderer.render_group(targets, **mouths), None)
    if traced:
        return renderer.render_traced(targets, **mouths)
    return Traced(renderer.render(targets, **mouths), None)
