"""Training: the data cache (prepare), episodes (dataset), losses and the resumable train loop.

`prepare_clips(clips, out, size)` builds the cache; `train(cache, out, TrainConfig(...))` trains from it.
Imported lazily, so `python -m animate_portrait.training.train` runs without importing the package twice
and nothing here needs dlib until `prepare_clips` is called.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainConfig", "prepare_clips", "train"]


def __getattr__(name: str) -> Any:
    if name == "prepare_clips":
        from .prepare import prepare_clips

        return prepare_clips
    if name in ("TrainConfig", "train"):
        from . import train as _train

        return getattr(_train, name)
    raise AttributeError(name)
