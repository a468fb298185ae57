"""`animate-portrait bench`: per-stage milliseconds per frame, end-to-end fps, and the ratio to the floor.

The floor is a pass that only decodes the driver and encodes the same number of frames at the output's
size, measured in the same run on the same machine, so the ratio says how much our own stages cost.

"render in batches" is the throughput of the renderer alone when several portraits share each forward
pass (`batch --group`, the GPU path): `--group` portraits × the driver's frames, `--render-batch` images
per pass, in `--precision` with channels_last on CUDA and optionally `--compile`. `--render-only` measures
just that, from the shipped demo motion and the astronaut, so it runs where neither ffmpeg nor dlib is
installed (a bare GPU machine).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from .types import Crop, RenderConfig


@dataclass
class BenchResult:
    device: str
    engine: str
    size: int
    frames: int
    output_size: tuple[int, int]
    ms_per_frame: dict[str, float]  # stage -> ms/frame
    end_to_end_fps: float | None
    floor_ms_per_frame: float | None
    ratio_to_floor: float | None
    batched: dict[str, object] = field(default_factory=dict)  # render in batches: fps and its settings


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


@dataclass(frozen=True)
class BatchedOptions:
    group: int  # portraits per forward pass
    render_batch: int | None  # images per forward pass (None: the renderer's default)
    precision: str
    compile: bool


def render_batched(renderer, source, targets: np.ndarray, options: BatchedOptions) -> dict[str, object]:
    """Frames/s of the renderer alone, `group` copies of `source` per pass, each driven by `targets`."""
    if options.render_batch is not None:
        renderer.batch = options.render_batch
    p = options.group
    stacked = np.repeat(targets[None], p, axis=0)
    if getattr(renderer, "groups", False):
        renderer.prepare_group([[source]] * p)
        step = max(1, renderer.batch // p)
        per_pass = p * step

        def run(t: np.ndarray) -> np.ndarray:
            return renderer.render_group(t)
    else:  # static and warp: portrait by portrait
        step = len(targets)
        per_pass = 8  # Pipeline.render_frames's chunk, as `render` is called there
        renderer.prepare([source])

        def run(t: np.ndarray) -> np.ndarray:
            return np.stack([renderer.render(own) for own in t])

    run(stacked[:, :step])  # warm-up: allocation, cuDNN autotuning, torch.compile
    if len(targets) % step:
        run(stacked[:, : len(targets) % step])  # the last, shorter pass has its own shapes
    seconds, _ = _timed(lambda: run(stacked))
    return {
        "fps": round(p * len(targets) / seconds, 1),
        "portraits_per_pass": p,
        "images_per_pass": per_pass,
        "precision": options.precision,
        "channels_last": bool(getattr(renderer, "channels_last", False)),
        "compiled": options.compile,
    }


def run_bench(
    portrait: Path, driver: Path, config: RenderConfig, workdir: Path, options: BatchedOptions
) -> BenchResult:
    # Imported here: this module is loaded to register the command, and torch/dlib would slow every start.
    from . import face, gaze, motion, video
    from .engines.base import Traced, rendered
    from .engines.mouth import profiles_arg
    from .pipeline import RENDER_BATCH, Pipeline

    pipeline = Pipeline(config, precision=options.precision, compile=options.compile)
    source = pipeline.load_source(portrait)
    height, width = source.image.shape[:2]
    ms: dict[str, float] = {}

    t_decode, frames = _timed(lambda: list(video.read_frames(driver, config.max_frames)))
    n = len(frames)
    ms["decode"] = t_decode / n * 1e3
    t_analyse, driving = _timed(lambda: pipeline.analyse(driver))
    ms["landmarks"] = max(t_analyse - t_decode, 0.0) / n * 1e3  # analyse decodes again: count the rest
    t_retarget, targets = _timed(
        lambda: motion.retarget(source.points, driving.points, config.relative, max_travel=config.max_travel)
    )
    ms["retarget"] = t_retarget / n * 1e3

    renderer = pipeline.renderer
    renderer.prepare([source])
    renderer.render(targets[:1])  # warm-up: first calls allocate and (on GPU) compile
    mouths = pipeline.mouth_profiles(driving)  # the driver's mouth interiors, painted as `animate` does

    [full] = pipeline.details([source])  # None (0 ms): the picture holds the face at about the working size

    def render() -> Traced:  # with the grids the detail needs, from the same passes, as `animate` does
        batch = [slice(s, s + RENDER_BATCH) for s in range(0, n, RENDER_BATCH)]
        passes = [rendered(renderer, targets[b], full is not None, profiles_arg(mouths, b)) for b in batch]
        frames, grids = zip(*passes, strict=True)
        return Traced(np.concatenate(frames), None if full is None else np.concatenate(grids))

    t_render, (crops, grids) = _timed(render)
    ms["render"] = t_render / n * 1e3
    changes = pipeline.gaze_changes(driving)  # None (0 ms) with --no-gaze or a driver without gaze

    def move_irises() -> np.ndarray:
        if changes is None:
            return crops
        looks = gaze.GazeMoves(gaze.read_gaze(source.face, source.points)[None], changes)
        return looks.apply(crops[None], targets[None])[0]

    t_gaze, crops = _timed(move_irises)
    ms["gaze"] = t_gaze / n * 1e3

    def restore() -> tuple[np.ndarray, Crop]:
        if full is None:
            return crops, source.crop
        return full.restore(crops, grids), full.crop

    t_detail, (faces, box) = _timed(restore)
    ms["detail"] = t_detail / n * 1e3
    t_paste, pasted = _timed(lambda: [face.paste_back(source.image, c, box) for c in faces])
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
        config_ = RenderConfig(**{**asdict(config), "overwrite": True})
        fresh = Pipeline(config_, precision=options.precision, compile=options.compile)
        return fresh.animate([portrait], fresh.analyse(driver), workdir / "e2e.mp4")

    t_e2e, result = _timed(end_to_end)
    e2e_ms = t_e2e / result.frames * 1e3
    batched = render_batched(renderer, source, targets, options)
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
        batched=batched,
    )


def run_render_only(config: RenderConfig, options: BatchedOptions) -> BenchResult:
    """The renderer alone, without ffmpeg or dlib: the astronaut's face region as the source, with the
    demo motion's first frame fitted into the crop as its landmarks. Throughput does not depend on
    whose face it is; this is a speed measurement, not a picture."""
    from . import motion
    from .assets import demo_motion_path
    from .face import extract
    from .pipeline import Pipeline
    from .synthetic import astronaut
    from .types import SourceFace

    pipeline = Pipeline(config, precision=options.precision, compile=options.compile)
    driving = motion.load_motion(demo_motion_path())
    points = driving.points[: config.max_frames] if config.max_frames else driving.points
    image = astronaut()
    crop = Crop(center=(256.0, 180.0), side=256.0, size=config.size)  # her face, roughly
    first = points[0] - points[0].mean(0)
    face_points = first / np.abs(first).max() * config.size * 0.3 + config.size / 2
    source = SourceFace(Path("astronaut"), image, crop, extract(image, crop), face_points.astype(np.float32))
    targets = motion.retarget(source.points, points, config.relative, max_travel=config.max_travel)
    renderer = pipeline.renderer
    renderer.prepare([source])
    renderer.render(targets[:8])  # warm-up
    t_render, _ = _timed(lambda: [renderer.render(targets[s : s + 8]) for s in range(0, len(targets), 8)])
    return BenchResult(
        device=pipeline.device,
        engine=config.engine,
        size=config.size,
        frames=len(targets),
        output_size=(config.size, config.size),
        ms_per_frame={"render": round(t_render / len(targets) * 1e3, 2)},
        end_to_end_fps=None,
        floor_ms_per_frame=None,
        ratio_to_floor=None,
        batched=render_batched(renderer, source, targets, options),
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
        group: Annotated[
            int | None,
            typer.Option(
                min=1, help="Portraits per forward pass for 'render in batches' (default 16 on CUDA, 1)."
            ),
        ] = None,
        render_batch: Annotated[
            int | None,
            typer.Option(min=1, help="Images per forward pass (default: 128 on CUDA, 8 on a CPU)."),
        ] = None,
        precision: Annotated[str, typer.Option(help="auto (fp16 on CUDA) | fp32 | fp16 | bf16")] = "auto",
        compile: Annotated[bool, typer.Option("--compile", help="Run G through torch.compile.")] = False,
        render_only: Annotated[
            bool, typer.Option("--render-only", help="Only the renderer (needs neither ffmpeg nor dlib).")
        ] = False,
        detail: Annotated[
            bool, typer.Option("--detail/--no-detail", help="A big face's full-resolution detail.")
        ] = True,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Per-stage ms/frame, end-to-end fps, the ratio to a decode+encode-only floor, and the renderer's
        frames/s with several portraits per forward pass.

        Example (GPU): animate-portrait bench --engine neural --device cuda --precision bf16 --json
        """
        from .console import Reporter
        from .engines.neural import PRECISIONS
        from .pipeline import resolve_device

        if precision not in PRECISIONS:
            raise typer.BadParameter(f"choose one of {', '.join(PRECISIONS)}", param_hint="--precision")
        report = Reporter()
        with report.guard(), tempfile.TemporaryDirectory() as tmp:
            config = RenderConfig(
                engine=engine, size=size, device=device, max_frames=max_frames, detail=detail
            )
            cuda = resolve_device(device) == "cuda"
            options = BatchedOptions(group or (16 if cuda else 1), render_batch, precision, compile)
            if render_only:
                result = run_render_only(config, options)
            else:
                from .assets import demo_portrait_path
                from .synthetic import talking_video

                workdir = Path(tmp)
                if driver is None:
                    driver = talking_video(workdir, n_frames=max_frames or 120, fps=25, audio=False).path
                result = run_bench(portrait or demo_portrait_path(), driver, config, workdir, options)
        if as_json:
            typer.echo(json.dumps(asdict(result)))
            return
        _print_table(result)


def _print_table(result: BenchResult) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{result.engine} engine, {result.size}² crop, {result.frames} frames, {result.device}"
    )
    table.add_column("stage")
    table.add_column("ms/frame", justify="right")
    for stage, value in result.ms_per_frame.items():
        table.add_row(stage, f"{value:.2f}")
    if result.end_to_end_fps:
        table.add_row("[bold]end to end", f"{1e3 / result.end_to_end_fps:.2f}")
        table.add_row("floor (decode+encode)", f"{result.floor_ms_per_frame:.2f}")
    Console().print(table)
    if result.end_to_end_fps:
        typer.echo(f"end-to-end: {result.end_to_end_fps:.1f} fps; {result.ratio_to_floor:.1f}× the floor")
    b = result.batched
    typer.echo(
        f"render in batches: {b['fps']} frames/s ({b['portraits_per_pass']} portraits, "
        f"{b['images_per_pass']} images per pass, {b['precision']}"
        f"{', channels_last' if b['channels_last'] else ''}{', compiled' if b['compiled'] else ''})"
    )
