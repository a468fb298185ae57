"""Runs the evaluations over clips, portraits and drivers, and gathers per-item numbers into table rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .common import Judge, RendererFactory, Setup, mean_over
from .report import CROSS_COLUMNS, SELF_COLUMNS, TABLE1_COLUMNS, Results, Section


def run_evaluation(
    clips: list[Path],
    setups: list[Setup],
    factory: RendererFactory,
    portraits: list[Path] | None = None,
    drivers: list[Path] | None = None,
    max_frames: int | None = None,
    step: int = 1,
    on_item: Callable[[], None] | None = None,
    span: int | None = None,
    jobs: int = 1,
) -> Results:
    """Both evaluations; engines that cannot be built here (missing weights) are skipped with a note.

    `span`: the source part of each clip in self-reenactment (default: the largest K), see
    `self_reenactment`. With neural rows, the paper's Table 1 is their view (`table1`). `jobs`: clips
    evaluated in that many worker processes.
    """
    from ..landmarks import get_detector

    started = time.perf_counter()
    engines = sorted({s.engine for s in setups})
    skipped = [{"engine": e, "reason": why} for e in engines if (why := factory.check(e))]
    usable = [s for s in setups if s.engine not in {x["engine"] for x in skipped}]
    judge = Judge(get_detector("dlib"), factory.device)
    k_max = max((s.shots for s in setups), default=1)
    span = max(span or k_max, k_max)
    sections = [_self(clips, usable, factory, judge, max_frames, step, span, skipped, on_item, jobs)]
    paper = table1(sections[0])
    if paper.rows:
        sections.append(paper)
    if portraits:
        engines = list(dict.fromkeys(s.engine for s in usable))  # cross is 1-shot: portraits are one image
        sections.append(
            _cross(portraits, drivers or clips, engines, factory, judge, max_frames, step, skipped, on_item)
        )
    settings = {
        "clips": [str(c) for c in clips],
        "portraits": [str(p) for p in portraits or []],
        "drivers": [str(d) for d in (drivers or clips)] if portraits else [],
        "setups": [s.label for s in setups],
        "max_frames": max_frames,
        "frame_step": step,
        "source_span": span,
        "jobs": jobs,
        "finetune_steps": factory.finetune_steps,
        "mouth": factory.mouth,
        "max_travel": factory.max_travel,
        "gaze": factory.gaze,
        "mouth_interior": factory.mouth_interior,
        "size": factory.size,
        "device": factory.device,
        "weights": None if factory.weights is None else str(factory.weights),
        "landmarks": "dlib",
        "self_reenactment": "absolute landmarks, first source frame's crop; K sources evenly spaced over the "
        "frames with a face among the first source_span, targets after them",
        "cross_reenactment": "relative motion, the portrait's crop (as animate)",
        "version": _version(),
    }
    return Results(settings, sections, skipped, round(time.perf_counter() - started, 1))


def _self(clips, setups, factory, judge, max_frames, step, span, skipped, on_item, jobs=1) -> Section:
    section = Section("self_reenactment", SELF_COLUMNS)
    per_setup: dict[Setup, list[dict]] = {s: [] for s in setups}
    args = (setups, factory, max_frames, step, span)
    for clip, numbers in _clips(clips, args, judge, jobs):
        if isinstance(numbers, str):  # no face in the clip, unreadable file: note it, evaluate the rest
            skipped.append({"clip": str(clip), "reason": numbers})
            numbers = None
        if setups and numbers == {}:  # a clip no longer than K, or no face after the sources
            skipped.append(
                {
                    "clip": str(clip),
                    "reason": f"no frame with a face after the K source frames (the first {span})",
                }
            )
        for setup, values in (numbers or {}).items():
            per_setup[setup].append(values)
            section.items.append({"clip": Path(clip).name, **setup.label, **values})
        if on_item:
            on_item()
    section.rows = [_row(s, v) for s, v in per_setup.items() if v]
    return section


def _one_clip(clip: Path, args: tuple, judge: Judge) -> dict | str:
    """One clip's numbers per setup, or the reason it could not be evaluated (an InputError's message)."""
    from ..errors import InputError
    from .self_reenactment import evaluate_clip

    setups, factory, max_frames, step, span = args
    if not setups:
        return {}
    try:
        return evaluate_clip(Path(clip), setups, factory, judge, max_frames, step, span=span)
    except InputError as exc:
        return str(exc)


def _clips(clips: list[Path], args: tuple, judge: Judge, jobs: int) -> Iterator[tuple[Path, dict | str]]:
    """(clip, numbers) in the clips' order: here, or in `jobs` worker processes, a clip each at a time.

    Clips are independent (their own sources, fine-tuning and targets), so workers share nothing but the
    fine-tuning cache. Each worker gets cores ÷ jobs torch threads: on a shared 2-core machine two torch
    processes with 2 threads each ran a fine-tuning step ~10× slower than with one thread each.
    """
    if jobs <= 1 or len(clips) <= 1:
        for clip in clips:
            yield clip, _one_clip(clip, args, judge)
        return
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    workers = min(jobs, len(clips))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // workers)
    # spawn, not fork: a forked torch (its thread pools, a CUDA context) is not safe to use
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(judge.device, threads),
    ) as pool:
        yield from zip(clips, pool.map(_work, clips, [args] * len(clips)), strict=True)


_judge: Judge | None = None


def _start_worker(device: str, threads: int) -> None:
    global _judge
    import torch

    from ..landmarks import get_detector

    torch.set_num_threads(threads)
    _judge = Judge(get_detector("dlib"), device)


def _work(clip: Path, args: tuple) -> dict | str:
    assert _judge is not None, "_start_worker runs first"
    return _one_clip(clip, args, _judge)


def _cross(portraits, drivers, engines, factory, judge, max_frames, step, skipped, on_item) -> Section:
    from ..errors import InputError
    from ..pipeline import Pipeline
    from ..types import RenderConfig
    from .cross_reenactment import evaluate_pair, subsample

    section = Section("cross_reenactment", CROSS_COLUMNS)
    config = RenderConfig(
        size=factory.size,
        device=factory.device,
        weights=factory.weights,
        crop_only=True,
        mouth=factory.mouth,
        max_travel=factory.max_travel,
        gaze=factory.gaze,
        mouth_interior=factory.mouth_interior,
    )
    pipelines = {e: Pipeline(RenderConfig(**{**config.__dict__, "engine": e})) for e in engines}
    loader = Pipeline(config)
    sources, motions = {}, {}
    for path in portraits:
        try:
            sources[path] = loader.load_source(Path(path))
        except InputError as exc:
            skipped.append({"portrait": str(path), "reason": str(exc)})
    for path in drivers:
        try:
            motions[path] = subsample(_analyse(loader, path, max_frames, step), step, max_frames)
        except InputError as exc:
            skipped.append({"driver": str(path), "reason": str(exc)})
    per_engine: dict[str, list[dict]] = {e: [] for e in engines}
    for engine, pipeline in pipelines.items():
        for p, source in sources.items():
            for d, driving in motions.items():
                values = evaluate_pair(pipeline, source, driving, judge)
                per_engine[engine].append(values)
                item = {"portrait": Path(p).name, "driver": Path(d).name, **Setup(engine).label, **values}
                section.items.append(item)
                if on_item:
                    on_item()
    section.rows = [_row(Setup(e), v) for e, v in per_engine.items() if v]
    return section


def table1(self_section: Section) -> Section:
    """The paper's Table 1: the neural rows of self-reenactment (K-shot × feed-forward / fine-tuned), in
    its columns, with the issue's targets checked on them."""
    rows = sorted(
        (r for r in self_section.rows if r["engine"] == "neural"),
        key=lambda r: (r["shots"], r["variant"] != "feed-forward"),
    )
    return Section("table1", TABLE1_COLUMNS, rows=rows, targets=targets(rows))


