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
    app.command(
        "finetune",
        epilog="Example: animate-portrait finetune a.jpg b.jpg c.jpg -o anna.safetensors --steps 200 · "
        "then: animate-portrait a.jpg --driver talk.mp4 -o out.mp4 --engine neural --person anna.safetensors",
    )(finetune)
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


def finetune(
    sources: Annotated[
        list[Path] | None,
        typer.Argument(metavar="SOURCE...", help="Images of one person; the first is the lead."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Person file (.safetensors; a .json card goes beside it).")
    ] = Path("person.safetensors"),
    source_dir: Annotated[
        Path | None, typer.Option("--sources", metavar="DIR", help="Folder of more images of the person.")
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(min=1, help="Fine-tuning steps (default: 200 on a GPU, 50 on a CPU)."),
    ] = None,
    size: Annotated[int, typer.Option(help="Working resolution of the face crop.")] = 256,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps.")] = "auto",
    weights: Annotated[Path | None, typer.Option(help="Weights file of the neural engine.")] = None,
    landmarks: Annotated[str, typer.Option("--landmarks", help="dlib | fan.")] = "dlib",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing person file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")
    ] = False,
) -> None:
    """Fine-tune the neural model on one person's images (paper §3.3) and save only what changed.

    The file holds ψ′ (the AdaIN parameters), the tuned flow/decoder tensors and w′.

    Use it with --engine neural --person FILE. Results are cached: a rerun with the same inputs is instant.
    """
    from .errors import InputError
    from .pipeline import Pipeline, check_sources
    from .sources import gather
    from .training import renderer_tuning as tuning
    from .training.finetune import FinetuneSettings
    from .training.person_file import save_person
    from .types import RenderConfig

    report = Reporter(quiet=quiet)
    with report.guard():
        if output.suffix.lower() != ".safetensors":
            raise InputError(output, "a person file must end in .safetensors")
        if output.exists() and not overwrite:
            raise InputError(output, "already exists (use --overwrite to replace it)")
        paths = gather(sources, source_dir)
        check_sources(paths)
        pipeline = Pipeline(
            RenderConfig(size=size, engine="neural", device=device, landmarks=landmarks, weights=weights)
        )
        pipeline.load_renderer()
        n = steps if steps is not None else tuning.default_steps(pipeline.device, tuning.COMMAND_STEPS)
        loaded = pipeline.load_sources(paths, report.info)
        person, hit = tuning.person_for(pipeline.renderer, loaded, FinetuneSettings(steps=n), report.bar)
        save_person(output, person)
        summary = {
            "output": str(output),
            "steps": n,
            "sources": len(loaded),
            "cached": hit,
            "seconds": person.card.get("seconds"),
            "reconstruction_l1": person.card.get("reconstruction_l1"),
        }
        report.emit(summary, as_json, f"wrote {output} ({n} steps on {len(loaded)} sources)")
