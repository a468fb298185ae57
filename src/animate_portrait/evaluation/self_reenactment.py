"""Self-reenactment: K frames from the first part of a clip are the sources, the rest of it is the driver
and the truth (the paper's Table 1 protocol).

    frames 0 … span−1 : the source part; K sources evenly spaced over its frames with a face
    frames span …     : the targets (every `step`-th, at most `max_frames`), never a source

All frames are compared inside one fixed face box, the first source frame's crop, so the metrics see the
head move as the renderer had to draw it. The targets are the real frames' own landmarks (absolute, no
retargeting: the person is the same; with `--gaze`, as `animate`'s default, the irises take the clip's own
gaze change since the first source frame), and every setup shares the same target frames, those after the
source part, so the 1-, 8- and 32-shot rows are measured on exactly the same frames. `span` defaults to the
largest K (consecutive sources); a longer span spreads the sources over more of the clip, as the paper's
K frames of a video are, so that more shots also mean more poses, not 32 near-copies of one frame.

Streams: one pass of decoding per clip keeps only the K source crops and a small batch of targets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import face, gaze, metrics, motion, video
from ..engines import StaticRenderer
from ..engines.mouth import MouthFilled, profiles_arg
from ..errors import InputError
from ..types import Crop, Landmarks, Motion, SourceFace
from .common import Judge, RendererFactory, Series, Setup, mean_finite

BATCH = 8  # targets rendered per call: the renderers' own batch size in the pipeline


def frames_needed(span: int, max_frames: int | None, step: int) -> int | None:
    """How many leading frames of a clip the evaluation reads: the source part, then the sampled targets."""
    return None if max_frames is None else span + (max_frames - 1) * step + 1


def is_target(index: int, span: int, step: int) -> bool:
    return index >= span and (index - span) % step == 0


def source_frames(found: np.ndarray, k: int, span: int) -> list[int]:
    """K frame indices evenly spaced over the frames of the source part (0 … span−1) that have a face.

    1-shot is the first such frame; with span = K and a face everywhere, the first K frames.
    """
    candidates = np.flatnonzero(np.asarray(found[:span], bool))
    if len(candidates) < k:
        raise InputError(
            None, f"{len(candidates)} frames with a face in the first {span}, fewer than K = {k}"
        )
    return candidates[np.round(np.linspace(0, len(candidates) - 1, k)).astype(int)].tolist()


def evaluate_clip(
    clip: Path,
    setups: Sequence[Setup],
    factory: RendererFactory,
    judge: Judge,
    max_frames: int | None = None,
    step: int = 1,
    on_frame: Callable[[], None] | None = None,
    span: int | None = None,
) -> dict[Setup, dict[str, float]]:
    """Per-clip numbers for each setup: means over target frames, and the mouth-opening correlation.

    {} when the clip has no frame after the source part (nothing to measure, and nothing is fine-tuned).
    """
    k_max = max(s.shots for s in setups)
    span = max(span or k_max, k_max)
    n_read = frames_needed(span, max_frames, step)
    driving = motion.analyse_driver(clip, judge.detector, n_read)
    if driving.n_frames <= span or not driving.found[span:].any():
        return {}
    try:
        chosen = {s: source_frames(driving.found, s.shots, span) for s in setups}
    except InputError as exc:
        raise InputError(clip, str(exc)) from None
    keep = sorted({i for idx in chosen.values() for i in idx})
    crop = face.crop_for(Landmarks(driving.points[keep[0]]), factory.size)
    crops: dict[int, SourceFace] = {}
    renderers: dict[Setup, object] = {}
    leads: dict[Setup, Lead] = {}
    extras: dict[Setup, dict[str, float]] = {}
    series = {s: Series() for s in setups}
    real_opening: list[float] = []
    batch: list[tuple[np.ndarray, np.ndarray]] = []
    n_targets = 0
    for i, frame in enumerate(video.read_frames(clip, n_read)):
        if i < span:
            if i in keep:
                crops[i] = _source(clip, frame, crop, driving.points[i])
            if i == span - 1:
                for s in setups:
                    renderers[s], extras[s] = factory.prepared(s, [crops[j] for j in chosen[s]])
                    leads[s] = Lead.of(crops[chosen[s][0]], driving, chosen[s][0], factory, renderers[s])
                crops.clear()
            continue
        if i >= driving.n_frames or (max_frames is not None and n_targets >= max_frames):
            break
        if not is_target(i, span, step) or not driving.found[i]:
            continue  # no real face to compare with: nothing to measure
        batch.append((face.extract(frame, crop), crop.to_crop(driving.points[i]), i))
        n_targets += 1
        if len(batch) == BATCH:
            _score(batch, renderers, leads, judge, series, real_opening)
            batch.clear()
        if on_frame is not None:
            on_frame()
    if batch:
        _score(batch, renderers, leads, judge, series, real_opening)
    return {s: {**_summary(series[s], real_opening), **extras[s]} for s in setups if len(series[s])}


def _source(clip: Path, frame: np.ndarray, crop: Crop, points: np.ndarray) -> SourceFace:
    # Only the crop is kept (no paste-back here): memory is K crops, whatever the clip's resolution.
    crop_image = face.extract(frame, crop)
    return SourceFace(clip, crop_image, crop, crop_image, crop.to_crop(points))


@dataclass(frozen=True)
class Lead:
    """The first source's gaze, for moving the output's irises as `animate` does (gaze.py), and the clip's
    mouth interiors. Absolute here, as the landmarks are: each target takes the clip's own gaze change since
    the source frame, and its own mouth."""

    own: np.ndarray | None  # (2,) the source crop's reading; None: gaze not followed
    changes: np.ndarray | None  # (T, 2) the clip's gaze, minus the source frame's
    interiors: np.ndarray | None = None  # (T, 2, R) the clip's mouth interiors (--mouth-interior driver)

    @classmethod
    def of(
        cls, source: SourceFace, driving: Motion, index: int, factory: RendererFactory, renderer: object
    ) -> Lead:
        painted = isinstance(renderer, MouthFilled) and factory.mouth_interior == "driver"
        interiors = driving.mouth if painted else None
        if not factory.gaze or driving.gaze is None or isinstance(renderer, StaticRenderer):  # moves nothing
            return cls(None, None, interiors)
        return cls(gaze.read_gaze(source.face, source.points), driving.gaze - driving.gaze[index], interiors)

    def mouths(self, frames: list[int]) -> dict[str, np.ndarray]:
        """`render`'s mouth profiles for these clip frames, as `animate` paints them (none: {})."""
        return profiles_arg(self.interiors, frames)

    def follow(self, crops: np.ndarray, points: np.ndarray, frames: list[int]) -> np.ndarray:
        """The rendered crops of these clip frames with their irises moved (or as they are)."""
        if self.own is None or self.changes is None:
            return crops
        return gaze.follow(crops, points, self.own, self.changes[frames])


def _score(
    batch, renderers, leads, judge: Judge, series: dict[Setup, Series], real_opening: list[float]
) -> None:
    points = np.stack([pts for _, pts, _ in batch])
    frames = [i for _, _, i in batch]
    truth = judge.truth([real for real, _, _ in batch], points)
    real_opening.extend(float(metrics.mouth_opening(p)) for p in points)
    for setup, renderer in renderers.items():
        outputs = leads[setup].follow(renderer.render(points, **leads[setup].mouths(frames)), points, frames)
        for values in judge.full_reference(outputs, truth):
            series[setup].add(**values)


def _summary(s: Series, real_opening: list[float]) -> dict[str, float]:
    out = {k: mean_finite(v) for k, v in s.values.items() if k != "opening"}
    out["mouth_corr"] = metrics.pearson(s.values["opening"], real_opening[: len(s)], constant=0.0)
    out["frames"] = float(len(s))
    return out
