"""Many portraits, one driver: the driver is analysed once; a failing portrait does not stop the rest.

    portraits ─► dedupe ─► output names (over the whole list) ─► this shard ─► skip finished (--resume)
              ─► analyse the driver once ─► render: in this process, or in N worker processes (--jobs N),
                 or P portraits per forward pass (--group P; the default on CUDA, see group.py)
              ─► one line per portrait on stdout, in the order they finish

`--shard i/n` keeps the portraits whose path hashes to i modulo n, so every machine of a cluster can take
the same listing and its own shard with no coordination, and a portrait stays in its shard when the
listing grows. Output names are worked out on the whole listing first, so they are the same whichever
machine renders them.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

from . import still, video
from .console import EXIT_INTERRUPTED, Reporter
from .errors import InputError
from .group import PORTRAIT_ERRORS, animate_group
from .pipeline import AnimateResult, Pipeline
from .types import STILL_FORMATS, Motion, RenderConfig
from .video_source import animate_video, is_video, settings_problem

__all__ = ["PORTRAIT_ERRORS", "Shard", "ok_line", "output_names", "run_batch", "shard_of"]
# Portraits per forward pass on CUDA when --group is not given: 8 × 8-frame chunks fill a batch of 64.
GPU_GROUP = 8
# --- executor hook (--ray; ray_executor.py): renders `todo` elsewhere and yields the same lines ---
Executor = Callable[[RenderConfig, Motion, list[tuple[Path, Path]]], Iterator[dict]]


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: the portraits whose path hashes to `index` modulo `count`."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`i/n` with 0 ≤ i < n; ValueError (with a message for the user) otherwise."""
        left, sep, right = text.partition("/")
        try:
            index, count = int(left), int(right)
        except ValueError:
            index = count = -1
        if not sep or count < 1 or not 0 <= index < count:
            raise ValueError(f"expected i/n with n ≥ 1 and 0 ≤ i < n (e.g. 0/4), got {text!r}")
        return cls(index, count)

    def holds(self, path: Path) -> bool:
        return shard_of(path, self.count) == self.index


def shard_of(path: Path, count: int) -> int:
    """sha1 of the path as listed (`str(Path(...))`) as a big-endian integer, modulo `count`.

    A hash of the path, not its place in the listing: adding or removing portraits moves no other one.
    Python's `hash()` is salted per process, so it would give every machine a different split.
    """
    digest = hashlib.sha1(str(path).encode()).digest()
    return int.from_bytes(digest, "big") % count


def output_names(portraits: list[Path], output_dir: Path, suffix: str = ".mp4") -> list[Path]:
    """`<stem><suffix>`, stable across runs; stems that collide get a short hash of their path."""
    stems = Counter(p.stem for p in portraits)
    names = []
    for path in portraits:
        stem = path.stem
        if stems[stem] > 1:
            stem += "-" + hashlib.sha1(str(path).encode()).hexdigest()[:8]
        names.append(output_dir / f"{stem}{suffix}")
    return names


def is_finished(output: Path) -> bool:
    """An existing output that ffmpeg reads as a video. Outputs are renamed into place only when complete,
    so this is a second check, against a file that something else left there."""
    if not output.is_file():
        return False
    try:
        video.probe(output)
    except InputError:
        return False
    return True


