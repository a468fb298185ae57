"""Commands for the model's developers (prepare, train, evaluate, bench), kept out of cli.py's way.

Each imports its heavy module only when it runs, so `animate-portrait --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .console import Reporter


def register(app: typer.Typer) -> None:
    from . import bench, evaluation

    app.command(
        "prepare", epilog="Example: animate-portrait prepare ../shared/data/clips/train --out cache/train"
    )(prepare)
    app.command("train", epilog="Example: animate-portrait train cache/train --out runs/main --minutes 60")(
        train
    )
    evaluation.register(app)
    bench.register(app)


def prepare(
    clips: Annotated[list[Path], typer.Argument(help="Clips, or folders of .mp4 clips.")],
    out: Annotated[Path, typer.Option("--out", help="Cache folder (one .mp4 of crops + one .npz per clip).")],
    size: Annotated[int, typer.Option(help="Crop resolution.")] = 256,
    overwrite: Annotated[bool, typer.Option(help="Redo clips already in the cache.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Landmarks and stable face crops for each training clip; frames without a face are dropped."""
    from .errors import InputError
    from .training.prepare import prepare_clips

    report = Reporter(quiet=quiet)
    with report.guard():
        paths = sorted(p for c in clips for p in (sorted(c.glob("*.mp4")) if c.is_dir() else [c]))
        if not paths:
            raise InputError(clips[0] if clips else None, "no clips found")
        with report.bar("clips", len(paths)) as step:
            kept = prepare_clips(paths, out, size, overwrite=overwrite, on_clip=lambda clip, n: step(1))
        report.info(f"{out}: {len(kept)} clips, {sum(kept.values())} frames")


def train(
    cache: Annotated[Path, typer.Argument(help="A cache made by `prepare`.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, loss log, sample grids.")],
    minutes: Annotated[float | None, typer.Option(help="Wall-time budget.")] = None,
    steps: Annotated[int, typer.Option(help="Step budget.")] = 1000,
    batch: Annotated[int, typer.Option()] = 8,
    size: Annotated[int, typer.Option()] = 256,
    device: Annotated[str, typer.Option()] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
    init: Annotated[
        Path | None, typer.Option(help="Start from these weights (e.g. the shipped ones).")
    ] = None,
) -> None:
    """Meta-train embedder, generator and discriminator; resumes from the run folder's last checkpoint.

    Every TrainConfig field is also a flag of `python -m animate_portrait.training.train`.
    """
    from .training.train import TrainConfig
    from .training.train import train as run_training

    config = TrainConfig(
        minutes=minutes, steps=steps, batch=batch, size=size, device=device, seed=seed,
        init=str(init) if init else None,
    )  # fmt: skip
    with Reporter().guard():
        path = run_training(cache, out, config)
    typer.echo(f"weights: {path}")
