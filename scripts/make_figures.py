"""Figures for the README, made only from material this repository may ship.

    python scripts/make_figures.py            # writes docs/engines.png, docs/demo_strip.png, docs/regions.jpg

engines.png: rows are the target landmark sketch, then each engine's face crop, for frames of the shipped
demo motion driving NASA's public-domain astronaut portrait. demo_strip.png: the same frames of
`animate-portrait demo` (the default engine, pasted back into the whole picture). regions.jpg: the face
crop with each --region, and with --expression-scale 1.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from animate_portrait.assets import demo_motion_path, demo_portrait_path
from animate_portrait.pipeline import Pipeline
from animate_portrait.sketch import draw_sketch
from animate_portrait.types import RenderConfig

FRAMES = [0, 30, 60, 90, 120, 140]
ENGINES = ["static", "warp", "neural"]


def main(out: Path = Path("docs/engines.png")) -> None:
    rows = []
    for engine in ENGINES:
        pipeline = Pipeline(RenderConfig(engine=engine, crop_only=True, device="cpu"))
        source = pipeline.load_source(demo_portrait_path())
        driving = pipeline.analyse(demo_motion_path())
        targets = np.concatenate(list(pipeline.targets([source], driving)), axis=1)[0, FRAMES]
        if not rows:
            rows.append(np.concatenate([draw_sketch(t, 256) for t in targets], axis=1))
        pipeline.renderer.prepare([source])
        rows.append(np.concatenate(list(pipeline.renderer.render(targets)), axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).resize((768, 512), Image.LANCZOS).save(out, optimize=True)
    print(f"wrote {out}: rows = sketch, {', '.join(ENGINES)}")


def demo_strip(out: Path = Path("docs/demo_strip.png"), side: int = 200) -> None:
    pipeline = Pipeline(RenderConfig(device="cpu"))
    source = pipeline.load_source(demo_portrait_path())
    driving = pipeline.analyse(demo_motion_path())
    frames = [f for i, f in enumerate(pipeline.render_frames([source], driving)) if i in FRAMES]
    tiles = [np.asarray(Image.fromarray(f).resize((side, side), Image.LANCZOS)) for f in frames]
    Image.fromarray(np.concatenate(tiles, axis=1)).save(out, optimize=True)
    print(f"wrote {out}: frames {FRAMES} of the demo")


REGIONS = [("all", 1.0), ("lips", 1.0), ("pose", 1.0), ("eyes", 1.0), ("all", 1.5)]


def regions(out: Path = Path("docs/regions.jpg")) -> None:
    """Rows: --region all, lips, pose, eyes, then --expression-scale 1.5 (warp), at the same frames."""
    rows = []
    for region, scale in REGIONS:
        config = RenderConfig(crop_only=True, device="cpu", region=region, expression_scale=scale)
        pipeline = Pipeline(config)
        source = pipeline.load_source(demo_portrait_path())
        driving = pipeline.analyse(demo_motion_path())
        frames = [f for i, f in enumerate(pipeline.render_frames([source], driving)) if i in FRAMES]
        rows.append(np.concatenate(frames, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).resize((768, 640), Image.LANCZOS).save(out, quality=88)
    print(f"wrote {out}: rows = {', '.join(f'{r} ×{s:g}' for r, s in REGIONS)}")


if __name__ == "__main__":
    main()
    demo_strip()
    regions()
