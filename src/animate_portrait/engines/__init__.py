"""Face renderers behind one interface (`Renderer`): static, warp (TPS baseline) and neural.

The neural engine is imported only when asked for: it pulls in the models and weights, and is written
in `engines/neural.py`, which must define `NeuralRenderer(size: int, device: str, weights: Path | None)`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from .base import Renderer
from .static import StaticRenderer
from .warp import WarpRenderer

ENGINES = ("static", "warp", "neural")

__all__ = ["ENGINES", "Renderer", "StaticRenderer", "WarpRenderer", "get_renderer", "paints_mouth"]


def paints_mouth(engine: str, mouth: bool = True) -> bool:
    """Whether `engine`'s frames get the mouth interior painted (engines/mouth.py) under --mouth: the
    engines that move the face. The one rule for get_renderer, the pipeline and evaluate."""
    return mouth and engine != "static"


def get_renderer(
    name: str,
    size: int,
    device: str = "cpu",
    weights: Path | None = None,
    *,
    precision: str = "auto",
    compile: bool = False,
    mouth: bool = True,
) -> Renderer:
    """The renderer called `name`, working on size×size crops on `device` ("auto" picks CUDA if present).

    `precision` (auto, fp32, fp16, bf16) and `compile` (torch.compile) tune the neural engine's forward
    pass; the static and warp engines have no network, and ignore them. `mouth` paints the mouth interior
    where the lips part further than the portrait's (see engines/mouth.py) on the engines that move."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "static":
        return StaticRenderer(size)
    if name == "warp":
        return _with_mouth(WarpRenderer(size, device), paints_mouth(name, mouth))
    if name == "neural":
        try:
            from .neural import NeuralRenderer
        except ImportError as exc:
            raise InputError(None, f"neural engine unavailable: {exc}") from None
        neural = NeuralRenderer(
            size=size, device=device, weights=weights, precision=precision, compile=compile
        )
        return _with_mouth(neural, paints_mouth(name, mouth))
    raise InputError(None, f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


def _with_mouth(renderer: Renderer, mouth: bool) -> Renderer:
    from .mouth import MouthFilled

    return MouthFilled(renderer) if mouth else renderer
