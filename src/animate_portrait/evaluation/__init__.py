"""`animate-portrait evaluate`: engines compared on held-out clips (issue 3, section 4).

- Self-reenactment (`self_reenactment.py`): the sources are a clip's first K frames and the driver is the
  clip's own later frames, so the real frames are the truth: PSNR, SSIM, perceptual distance, landmark
  error, mouth L1, identity distance, mouth-opening correlation.
- Cross-reenactment (`cross_reenactment.py`): portraits × drivers through the product's pipeline:
  identity distance to the portrait, mouth/yaw/pitch correlation with the driver, share of frames with a face.

Rows are `Setup`s (engine × K × variant); `runner.py` fills them, `report.py` prints them and writes the
JSON that a weights card embeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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
    "Example: animate-portrait evaluate ../shared/data/clips/eval/*.mp4 --engines static,warp --shots 1 "
    "--frame-step 5 --max-frames 40 --portraits mona.png --drivers d6.mp4 --json runs/eval.json"
)


def _split(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise typer.BadParameter(f"give at least one {what}")
    return items


def parse_setups(engines: str, shots: str) -> list[Setup]:
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
    # Static ignores all but the first source: one row for it, not one per K.
    return list(dict.fromkeys(Setup(e, 1 if e == "static" else k) for e in names for k in ks))


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
    size: Annotated[int, typer.Option(help="Working resolution of the face crop.")] = 256,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps.")] = "auto",
    weights: Annotated[Path | None, typer.Option(help="Weights file for the neural engine.")] = None,
    json_out: JsonOut = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Compare engines: self-reenactment on CLIPS, cross-reenactment of --portraits by --drivers."""
    from ..console import Reporter
    from ..pipeline import check_sources, resolve_device
    from .common import RendererFactory
    from .report import print_tables, write_json
    from .runner import run_evaluation

    setups = parse_setups(engines, shots)
    report = Reporter(quiet=quiet)
    with report.guard():
        check_sources(clips)
        if portraits:
            check_sources(portraits)
        if drivers:
            check_sources(drivers)
        factory = RendererFactory(size, resolve_device(device), weights)
        n_items = len(clips) + len(portraits or []) * len(drivers or clips) * len({s.engine for s in setups})
        with report.bar("evaluating", n_items) as step:
            results = run_evaluation(
                clips, setups, factory, portraits, drivers, max_frames, frame_step, on_item=lambda: step(1)
            )
        print_tables(results)
        if json_out is not None:
            write_json(results, json_out)
            report.info(f"wrote {json_out}")
