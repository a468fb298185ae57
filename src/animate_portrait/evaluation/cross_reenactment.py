"""Cross-reenactment: a portrait driven by someone else's video, through the product's own pipeline
(relative motion, the portrait's crop). No ground truth exists, so we measure what a viewer would check:
is it still the portrait's person, does the face follow the driver's mouth, head and gaze (and does the mouth
open as far as the driver's: `mouth_gain`, 1 when it does), is there a face at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from .. import gaze, identity, metrics
from ..pipeline import Pipeline
from ..types import Landmarks, Motion, SourceFace
from .common import Judge, Series, mean_finite


def subsample(driving: Motion, step: int, max_frames: int | None) -> Motion:
    """Every `step`-th frame, at most `max_frames`; frame 0 stays first, as relative motion needs it."""
    end = None if max_frames is None else max_frames * step
    return replace(driving.cut(slice(0, end, step)), fps=driving.fps / step)


def evaluate_pair(
    pipeline: Pipeline,
    portrait: SourceFace,
    driving: Motion,
    judge: Judge,
    on_frame: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Numbers for one portrait × driver with the pipeline's engine (`pipeline.config.crop_only` is set)."""
    portrait_id = identity.descriptor(portrait.face, Landmarks(portrait.points))
    s = Series()
    for out in pipeline.render_frames([portrait], driving):
        seen = judge.look(out)
        pts = seen.points if seen.points is not None else np.full((68, 2), np.nan)
        s.add(
            identity=identity.compare(seen.descriptor, portrait_id),
            face_found=float(seen.points is not None),
            opening=float(metrics.mouth_opening(pts)),
            yaw=float(metrics.yaw(pts)),
            pitch=float(metrics.pitch(pts)),
            # where the output's irises sit along the eyes, read as the driver's were (gaze.py)
            gaze=np.nan if seen.points is None else float(gaze.read_gaze(out, seen.points)[0]),
        )
        if on_frame is not None:
            on_frame()
    # Only frames where the driver's face was really found: filled frames are guesses, not motion.
    real = driving.points[driving.found]
    keep = np.asarray(driving.found)

    def corr(name: str, fn) -> float:
        return metrics.pearson(np.asarray(s.values[name])[keep], fn(real), constant=0.0)

    return {
        "identity": mean_finite(s.values["identity"]),
        "face_found": mean_finite(s.values["face_found"]),
        "mouth_corr": corr("opening", metrics.mouth_opening),
        "mouth_gain": metrics.gain(np.asarray(s.values["opening"])[keep], metrics.mouth_opening(real)),
        "yaw_corr": corr("yaw", metrics.yaw),
        "pitch_corr": corr("pitch", metrics.pitch),
        # NaN for a motion file without gaze; frames where an eye is shut (a blink) are left out
        "gaze_corr": np.nan
        if driving.gaze is None
        else metrics.pearson(np.asarray(s.values["gaze"])[keep], driving.gaze[keep, 0], constant=0.0),
        "frames": float(len(s)),
    }
