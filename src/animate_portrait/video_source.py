"""A video as the source (LivePortrait's video-to-video): dub a talking video with another's mouth.

    source video ─► landmarks per frame ─► stable crops (face.crop_track) ─┐
    driver ─► Motion ─► expression change, region by region ───────────────┴► per frame: retarget onto
        that frame's face ─► Renderer (that frame as its one source) ─► paste back ─► VideoWriter

The source video keeps its own head motion; the driver gives only expression (`--region` all or
expression: the whole face; lips: lip-sync only; eyes). In the regions the driver gives, the source's own
expression is replaced, not added to: a dubbed mouth must say the driver's words, not both. So each frame's
face first takes those regions from the source's neutral face (motion.neutral_reference), moved into that
frame's pose, and then the driver's change from its own neutral face, as for a still portrait.

The output runs at the driver's frame rate, so the mouth stays in time with the driver's audio; the source's
frames are taken on that clock (skipped or repeated where the rates differ), and the output is as long as
the shorter of the two videos. Where the source shows no face for a while (CUTAWAY_SECONDS), its
frames pass unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from . import face, motion, video
from .engines.base import rendered
from .engines.mouth import profiles_arg
from .errors import InputError
from .pipeline import AnimateResult, Pipeline, Progress, pasted
from .types import Motion, RenderConfig, SourceFace

# A stretch of the source with no face found for this long is a cut-away, or the face left the shot: those
# frames pass unchanged. Shorter stretches are detector misses, filled from the neighbours (motion.fill_gaps).
CUTAWAY_SECONDS = 0.5
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
# --region for a video source (the CLI refuses "pose"): its pose is its own, so "all" means the driver's
# whole expression.
V2V_REGIONS = {"all": "expression", "expression": "expression", "lips": "lips", "eyes": "eyes"}


def is_video(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def settings_problem(config: RenderConfig, n_sources: int = 1, tuned: bool = False) -> tuple[str, str] | None:
    """(option, why) when a video source can't be animated with these settings, else None: it is
    animated alone, keeps its own head pose, drives its largest face, takes the driver's expression
    change and no fine-tuning. The CLI makes it a usage error, batch the video's error line."""
    if n_sources > 1:
        return "SOURCE", "a video source is animated alone: give one SOURCE"
    if config.region not in V2V_REGIONS:
        return "--region", "a video source keeps its own head pose"
    if config.faces != "largest":
        return "--faces", "a video source drives its largest face"
    if not config.relative:
        return "--absolute", "a video source takes the driver's expression change"
    if tuned or config.finetune_steps:
        return "--finetune-steps / --person", "a video source takes no fine-tuning"
    return None


def cutaways(found: np.ndarray, min_frames: int) -> np.ndarray:
    """(T,) bool: frames in runs of at least `min_frames` frames without a face."""
    held = np.zeros(len(found), bool)
    start = None
    for t, seen in enumerate([*found, True]):  # a face after the end closes the last run
        if not seen and start is None:
            start = t
        elif seen and start is not None:
            held[start:t] = t - start >= min_frames
            start = None
    return held


def with_neutral_regions(frame_points: np.ndarray, neutral: np.ndarray, region: str) -> np.ndarray:
    """`frame_points` (68, 2) with the points the driver will move taken from `neutral` (the source's
    neutral face), moved into the frame's pose by the similarity of their STABLE points."""
    _, moving = motion.REGIONS[region]
    out = frame_points.copy()
    out[moving] = motion.in_pose_of(neutral, frame_points)[moving]
    return out


def source_frames(source: Motion, driving: Motion, max_frames: int | None = None) -> np.ndarray:
    """The source frame shown at each output frame, on the driver's clock, so that both play in real time
    (a 30 fps source under a 25 fps driver skips a frame in six); as long as the shorter video."""
    n = min(driving.n_frames, int(np.floor(source.n_frames * driving.fps / source.fps + 1e-6)))
    n = min(n, max_frames or n)
    # the frame on screen at each output time: the last one to start by then
    shown = np.floor(np.arange(n) * source.fps / driving.fps + 1e-6).astype(int)
    return np.minimum(shown, source.n_frames - 1)