def run_batch(
    portraits: list[Path],
    driver: Path,
    output_dir: Path,
    config: RenderConfig,
    report: Reporter,
    as_json: bool,
    *,
    shard: Shard | None = None,
    resume: bool = False,
    jobs: int = 1,
    threads: int | None = None,
    group: int | None = None,
    executor: Executor | None = None,
    suffix: str = ".mp4",
) -> int:
    """Animate each portrait; print one line (JSON with --json) per portrait; return how many failed.

    `threads`: torch threads per worker process (default: the cores shared out among the workers).
    `group`: portraits per forward pass of the renderer (default: GPU_GROUP on CUDA, 1 elsewhere).
    `executor`: renders the portraits instead of this process or its workers (--ray: ray_executor.py).
    `suffix`: the outputs' container (video.OUTPUT_FORMATS).
    """
    if not portraits:
        raise InputError(None, "no portraits given (pass paths, or '-' to read them from stdin)")
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(output_dir, "is not a folder")
    unique = list(dict.fromkeys(portraits))  # a portrait listed twice would race itself for one output
    if len(unique) < len(portraits):
        report.info(f"{len(portraits) - len(unique)} portraits were listed twice; each is animated once")
    pairs = list(zip(unique, output_names(unique, output_dir, suffix), strict=True))
    if shard is not None:
        pairs = [(p, o) for p, o in pairs if shard.holds(p)]
        report.info(f"shard {shard.index}/{shard.count}: {len(pairs)} of {len(unique)} portraits")
    output_dir.mkdir(parents=True, exist_ok=True)

    todo = []
    for portrait, output in pairs:
        started = time.perf_counter()
        if resume and is_finished(output):
            _print(_line(portrait, output, "skipped", time.perf_counter() - started), as_json)
        else:
            todo.append((portrait, output))
    if resume:
        # What is left either does not exist or is not a readable video: replace it (atomically, as ever).
        config = replace(config, overwrite=True)
    if not todo:
        return 0

    pipeline = Pipeline(config)
    if group is None:
        group = GPU_GROUP if pipeline.device == "cuda" else 1
    if config.finetune_steps or config.faces == "all" or any(is_video(p) for p, _ in todo):
        # each portrait is fine-tuned and renders as its own person (persons.py), its own faces render
        # as a group of their own (Pipeline._render_every_face), or it is a video, one source a frame
        group = 1
    if group > 1 and jobs > 1 and executor is None:
        report.info(f"--group {group}: portraits share forward passes in this process; --jobs is not used")
    if threads is not None and (jobs <= 1 or len(todo) == 1):
        import torch

        torch.set_num_threads(threads)  # asked for; otherwise this process keeps torch's default
    pipeline.load_renderer()  # bad weights fail here, before a long driver analysis and before workers start
    driving = report.analyse(pipeline, driver)
    if suffix in STILL_FORMATS:  # one error for the batch, not one per portrait
        still.check_frames(Path(driver), pipeline.frames_used(driving))
    failed = 0
    with report.bar("portraits", len(todo)) as step:
        if executor is not None:  # executor hook: --ray
            lines = executor(config, driving, todo)
        elif group > 1 and len(todo) > 1:
            lines = _in_groups(pipeline, driving, todo, group)
        elif jobs <= 1 or len(todo) == 1:
            lines = (_animate_one(pipeline, driving, portrait, output) for portrait, output in todo)
        else:
            lines = _in_workers(config, driving, todo, jobs, threads)
        # closing(): on Ctrl-C the workers are stopped now, not whenever the generator is collected
        with closing(lines):
            for line in lines:
                failed += line["status"] == "error"
                _print(line, as_json)
                step(1)
    return failed


def _animate_one(pipeline: Pipeline, driving: Motion, portrait: Path, output: Path) -> dict:
    """One portrait into one line of results; the errors of one bad portrait become its line."""
    started = time.perf_counter()
    try:
        result = render_portrait(pipeline, driving, portrait, output)
    except PORTRAIT_ERRORS as err:
        # One bad portrait must not sink a batch of thousands: report it and go on.
        return _line(portrait, None, "error", time.perf_counter() - started, error=str(err))
    return ok_line(portrait, output, result, time.perf_counter() - started)


def render_portrait(pipeline: Pipeline, driving: Motion, portrait: Path, output: Path) -> AnimateResult:
    """One portrait of a batch: fine-tuned on itself first (cached) when the config asks, then animated;
    or a video, dubbed with the driver's expression (video_source.py)."""
    from .persons import PersonPolicy

    if is_video(portrait):
        if problem := settings_problem(pipeline.config):
            raise InputError(portrait, f"{problem[1]} ({problem[0]})")
        return animate_video(pipeline, portrait, pipeline.analyse(portrait), driving, output)
    loaded = PersonPolicy(pipeline.config.finetune_steps).apply(pipeline, [portrait])
    return pipeline.animate([portrait], driving, output, loaded=loaded)


def _in_groups(
    pipeline: Pipeline, driving: Motion, todo: list[tuple[Path, Path]], size: int
) -> Iterator[dict]:
    """The lines of `todo`, rendered `size` portraits per forward pass (group.py)."""
    for start in range(0, len(todo), size):
        jobs = todo[start : start + size]
        for (portrait, output), outcome in zip(jobs, animate_group(pipeline, jobs, driving), strict=True):
            if isinstance(outcome, AnimateResult):
                yield ok_line(portrait, output, outcome, outcome.seconds)
            else:
                yield _line(portrait, None, "error", 0.0, error=str(outcome))


