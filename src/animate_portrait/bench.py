"""`animate-portrait bench`: per-stage milliseconds per frame, end-to-end fps, and the ratio to the floor.

The floor is a pass that only decodes the driver and encodes the same number of frames at the output's
size, measured in the same run on the same machine, so the ratio says how much our own stages cost.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from .types import RenderConfig


@dataclass
class BenchResult:
    device: str
    engine: str
    size: int
    frames: int
    output_size: tuple[int, int]
    ms_per_frame: dict[str, float]  # stage -> ms/frame
    end_to_end_fps: float
    floor_ms_per_frame: float
    ratio_to_floor: float


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def run_bench(portrait: Path, driver: Path, config: RenderConfig, workdir: Path) -> BenchResult:
    # Imported here: this module is loaded to register the command, and torch/dlib would slow every start.
    from . import face, motion, video
    from .pipeline import RENDER_BATCH, Pipeline

    pipeline = Pipeline(config)
    source = pipeline.load_source(portrait)
    height, width = source.image.shape[:2]
    ms: dict[str, float] = {}

    t_decode, frames = _timed(lambda: list(video.read_frames(driver, config.max_frames)))
    n = len(frames)
    ms["decode"] = t_decode / n * 1e3
    t_analyse, driving = _timed(lambda: pipeline.analyse(driver))
    ms["landmarks"] = max(t_analyse - t_decode, 0.0) / n * 1e3  # analyse decodes again: count the rest
    t_retarget, targets = _timed(lambda: motion.retarget(source.points, driving.points, config.relative))
    ms["retarget"] = t_retarget / n * 1e3

    renderer = pipeline.renderer
    renderer.prepare([source])
    renderer.render(targets[:1])  # warm-up: first calls allocate and (on GPU) compile
    t_render, crops = _timed(
        lambda: [c for s in range(0, n, RENDER_BATCH) for c in renderer.render(targets[s : s + RENDER_BATCH])]
    )
    ms["render"] = t_render / n * 1e3
    t_paste, pasted = _timed(lambda: [face.paste_back(source.image, c, source.crop) for c in crops])
    ms["paste_back"] = t_paste / n * 1e3

    def encode(images: list[np.ndarray], name: str) -> None:
        with video.VideoWriter(workdir / name, driving.fps, (width, height), overwrite=True) as writer:
            for image in images:
                writer.write(image)

    t_encode, _ = _timed(lambda: encode(pasted, "stages.mp4"))
    ms["encode"] = t_encode / n * 1e3

    # The floor: decode + encode only, same frame count, same output size.
    still = [source.image] * n
    t_floor_encode, _ = _timed(lambda: encode(still, "floor.mp4"))
    floor = ms["decode"] + t_floor_encode / n * 1e3

    def end_to_end():
        # As a user's run: a fresh pipeline that analyses the driver, renders, pastes back and encodes.
        fresh = Pipeline(RenderConfig(**{**asdict(config), "overwrite": True}))
        return fresh.animate([portrait], fresh.analyse(driver), workdir / "e2e.mp4")

    t_e2e, result = _timed(end_to_end)
    e2e_ms = t_e2e / result.frames * 1e3
    return BenchResult(
        device=pipeline.device,
        engine=config.engine,
        size=config.size,
        frames=n,
        output_size=(width, height),
        ms_per_frame={k: round(v, 2) for k, v in ms.items()},
        end_to_end_fps=round(1e3 / e2e_ms, 2),
        floor_ms_per_frame=round(floor, 2),
        ratio_to_floor=round(e2e_ms / floor, 2),
    )


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        driver: Annotated[
            Path | None, typer.Option(help="Driving video (default: a synthetic talking astronaut).")
        ] = None,
        portrait: Annotated[Path | None, typer.Option(help="Portrait (default: the astronaut).")] = None,
        engine: Annotated[str, typer.Option(help="neural | warp | static")] = "warp",
        size: Annotated[int, typer.Option()] = 256,
        device: Annotated[str, typer.Option()] = "auto",
        max_frames: Annotated[int | None, typer.Option()] = 120,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Per-stage ms/frame, end-to-end fps and the ratio to a decode+encode-only floor."""
        from .assets import demo_portrait_path
        from .console import Reporter
        from .synthetic import talking_video

        report = Reporter()
        with report.guard(), tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            if driver is None:
                driver = talking_video(workdir, n_frames=max_frames or 120, fps=25, audio=False).path
            config = RenderConfig(engine=engine, size=size, device=device, max_frames=max_frames)
            result = run_bench(portrait or demo_portrait_path(), driver, config, workdir)
        if as_json:
            typer.echo(json.dumps(asdict(result)))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=f"{result.engine} engine, {result.size}² crop, {result.frames} frames, {result.device}"
        )
        table.add_column("stage")
        table.add_column("ms/frame", justify="right")
        for stage, value in result.ms_per_frame.items():
            table.add_row(stage, f"{value:.2f}")
        table.add_row("[bold]end to end", f"{1e3 / result.end_to_end_fps:.2f}")
        table.add_row("floor (decode+encode)", f"{result.floor_ms_per_frame:.2f}")
        Console().print(table)
        typer.echo(f"end-to-end: {result.end_to_end_fps:.1f} fps; {result.ratio_to_floor:.1f}× the floor")