def targets(source: Motion, driving: Motion, region: str, scale: float, shown: np.ndarray) -> np.ndarray:
    """(n, 68, 2) target landmarks in the pixels of each source frame `shown`: that frame's face, with
    `region` (motion.REGIONS) from the source's neutral face, plus the driver's change from its own
    × `scale`."""
    used = int(shown[-1]) + 1
    src_neutral = motion.neutral_reference(source.points[:used], source.found[:used])
    drv_neutral = motion.neutral_reference(driving.points[: len(shown)], driving.found[: len(shown)])
    out = np.empty((len(shown), 68, 2), np.float32)
    for t, k in enumerate(shown):
        start = with_neutral_regions(source.points[k], src_neutral, region)
        out[t] = motion.retarget(
            start, driving.points[t : t + 1], reference=drv_neutral, region=region, expression_scale=scale
        )[0]
    return out


def _frames_at(path: Path, shown: np.ndarray) -> Iterator[np.ndarray]:
    """The video's frames at the non-decreasing indices `shown` (repeats allowed), decoded once."""
    frames = enumerate(video.read_frames(path, int(shown[-1]) + 1))
    index, frame = next(frames)
    for want in shown:
        while index < want:
            index, frame = next(frames)
        yield frame


def render_frames(
    pipeline: Pipeline, path: Path, source: Motion, driving: Motion, shown: np.ndarray
) -> Iterator[np.ndarray]:
    """The source frames `shown`, each with its face re-posed by the driver's expression."""
    config = pipeline.config
    goals = targets(source, driving, V2V_REGIONS[config.region], config.expression_scale, shown)
    used = int(shown[-1]) + 1
    crops = face.crop_track(source.points[:used], config.size)
    held = cutaways(source.found[:used], max(1, round(source.fps * CUTAWAY_SECONDS)))
    renderer = pipeline.renderer
    mouths = pipeline.mouth_profiles(driving)  # what the driver's mouth shows, painted into the dubbed one
    for t, (k, frame) in enumerate(zip(shown, _frames_at(path, shown), strict=True)):
        crop = crops[k]
        if held[k]:  # no face here to dub
            yield face.extract(frame, crop) if config.crop_only else frame
            continue
        own = SourceFace(path, frame, crop, face.extract(frame, crop), crop.to_crop(source.points[k]))
        renderer.prepare([own])  # this frame is the one source: its pixels, its pose
        painted = profiles_arg(mouths, slice(t, t + 1))
        goal = crop.to_crop(goals[t])[None]
        details = pipeline.details([own])  # the frame's own full-resolution face
        dubbed, grids = rendered(renderer, goal, details[0] is not None, painted)
        if config.crop_only:
            yield dubbed[0]
            continue
        yield from pasted(frame, [own], details, dubbed[None], None if grids is None else grids[None])


def animate_video(
    pipeline: Pipeline,
    path: Path,
    source: Motion,
    driving: Motion,
    output: Path,
    progress: Progress | None = None,
    shown: np.ndarray | None = None,
) -> AnimateResult:
    """Dub the video at `path` (analysed as `source`) with `driving`'s expression into `output`.
    `shown`: `source_frames(source, driving, max_frames)`, where the caller has it already."""
    started = time.perf_counter()
    config = pipeline.config
    video.check_output(output, config.overwrite)
    if shown is None:
        shown = source_frames(source, driving, config.max_frames)
    if len(shown) == 0:
        raise InputError(path, "no frames to animate")
    width, height = (config.size, config.size) if config.crop_only else source.frame_size
    with pipeline.video_writer(output, driving, (width, height)) as writer:
        for frame in render_frames(pipeline, Path(path), source, driving, shown):
            writer.write(frame)
            if progress is not None:
                progress(1)
    return AnimateResult(
        source=str(path),
        output=str(output),
        frames=writer.n_frames,
        fps=driving.fps,
        width=writer.size[0],
        height=writer.size[1],
        audio=writer.has_audio,
        driver_frames_filled=driving.n_filled,
        faces_in_portrait=source.n_faces_max,
        faces_animated=1,
        seconds=round(time.perf_counter() - started, 3),
    )
