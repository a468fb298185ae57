"""Many portraits × one driver through `batch`, timed: the issue's "100 portraits × a 10 s driver" check.

Run by scripts/gpu_check.sh (on a GPU, or on a CPU with tiny counts to check the script itself). The
portraits are the astronaut, scaled, shifted and tinted (her landmarks follow analytically), so nothing
is downloaded; the driver is the shipped demo motion looped to the asked length, saved as a motion file
(batch's own way to reuse an analysed driver). Where dlib is not installed (a bare GPU machine) the
portraits' landmarks are the transformed ones, and the summary says so: that run then excludes the one
dlib search per portrait.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from animate_portrait import motion, pipeline
from animate_portrait.assets import demo_motion_path
from animate_portrait.batch import run_batch
from animate_portrait.console import Reporter
from animate_portrait.synthetic import astronaut
from animate_portrait.types import Landmarks, RenderConfig

HERE = Path(__file__).resolve().parent


class KnownFaces:
    """A landmark detector that knows the synthetic portraits (by a hash of their pixels)."""

    def __init__(self) -> None:
        self.faces: dict[str, np.ndarray] = {}

    def add(self, image: np.ndarray, points: np.ndarray) -> None:
        self.faces[hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()] = points

    def detect(self, image: np.ndarray) -> list[Landmarks]:
        points = self.faces.get(hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest())
        return [] if points is None else [Landmarks(points.astype(np.float32))]


def portraits(folder: Path, n: int, known: KnownFaces) -> list[Path]:
    """n variants of the astronaut: scale 0.75–1.15 about her face, shifted ±40 px, tinted ±25 levels."""
    base = astronaut()
    points = np.loadtxt(HERE / "astronaut_landmarks.txt", dtype=np.float32)
    centre = points.mean(0)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        scale, shift = rng.uniform(0.75, 1.15), rng.uniform(-40, 40, 2)
        # PIL's affine maps output pixels to input ones: the inverse of p' = scale (p - c) + c + shift
        inv = 1 / scale
        offset = centre - inv * (centre + shift)
        warped = Image.fromarray(base).transform(
            base.shape[1::-1], Image.AFFINE, (inv, 0, offset[0], 0, inv, offset[1]), Image.BILINEAR
        )
        tint = rng.uniform(-25, 25, 3)
        image = np.clip(np.asarray(warped, np.float32) + tint, 0, 255).astype(np.uint8)
        path = folder / f"portrait{i:04d}.png"
        Image.fromarray(image).save(path)
        known.add(image, scale * (points - centre) + centre + shift)
        paths.append(path)
    return paths


def driver(folder: Path, seconds: float) -> Path:
    demo = motion.load_motion(demo_motion_path())
    n = max(1, round(seconds * demo.fps))
    looped = demo.looped(n)  # every per-frame track (points, found, gaze, mouth) together
    path = folder / "driver.npz"
    motion.save_motion(looped, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--portraits", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--group", type=int, default=None, help="portraits per forward pass (batch's default)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--landmarks", choices=["auto", "dlib", "known"], default="auto")
    ap.add_argument("--out", type=Path, required=True, help="folder for batch.json and batch_lines.jsonl")
    # the per-frame CPU stages beside the GPU's render: off, they show what they cost a batch
    ap.add_argument("--no-gaze", dest="gaze", action="store_false", help="leave the irises as rendered")
    ap.add_argument("--no-mouth", dest="mouth", action="store_false", help="paint no mouth interior")
    args = ap.parse_args()

    known = KnownFaces()
    landmarks = args.landmarks
    if landmarks == "auto":
        try:
            from animate_portrait.landmarks.dlib_backend import _model_path

            _model_path("shape_predictor_68_face_landmarks.dat")
            landmarks = "dlib"
        except Exception:  # dlib or its model data missing: a bare GPU machine
            landmarks = "known"
    if landmarks == "known":
        if args.jobs > 1:
            sys.exit("--landmarks known works in this process only: use --group, not --jobs")
        pipeline.get_detector = lambda name: known  # what Pipeline.detector builds

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        paths = portraits(work / "in", args.portraits, known)
        drive = driver(work, args.seconds)
        config = RenderConfig(
            engine="neural", size=args.size, device=args.device, audio=False, gaze=args.gaze, mouth=args.mouth
        )
        started = time.perf_counter()
        lines_path = args.out / "batch_lines.jsonl"
        with lines_path.open("w") as lines, contextlib.redirect_stdout(lines):
            failed = run_batch(
                paths,
                drive,
                work / "out",
                config,
                Reporter(quiet=True),
                True,
                jobs=args.jobs,
                group=args.group,
            )
        wall = time.perf_counter() - started
        outputs = sorted((work / "out").glob("*.mp4"))
        sizes = [p.stat().st_size for p in outputs]
    results = [json.loads(line) for line in lines_path.read_text().splitlines() if line.strip()]
    frames = sum(r.get("frames", 0) for r in results)
    import torch

    summary = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor(),
        "torch": torch.__version__,
        "portraits": args.portraits,
        "driver_seconds": args.seconds,
        "driver_frames": frames // max(1, len(results) - failed),
        "group": args.group,
        "jobs": args.jobs,
        "landmarks": landmarks,
        "gaze": args.gaze,
        "mouth": args.mouth,
        "ok": len(results) - failed,
        "failed": failed,
        "wall_seconds": round(wall, 2),
        "frames_written": frames,
        "frames_per_second": round(frames / wall, 1),
        "seconds_per_portrait": round(wall / max(1, args.portraits), 3),
        "mp4_bytes_mean": int(np.mean(sizes)) if sizes else 0,
    }
    (args.out / "batch.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
