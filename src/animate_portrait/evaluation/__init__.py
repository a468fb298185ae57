"""`animate-portrait evaluate`: engines compared on held-out clips (issue 3, section 4).

- Self-reenactment (`self_reenactment.py`): the sources are K frames from a clip's first part and the driver
  is the rest of the clip, so the real frames are the truth: PSNR, SSIM (whole crop and face region),
  perceptual distance, landmark error, mouth L1, identity distance, mouth-opening correlation.
- The paper's Table 1 (`runner.table1`): the neural rows of self-reenactment, 1/8/32-shot, feed-forward
  and fine-tuned (`--finetune-steps N`: the §3.3 stage on each clip's K sources, cached per person).
- Cross-reenactment (`cross_reenactment.py`): portraits × drivers through the product's pipeline:
  identity distance to the portrait, mouth/yaw/pitch/gaze correlation with the driver, share of frames with a
  face.

Rows are `Setup`s (engine × K × variant); `runner.py` fills them, `report.py` prints them and writes the
JSON that a weights card embeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..types import MAX_TRAVEL, MOUTH_INTERIORS

if TYPE_CHECKING:
    from .common import Setup

__all__ = ["Judge", "RendererFactory", "Results", "Setup", "parse_setups", "register", "run_evaluation"]
_LAZY = {"Judge": "common", "RendererFactory": "common", "Setup": "common", "Results": "report",
         "run_evaluation": "runner"}  # fmt: skip


def __getattr__(name: str):
    # The CLI imports this package to register the command: metrics, torch and scipy load only when used,
    # so `animate-portrait --help` stays fast.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)


EPILOG = (
    "Examples: animate-portrait evaluate ../shared/data/clips/eval/*.mp4 --engines static,warp --shots 1 "
    "--frame-step 5 --max-frames 40 --portraits mona.png --drivers d6.mp4 --json runs/eval.json · "
    "the paper's Table 1: animate-portrait evaluate ../shared/data/clips/eval/*.mp4 --engines neural "
    "--shots 1,8,32 --finetune-steps 100 --source-span 64 --max-frames 20 --frame-step 3 "
    "--json runs/table1.json"
)


def _split(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise typer.BadParameter(f"give at least one {what}")
    return items


def parse_setups(engines: str, shots: str, finetune: bool = False) -> list[Setup]:
    """Rows from the options; `finetune` adds a fine-tuned neural row after each feed-forward one."""
    from ..engines import ENGINES
    from .common import Setup

    names = _split(engines, "engine")
    for name in names:
        if name not in ENGINES:
            known = ", ".join(ENGINES)
            raise typer.BadParameter(f"unknown engine {name!r}; choose from {known}", param_hint="--engines")
    try:
        ks = [int(k) for k in _split(shots, "K")]
    except ValueError:
        raise typer.BadParameter("comma-separated whole numbers, e.g. 1,8", param_hint="--shots") from None
    if min(ks) < 1:
        raise typer.BadParameter("K must be at least 1", param_hint="--shots")
    if finetune and "neural" not in names:
        raise typer.BadParameter(
            "fine-tuning needs the neural engine in --engines", param_hint="--finetune-steps"
        )
    # Static ignores all but the first source: one row for it, not one per K.
    setups = []
    for e in names:
        for k in ks:
            setups.append(Setup(e, 1 if e == "static" else k))
            if finetune and e == "neural":
                setups.append(Setup(e, k, "fine-tuned"))
    return list(dict.fromkeys(setups))


Portraits = Annotated[
    list[Path] | None, typer.Option("--portraits", help="Cross-reenactment portraits (repeatable).")
]
Drivers = Annotated[
    list[Path] | None, typer.Option("--drivers", help="Drivers for --portraits (default: CLIPS).")
]
MaxFrames = Annotated[int | None, typer.Option(help="At most this many target frames per clip or driver.")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="Write per-clip and mean numbers here.")]


def register(app: typer.Typer) -> None:
    app.command("evaluate", epilog=EPILOG)(evaluate)


def evaluate(
    clips: Annotated[list[Path], typer.Argument(help="Held-out talking-face clips (self-reenactment).")],
    portraits: Portraits = None,
    drivers: Drivers = None,
    engines: Annotated[str, typer.Option(help="Comma-separated engines.")] = "static,warp,neural",
    shots: Annotated[str, typer.Option(help="Comma-separated K (source frames), self-reenactment.")] = "1,8",
    max_frames: MaxFrames = None,
    frame_step: Annotated[int, typer.Option(min=1, help="Use every S-th frame as a target (speed).")] = 1,
    source_span: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Self-reenactment: the sources are K frames spread evenly over the first N frames of each "
            "clip, and the targets come after them (default: N = the largest K, consecutive frames).",
        ),
    ] = None,
    finetune_steps: Annotated[
        int,
        typer.Option(
            min=0,
            help="Also evaluate the neural engine fine-tuned on each clip's K sources for N steps (the "
            "paper's Table 1; cached, so a rerun does not tune again). About a minute per 100 steps at "
            "256² on a CPU, per clip and K. 0: feed-forward only.",
        ),
    ] = 0,
    size: Annotated[int, typer.Option(help="Working resolution of the face crop.")] = 256,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps.")] = "auto",
    weights: Annotated[Path | None, typer.Option(help="Weights file for the neural engine.")] = None,
    jobs: Annotated[
        int,
        typer.Option(
            min=1,
            help="Self-reenactment: clips evaluated in N worker processes at once, each with the CPU "
            "cores ÷ N torch threads.",
        ),
    ] = 1,
    mouth: Annotated[
        bool,
        typer.Option("--mouth/--no-mouth", help="Paint the mouth interior, as animate does by default."),
    ] = True,
    max_travel: Annotated[
        float,
        typer.Option(
            min=0, help="Cross-reenactment: how far the head may move, in face sizes, as animate's."
        ),
    ] = MAX_TRAVEL,
    gaze: Annotated[
        bool,
        typer.Option(
            "--gaze/--no-gaze",
            help="Move the output's irises with the driver's gaze, as animate does (self-reenactment: the "
            "clip's own gaze change since the first source frame).",
        ),
    ] = True,
    mouth_interior: Annotated[
        str,
        typer.Option(
            metavar="painted|driver",
            help="What a painted mouth opening shows, as animate's option (self-reenactment: the clip's own "
            "mouth).",
        ),
    ] = "painted",
    json_out: JsonOut = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Compare engines: self-reenactment on CLIPS, cross-reenactment of --portraits by --drivers.

    With the neural engine, the paper's Table 1 (K-shot × feed-forward / fine-tuned) is printed too.
    """
    from ..console import Reporter
    from ..pipeline import check_sources, resolve_device
    from .common import RendererFactory
    from .report import print_tables, write_json
    from .runner import run_evaluation

    setups = parse_setups(engines, shots, finetune=finetune_steps > 0)
    report = Reporter(quiet=quiet)
    with report.guard():
        check_sources(clips)
        if portraits:
            check_sources(portraits)
        if drivers:
            check_sources(drivers)
        if mouth_interior not in MOUTH_INTERIORS:
            raise typer.BadParameter(
                f"use one of {', '.join(MOUTH_INTERIORS)}", param_hint="--mouth-interior"
            )
        factory = RendererFactory(
            size, resolve_device(device), weights, finetune_steps, mouth, max_travel, gaze, mouth_interior
        )
        n_items = len(clips) + len(portraits or []) * len(drivers or clips) * len({s.engine for s in setups})
        with report.bar("evaluating", n_items) as step:
            results = run_evaluation(
                clips, setups, factory, portraits, drivers, max_frames, frame_step,
                on_item=lambda: step(1), span=source_span, jobs=jobs,
            )  # fmt: skip
        print_tables(results)
        if json_out is not None:
            write_json(results, json_out)
            report.info(f"wrote {json_out}")
