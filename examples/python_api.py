"""Use animate-portrait from Python: the astronaut animated by the shipped demo motion, two engines.

    python examples/python_api.py out/

Only material this repository may ship is used (scikit-image's public-domain astronaut, our own motion file).
"""

from __future__ import annotations

import sys
from pathlib import Path

from animate_portrait.assets import demo_motion_path, demo_portrait_path
from animate_portrait.pipeline import Pipeline
from animate_portrait.types import RenderConfig


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for engine in ("static", "warp"):
        pipeline = Pipeline(RenderConfig(engine=engine, crop_only=True, max_frames=50, overwrite=True))
        driving = pipeline.analyse(demo_motion_path())  # a motion file: no video decoding needed
        result = pipeline.animate([demo_portrait_path()], driving, out_dir / f"astronaut_{engine}.mp4")
        print(f"{engine}: {result.frames} frames in {result.seconds:.1f} s -> {result.output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out"))
