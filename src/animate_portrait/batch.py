"""Many portraits, one driver: the driver is analysed once; a failing portrait does not stop the rest."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from .console import Reporter
from .errors import InputError
from .pipeline import Pipeline
from .types import RenderConfig


def output_names(portraits: list[Path], output_dir: Path) -> list[Path]:
    """`<stem>.mp4`, stable across runs; stems that collide get a short hash of their path."""
    stems = Counter(p.stem for p in portraits)
    names = []
    for path in portraits:
        stem = path.stem
        if stems[stem] > 1:
            stem += "-" + hashlib.sha1(str(path).encode()).hexdigest()[:8]
        names.append(output_dir / f"{stem}.mp4")
    return names


def run_batch(
    portraits: list[Path],
    driver: Path,
    output_dir: Path,
    config: RenderConfig,
    report: Reporter,
    as_json: bool,
) -> int:
    """Animate each portrait; print one line (JSON with --json) per portrait; return how many failed."""
    if not portraits:
        raise InputError(None, "no portraits given (pass paths, or '-' to read them from stdin)")
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(output_dir, "is not a folder")
    output_dir.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(config)
    pipeline.load_renderer()
    driving = report.analyse(pipeline, driver)
    failed = 0
    with report.bar("portraits", len(portraits)) as step:
        for portrait, output in zip(portraits, output_names(portraits, output_dir), strict=True):
            try:
                result = pipeline.animate([portrait], driving, output)
                line = {
                    "source": str(portrait),
                    "output": str(output),
                    "status": "ok",
                    "frames": result.frames,
                }
                text = f"ok    {portrait} -> {output}"
            except (InputError, OSError, RuntimeError, ValueError) as err:
                # One bad portrait must not sink a batch of thousands: report it and go on.
                failed += 1
                line = {"source": str(portrait), "output": None, "status": "error", "error": str(err)}
                text = f"error {err}"
            # Results go to stdout, one line per portrait, so a pipeline can read them as they come.
            print(json.dumps(line, sort_keys=True) if as_json else text, flush=True)
            step(1)
    return failed