def targets(rows: list[dict]) -> list[dict]:
    """Few-shot targets: more shots → lower perceptual and identity distance; fine-tuned 1-shot ≥ 10 %
    lower identity distance than feed-forward 1-shot, keeping mouth-opening correlation ≥ 0.8."""
    by = {(r["variant"], r["shots"]): r for r in rows}
    out = []
    for variant in ("feed-forward", "fine-tuned"):
        ks = sorted(k for v, k in by if v == variant)
        for metric in ("perceptual", "identity") if len(ks) > 1 else ():
            values = [by[variant, k][metric] for k in ks]
            met = all(b < a for a, b in zip(values, values[1:], strict=False))
            chain = " > ".join(f"{k}-shot" for k in reversed(ks))
            out.append({"target": f"{variant}: {chain} on {metric}", "value": values, "met": met})
    ff, ft = by.get(("feed-forward", 1)), by.get(("fine-tuned", 1))
    if ff and ft:
        gain = 1 - ft["identity"] / ff["identity"] if ff["identity"] else float("nan")
        out.append({"target": "fine-tuned 1-shot identity distance ≥ 10 % below feed-forward",
                    "value": gain, "met": bool(gain >= 0.10)})  # fmt: skip
        out.append({"target": "fine-tuned 1-shot mouth-opening correlation ≥ 0.8",
                    "value": ft["mouth_corr"], "met": bool(ft["mouth_corr"] >= 0.8)})  # fmt: skip
    return out


def _analyse(pipeline, path, max_frames: int | None, step: int):
    """Analyse only the frames that will be used (a motion file, .npz, is read whole)."""
    from .. import motion

    if max_frames is None or Path(path).suffix.lower() == ".npz":
        return pipeline.analyse(Path(path))
    return motion.analyse_driver(Path(path), pipeline.detector, (max_frames - 1) * step + 1)


def _row(setup: Setup, values: list[dict]) -> dict:
    means = mean_over([{k: v for k, v in x.items() if k != "frames"} for x in values])
    return {**setup.label, "n": len(values), "frames": int(sum(x["frames"] for x in values)), **means}


def _version() -> str:
    from .. import __version__

    return __version__
