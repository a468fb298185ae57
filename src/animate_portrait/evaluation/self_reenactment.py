"""Self-reenactment: a clip's first K frames are the sources, its own later frames the driver and the truth.

All frames are compared inside one fixed face box, the first source frame's crop, so the metrics see the
head move as the renderer had to draw it. The targets are the real frames' own landmarks (absolute, no
retargeting: the person is the same), and every K shares the same target frames, those after the largest
K, so 1-shot and 8-shot rows are measured on exactly the same frames.

Streams: one pass of decoding per clip keeps only the K sources and a small batch of targets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import face, metrics, motion, video
from ..types import Crop, Landmarks, SourceFace
from .common import Judge, RendererFactory, Series, Setup, mean_finite

BATCH = 8  # targets rendered per call: the renderers' own batch size in the pipeline


def frames_needed(k_max: int, max_frames: int | None, step: int) -> int | None:
    """How many leading frames of a clip the evaluation reads: K sources, then the sampled targets."""
    return None if max_frames is None else k_max + (max_frames - 1) * step + 1


def is_target(index: int, k_max: int, step: int) -> bool:
    return index >= k_max and (index - k_max) % step == 0


def evaluate_clip(
    clip: Path,
    setups: Sequence[Setup],
    factory: RendererFactory,
    judge: Judge,
    max_frames: int | None = None,
    step: int = 1,
    on_frame: Callable[[], None] | None = None,
) -> dict[Setup, dict[str, float]]:
    """Per-clip numbers for each setup: means over target frames, and the mouth-opening correlation."""
    k_max = max(s.shots for s in setups)
    n_read = frames_needed(k_max, max_frames, step)
    driving = motion.analyse_driver(clip, judge.detector, n_read)
    crop = face.crop_for(Landmarks(driving.points[0]), factory.size)
    sources: list[SourceFace] = []
    renderers: dict[Setup, object] = {}
    series = {s: Series() for s in setups}
    real_opening: list[float] = []
    batch: list[tuple[np.ndarray, np.ndarray]] = []
    n_targets = 0
    for i, frame in enumerate(video.read_frames(clip, n_read)):
        if i < k_max:
            sources.append(_source(clip, frame, crop, driving.points[i]))
            if i == k_max - 1:
                renderers = {s: _prepared(factory, s, sources) for s in setups}
            continue
        if i >= driving.n_frames or (max_frames is not None and n_targets >= max_frames):
            break
        if not is_target(i, k_max, step) or not driving.found[i]:
            continue  # no real face to compare with: nothing to measure
        batch.append((face.extract(frame, crop), crop.to_crop(driving.points[i])))
        n_targets += 1
        if len(batch) == BATCH:
            _score(batch, renderers, judge, series, real_opening)
            batch.clear()
        if on_frame is not None:
            on_frame()
    if batch:
        _score(batch, renderers, judge, series, real_opening)
    return {s: _summary(series[s], real_opening) for s in setups if len(series[s])}


def _source(clip: Path, frame: np.ndarray, crop: Crop, points: np.ndarray) -> SourceFace:
    return SourceFace(clip, frame, crop, face.extract(frame, crop), crop.to_crop(points))


def _prepared(factory: RendererFactory, setup: Setup, sources: list[SourceFace]):
    renderer = factory.make(setup)
    renderer.prepare(sources[: setup.shots])
    return renderer


def _score(batch, renderers, judge: Judge, series: dict[Setup, Series], real_opening: list[float]) -> None:
    points = np.stack([pts for _, pts in batch])
    truth = judge.truth([real for real, _ in batch], points)
    real_opening.extend(float(metrics.mouth_opening(p)) for p in points)
    for setup, renderer in renderers.items():
        for values in judge.full_reference(renderer.render(points), truth):
            series[setup].add(**values)


def _summary(s: Series, real_opening: list[float]) -> dict[str, float]:
    out = {k: mean_finite(v) for k, v in s.values.items() if k != "opening"}
    out["mouth_corr"] = metrics.pearson(s.values["opening"], real_opening[: len(s)], constant=0.0)
    out["frames"] = float(len(s))
    return out