def _line(portrait: Path, output: Path | None, status: str, seconds: float, **more: object) -> dict:
    line = {"source": str(portrait), "output": None if output is None else str(output), "status": status}
    return {**line, **more, "seconds": round(seconds, 3)}


def ok_line(portrait: Path, output: Path, result: AnimateResult, seconds: float) -> dict:
    """The line of a portrait that rendered: how many frames, and how many faces (--faces all)."""
    return _line(portrait, output, "ok", seconds, frames=result.frames, faces=result.faces_animated)


def _print(line: dict, as_json: bool) -> None:
    # Results go to stdout, one line per portrait, so a pipeline can read them as they come.
    if as_json:
        text = json.dumps(line, sort_keys=True)
    elif line["status"] == "error":
        text = f"error {line['error']}"
    else:
        text = f"{line['status'][:4]:<5} {line['source']} -> {line['output']}"
    print(text, flush=True)


# --- worker processes (--jobs N) -------------------------------------------------------------------
# Each worker builds one Pipeline (renderer and landmark detector loaded once) and gets the driver's
# Motion once, at start-up; a task is then only two paths, and its answer one line.

_worker: tuple[Pipeline, Motion] | None = None
_busy = False


def _in_workers(
    config: RenderConfig,
    driving: Motion,
    todo: list[tuple[Path, Path]],
    jobs: int,
    threads: int | None = None,
) -> Iterator[dict]:
    """Yield the lines of `todo` as the workers finish them. On Ctrl-C (or any error here) the workers are
    stopped first, each removing the temp file of the video it was writing, and then the error goes on."""
    workers = min(jobs, len(todo))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # N workers × torch's default of all cores each oversubscribes the CPU; on a busy 2-core machine we
    # measured 2 torch threads per process at ~8× the time of 1 while another job shared the machine.
    threads = threads or max(1, cores // workers)
    # spawn, not fork: a forked torch (its thread pools, a CUDA context) is not safe to use.
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(config, driving, threads),
    )
    futures: dict[Future, Path] = {}
    try:
        futures = {pool.submit(_work, portrait, output): portrait for portrait, output in todo}
        for future in as_completed(futures):
            try:
                yield future.result()
            except BrokenProcessPool as err:  # a worker died (the OOM killer?); the pool is done for
                yield _line(futures[future], None, "error", 0.0, error=f"worker process died ({err})")
    except BaseException:
        _stop_workers(pool, futures)
        # a worker that did not clean up within its 15 s (a loaded machine) was killed: its temp file stays
        video.sweep_temp_files(output for _, output in todo)
        raise
    pool.shutdown(wait=True)


def _stop_workers(pool: ProcessPoolExecutor, futures: dict[Future, Path]) -> None:
    for future in futures:
        future.cancel()
    workers = multiprocessing.active_children()  # the pool's workers: the batch starts no other process
    for process in workers:
        process.terminate()  # SIGTERM: the worker unwinds its VideoWriter (temp file removed), then exits
    for process in workers:
        process.join(timeout=15)
        if process.is_alive():
            process.kill()
            process.join()
    pool.shutdown(wait=False, cancel_futures=True)


def _start_worker(config: RenderConfig, driving: Motion, threads: int) -> None:
    global _worker
    import torch

    # Ctrl-C reaches the whole process group; the parent decides and then stops the workers with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    torch.set_num_threads(threads)
    pipeline = Pipeline(config)
    pipeline.load_renderer()
    _ = pipeline.detector  # load it now, so a portrait's "seconds" do not include the worker's start-up
    _worker = (pipeline, driving)


def _on_sigterm(signum: int, frame: object) -> None:
    if _busy:
        raise KeyboardInterrupt  # unwinds through VideoWriter.__exit__: ffmpeg killed, temp file removed
    os._exit(EXIT_INTERRUPTED)  # idle: nothing to clean up


def _work(portrait: Path, output: Path) -> dict:
    global _busy
    assert _worker is not None, "_start_worker runs first"
    try:
        _busy = True
        return _animate_one(*_worker, portrait, output)
    except KeyboardInterrupt:
        os._exit(EXIT_INTERRUPTED)  # stopped by the parent; the temp file is gone by now
    finally:
        _busy = False
