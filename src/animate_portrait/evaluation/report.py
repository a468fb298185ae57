"""The evaluation's results: rich tables for people, JSON (per clip, means, exact settings) for cards.

A column is one `Column` line below: adding a metric to a table is adding a line here.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    fmt: str = "{:.3f}"


SELF_COLUMNS = (
    Column("psnr", "PSNR↑", "{:.2f}"),
    Column("ssim", "SSIM↑"),
    Column("face_ssim", "face SSIM↑"),
    Column("perceptual", "percept↓"),
    Column("landmark_error", "lmk err↓"),
    Column("mouth_l1", "mouth L1↓"),
    Column("eyes_l1", "eyes L1↓"),
    Column("identity", "id dist↓"),
    Column("mouth_corr", "mouth r↑"),
    Column("face_found", "face↑"),
)
# The paper's Table 1, in the columns (FID and the user study are out of reach here).
TABLE1_COLUMNS = (
    Column("face_ssim", "face SSIM↑"),
    Column("perceptual", "percept↓"),
    Column("identity", "id dist↓"),
    Column("mouth_corr", "mouth r↑"),
)
CROSS_COLUMNS = (
    Column("identity", "id dist↓"),
    Column("mouth_corr", "mouth r↑"),
    Column("mouth_gain", "mouth gain"),
    Column("yaw_corr", "yaw r↑"),
    Column("pitch_corr", "pitch r↑"),
    Column("gaze_corr", "gaze r↑"),
    Column("face_found", "face↑"),
)


@dataclass
class Section:
    """One table: `rows` are means over `items` (clips or portrait × driver pairs), one per setup."""

    name: str
    columns: tuple[Column, ...]
    rows: list[dict] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)
    targets: list[dict] = field(default_factory=list)  # {"target", "value", "met"}: goals checked on rows


@dataclass
class Results:
    settings: dict
    sections: list[Section]
    skipped: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        body = {
            s.name: {"rows": s.rows, "items": s.items, **({"targets": s.targets} if s.targets else {})}
            for s in self.sections
        }
        return _finite({"settings": self.settings, **body, "skipped": self.skipped, "seconds": self.seconds})


def _finite(value):
    """JSON has no NaN or Infinity: a missing number (no face, a constant series) is written as null."""
    if isinstance(value, float):
        return round(value, 5) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_json(results: Results, path: Path) -> None:
    from .. import video

    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results.to_dict(), indent=2, ensure_ascii=False) + "\n"
    video.write_atomically(path, lambda tmp: tmp.write_text(text))


def _cell(value: object, fmt: str) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return fmt.format(value)


def setup_name(row: dict) -> str:
    """ "warp 1-shot", plus the variant when it is not the plain feed-forward one."""
    name = f"{row['engine']} {row['shots']}-shot"
    return name if row.get("variant", "feed-forward") == "feed-forward" else f"{name} {row['variant']}"


TITLES = {"table1": "Table 1 (Zakharov et al. 2019), neural self-reenactment"}


def table(section: Section) -> Table:
    unit = "pairs" if section.name.startswith("cross") else "clips"
    title = TITLES.get(section.name, section.name.replace("_", "-"))
    out = Table(title=f"{title}: means over {unit}")
    for name in ("setup", unit, "frames"):
        out.add_column(name, justify="left" if name == "setup" else "right")
    for col in section.columns:
        out.add_column(col.title, justify="right")
    for row in section.rows:
        cells = (setup_name(row), str(row["n"]), str(row["frames"]))
        out.add_row(*cells, *(_cell(row.get(c.key), c.fmt) for c in section.columns))
    return out


def print_tables(results: Results, console: Console | None = None) -> None:
    # Piped output gets a fixed width wide enough for every column, instead of rich's 80.
    console = console or Console(width=None if sys.stdout.isatty() else 140)
    for section in results.sections:
        if section.rows:
            console.print(table(section))
        for goal in section.targets:
            value = goal["value"]
            shown = (
                ", ".join(_cell(v, "{:.3f}") for v in value)
                if isinstance(value, list)
                else _cell(value, "{:.3f}")
            )
            console.print(
                f"{'met' if goal['met'] else 'NOT met'}: {goal['target']} ({shown})", soft_wrap=True
            )
    for skip in results.skipped:
        what = next(f"{k} {v}" for k, v in skip.items() if k != "reason")
        console.print(f"skipped {what}: {skip['reason']}", soft_wrap=True)
