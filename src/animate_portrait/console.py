"""What the user sees: progress bars on a terminal, one-line errors, summaries (JSON on request).

Messages go to stderr; stdout carries only results (the --json lines), so pipelines stay clean.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .errors import InputError

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .types import Motion

stderr = Console(stderr=True, highlight=False)
EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 3, 130, 143
DEBUG = os.environ.get("ANIMATE_PORTRAIT_DEBUG") == "1"


def fail(message: str) -> None:
    """One line on stderr, no traceback. escape(): a `[word]` in a path or a hint is text, not rich markup."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a pipeline's timeout, a job scheduler stopping us), raised where the program is, so every
    `with` unwinds as for Ctrl-C: ffmpeg stopped, temp files removed, no partial output."""


def raise_on_sigterm() -> None:
    """Make SIGTERM raise Terminated in the main thread; by default it kills Python with no clean-up."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, handler)


def stopped(stop: KeyboardInterrupt) -> int:
    """Say why we stopped early; the exit code for it (130 for Ctrl-C, 143 for SIGTERM)."""
    terminated = isinstance(stop, Terminated)
    fail(f"{'terminated' if terminated else 'interrupted'}; no partial file was left")
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


class Reporter:
    """Progress and messages for one command; the bar shows on a terminal only (not piped, not with -q)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.show_bars = not quiet and stderr.is_terminal and sys.stdout.isatty()

    def info(self, message: str) -> None:
        if not self.quiet:
            stderr.print(escape(message), soft_wrap=True)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn failures into exit codes: bad input 1, internal fault 3, Ctrl-C 130, SIGTERM 143."""
        try:
            yield
        except InputError as err:
            fail(str(err))
            raise typer.Exit(EXIT_INPUT) from None
        except KeyboardInterrupt as stop:
            raise typer.Exit(stopped(stop)) from None
        except (typer.Exit, typer.Abort, typer.BadParameter):  # usage errors: typer prints them, exit 2
            raise
        except Exception as err:  # noqa: BLE001 - the last line of defence before the shell
            if DEBUG:
                raise
            fail(
                f"internal error: {type(err).__name__}: {err} (set ANIMATE_PORTRAIT_DEBUG=1 for a traceback)"
            )
            raise typer.Exit(EXIT_INTERNAL) from None

    @contextmanager
    def bar(self, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A rich progress bar with frames/s and ETA; yields `step(n)`."""
        if not self.show_bars:
            yield lambda n=1: None
            return
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[fps]}"),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
        )
        with progress:
            task = progress.add_task(label, total=total, fps="")

            def step(n: int = 1) -> None:
                progress.advance(task, n)
                speed = progress.tasks[0].speed
                if speed:
                    progress.update(task, fps=f"{speed:.1f} fr/s")

            yield step

    def analyse(self, pipeline: Pipeline, driver: Path, role: str = "driver") -> Motion:
        """Analyse the driver (or read its motion file; `role` "source": a video source) under a progress
        bar, and say what was odd."""
        total = None
        if Path(driver).suffix.lower() != ".npz":
            from . import video

            total = video.probe(Path(driver)).n_frames or None
            if pipeline.config.max_frames and total:
                total = min(total, pipeline.config.max_frames)
        with self.bar(f"{role} landmarks", total) as step:
            driving = pipeline.analyse(driver, on_frame=lambda: step(1))
        if driving.n_filled:
            filled = f"{driving.n_filled} of {driving.n_frames}"
            self.info(f"{driver}: no face in {filled} frames; their landmarks were filled from neighbours")
        if driving.n_faces_max > 1:
            self.info(f"{driver}: several faces seen; following the largest")
        if driving.n_frames == 1 and pipeline.config.relative and role == "driver":
            self.info(
                f"{driver}: one frame: the portrait takes its mouth, measured against the same face with the "
                "mouth closed, and keeps its own pose and eyes (--absolute: this face's whole expression "
                "and shape)"
            )
        if driving.gaze is None and pipeline.follows_gaze and role == "driver":
            old = Path(driver).suffix.lower() == ".npz"
            why = (
                "made before gaze was read; `animate-portrait motion` remakes it"
                if old
                else "no eye was read"
            )
            self.info(f"{driver}: no gaze ({why}); the portrait's irises stay where they are")
        driver_mouth = pipeline.paints_mouth and pipeline.config.mouth_interior == "driver"
        if driving.mouth is None and driver_mouth and role == "driver":
            self.info(
                f"{driver}: no mouth reading (made before the mouth was read; `animate-portrait motion` "
                "remakes it); open mouths show painted upper teeth"
            )
        return driving

    def emit(self, summary: dict, as_json: bool, line: str) -> None:
        if as_json:
            sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
            sys.stdout.flush()
        else:
            self.info(line)

    def done(self, result: object, as_json: bool) -> None:
        summary = asdict(result) if is_dataclass(result) else dict(result)
        found = summary.get("faces_in_portrait", 1)
        if found > 1:
            which = (
                "all" if summary.get("faces_animated", 1) == found else "the largest (--faces all: every one)"
            )
            self.info(f"{summary['source']}: {found} faces found; animated {which}")
        n, size = summary["frames"], f"{summary['width']}×{summary['height']}"
        line = f"wrote {summary['output']} ({n} frame{'' if n == 1 else 's'}, {size})"
        self.emit(summary, as_json, line)
