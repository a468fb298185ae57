"""Several portraits, one driver, one forward pass: `batch --group N` on a GPU.

    P portraits ─► sources ─┐
    driver chunk ─► retarget onto each ─► Pipeline.render_group (P × t frames at once) ─► paste back
                 (in a thread, one chunk ahead: video.in_background)                   ─► P VideoWriters
                                                                  (each its own encoder thread and ffmpeg)

A GPU renders one portrait's 8-frame chunk far below its capacity; stacking the portraits of a group
along the batch fills it. On a CPU processes (`--jobs`) are faster, so batch uses this only when asked
or on CUDA. A portrait that fails (no face, an unwritable output) fails alone, as in the per-portrait
path; an error in the shared forward pass fails the group's remaining portraits.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from . import video
from .detail import Detail
from .errors import InputError
from .pipeline import AnimateResult, Pipeline, VideoOut, pasted
from .types import Motion, SourceFace

# What one bad portrait may raise; anything else is a bug and stops the batch (exit 3).
PORTRAIT_ERRORS = (InputError, OSError, RuntimeError, ValueError)

Outcome = AnimateResult | Exception


def animate_group(pipeline: Pipeline, jobs: Sequence[tuple[Path, Path]], driving: Motion) -> list[Outcome]:
    """Animate each (portrait, output) of `jobs` with `driving`, together; an outcome per job, in order.

    Each result's `seconds` is the group's wall time: its portraits were rendered together.
    """
    started = time.perf_counter()
    config = pipeline.config
    outcomes: list[Outcome | None] = [None] * len(jobs)
    leads: dict[int, SourceFace] = {}
    for i, (portrait, output) in enumerate(jobs):
        try:
            video.check_output(output, config.overwrite)
            leads[i] = pipeline.load_sources([portrait])[0]
        except PORTRAIT_ERRORS as err:
            outcomes[i] = err
    if leads:
        try:
            pipeline.prepare_group(list(leads.values()))
        except PORTRAIT_ERRORS as err:
            outcomes = [err if i in leads else o for i, o in enumerate(outcomes)]
            leads = {}
    writers: dict[int, VideoOut] = {}
    try:
        for i, lead in leads.items():
            try:
                writers[i] = _open(pipeline, jobs[i][1], lead, driving)
            except PORTRAIT_ERRORS as err:
                outcomes[i] = err
        order = [i for i in leads if i in writers]
        rendered = [leads[i] for i in order]
        details = pipeline.details(rendered)
        try:
            # The next chunk is rendered and painted in a thread while this one is pasted back and encoded
            # (on a GPU machine the painting, on the CPU, took longer than the render). Left unnamed, so
            # that an error leaving the loop closes it: its thread is done before any writer is aborted.
            chunks = _chunks(pipeline, rendered, driving, details)
            for crops, grids in video.in_background(chunks, maxsize=1) if order else ():
                for j, (i, own) in enumerate(zip(order, crops, strict=True)):
                    if i in writers:
                        own_grids = None if grids is None else grids[j : j + 1]
                        frames = own if config.crop_only else _pasted(leads[i], details[j], own, own_grids)
                        _write(writers, outcomes, i, frames)
        except PORTRAIT_ERRORS as err:  # the shared forward pass failed: so did every open portrait
            for i in list(writers):
                outcomes[i] = err
                _abort(writers.pop(i), err)
        for i in list(writers):
            writer = writers.pop(i)
            try:
                writer.__exit__(None, None, None)
            except PORTRAIT_ERRORS as err:
                outcomes[i] = err
                continue
            outcomes[i] = _result(jobs[i][1], leads[i], writer, driving, started)
    except BaseException as err:
        for writer in writers.values():  # Ctrl-C or a bug: no partial file for any portrait
            _abort(writer, err)
        raise
    return [o if o is not None else RuntimeError("not rendered") for o in outcomes]


def _chunks(pipeline: Pipeline, leads: list[SourceFace], driving: Motion, details: Sequence[Detail | None]):
    """(P, t, size, size, 3) crops per chunk of t driver frames, retargeted onto each portrait, and where
    they read each portrait (P, t, g, g, 2), or None where no portrait restores its detail."""
    for chunk in pipeline.moves(leads, driving):
        yield pipeline.render_group(leads, chunk, traced=any(details))


def _open(pipeline: Pipeline, output: Path, lead: SourceFace, driving: Motion) -> VideoOut:
    config = pipeline.config
    height, width = (config.size, config.size) if config.crop_only else lead.image.shape[:2]
    return pipeline.video_writer(output, driving, (width, height)).__enter__()


def _pasted(lead: SourceFace, full: Detail | None, crops: np.ndarray, grids: np.ndarray | None):
    """One portrait's (t, size, size, 3) crops pasted back into its picture (pipeline.pasted)."""
    return pasted(lead.image, [lead], [full], crops[None], grids)


def _write(writers, outcomes, i: int, frames: Iterable[np.ndarray]) -> None:
    try:
        for frame in frames:
            writers[i].write(frame)
    except PORTRAIT_ERRORS as err:  # this portrait's encoder failed; the others go on
        outcomes[i] = err
        _abort(writers.pop(i), err)


def _abort(writer: VideoOut, err: BaseException) -> None:
    """Close a writer as if `err` had been raised inside its `with`: ffmpeg killed, temp file removed."""
    writer.__exit__(type(err), err, err.__traceback__)


def _result(output: Path, lead: SourceFace, writer: VideoOut, driving: Motion, started: float):
    return AnimateResult(
        source=str(lead.path),
        output=str(output),
        frames=writer.n_frames,
        fps=driving.fps,
        width=writer.size[0],
        height=writer.size[1],
        audio=writer.has_audio,
        driver_frames_filled=driving.n_filled,
        faces_in_portrait=lead.n_faces,
        faces_animated=1,
        seconds=round(time.perf_counter() - started, 3),
    )
