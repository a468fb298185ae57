"""The full-resolution detail (detail.py) on a GPU: the same faces as on the CPU, and how long it takes.

Run by scripts/gpu_check.sh; needs neither ffmpeg nor dlib. The picture is the astronaut at three times
her size (a face box of about 800 px), her landmarks the shipped ones scaled alike; the demo motion's
first frames drive her, through `warp` and `neural`. For each engine the device's restored faces are
compared with the CPU's (max and mean absolute difference, grey levels) and timed per frame.

    python scripts/gpu_detail.py --device cuda --out OUT     # OUT/detail.json, OUT/detail_<engine>.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from animate_portrait import motion
from animate_portrait.assets import demo_motion_path
from animate_portrait.detail import Detail
from animate_portrait.pipeline import Pipeline
from animate_portrait.synthetic import astronaut
from animate_portrait.types import Landmarks, RenderConfig

HERE = Path(__file__).resolve().parent
SCALE = 3


def restored(engine: str, device: str, frames: int) -> tuple[np.ndarray, float]:
    """The restored faces of `frames` demo frames, and the seconds a frame that restoring them took."""
    image = astronaut()
    height, width = image.shape[:2]
    big = np.asarray(Image.fromarray(image).resize((SCALE * width, SCALE * height), Image.BICUBIC))
    points = np.loadtxt(HERE / "astronaut_landmarks.txt", dtype=np.float32) * SCALE + (SCALE - 1) / 2
    pipeline = Pipeline(RenderConfig(engine=engine, device=device, gaze=False))
    lead = pipeline.source_from(Path("astronaut"), big, Landmarks(points))
    driving = motion.load_motion(demo_motion_path())
    targets = motion.retarget(lead.points, driving.points[:frames], relative=True)
    renderer = pipeline.renderer
    renderer.prepare([lead])
    crops, grids = renderer.render_traced(targets)
    detail = Detail(lead, device)
    detail.restore(crops[:2], grids[:2])  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    faces = detail.restore(crops, grids)
    return faces, (time.perf_counter() - start) / frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    report = {}
    for engine in ("warp", "neural"):
        on_device, seconds = restored(engine, args.device, args.frames)
        on_cpu, cpu_seconds = restored(engine, "cpu", args.frames)
        diff = np.abs(on_device.astype(np.int16) - on_cpu)
        report[engine] = {
            "side": on_device.shape[1],
            "ms_per_frame": round(seconds * 1e3, 2),
            "cpu_ms_per_frame": round(cpu_seconds * 1e3, 2),
            "max_abs_diff": int(diff.max()),
            "mean_abs_diff": round(float(diff.mean()), 4),
        }
        print(engine, report[engine], flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(on_device[len(on_device) // 2]).save(args.out / f"detail_{engine}.png")  # to look at
    (args.out / "detail.json").write_text(json.dumps({"device": args.device, **report}, indent=1))


if __name__ == "__main__":
    main()
