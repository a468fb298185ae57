"""What --region, --expression-scale and a video source do, measured by dlib on the outputs.

For a portrait and a driver: each region, and the expression scales asked for, rendered as face crops;
per output, how far the nose tip travels over the frames (px: the head's motion), the widest mouth
opening (over the eye-corner distance) and the output mouth's correlation with the driver's.
With --video: that video dubbed by the driver (expression, then lips only); per output, the mouth's
correlation with the driver's and with the video's own, and the nose's with the video's own.

    python scripts/controls_check.py PORTRAIT DRIVER [--video SOURCE_VIDEO] [--engine warp] \
        [--max-frames 120] [--scales 1.5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from animate_portrait import motion, video
from animate_portrait.pipeline import Pipeline
from animate_portrait.types import REGION_NAMES, RenderConfig
from animate_portrait.video_source import animate_video, source_frames


def track(path: Path, detector, max_frames: int | None = None) -> np.ndarray:
    """(T, 68, 2) dlib landmarks of every frame (the first `max_frames`); NaN where no face is found."""
    out = []
    for frame in video.read_frames(path, max_frames):
        faces = detector.detect(frame)
        out.append(faces[0].points if faces else np.full((68, 2), np.nan, np.float32))
    return np.stack(out)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1]) if ok.sum() > 2 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("portrait", type=Path)
    ap.add_argument("driver", type=Path)
    ap.add_argument("--video", type=Path, help="a talking video to dub with the driver")
    ap.add_argument("--engine", default="warp")
    ap.add_argument("--max-frames", type=int, default=120)
    ap.add_argument("--scales", default="1.5", help="expression scales besides 1, comma-separated")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    base = RenderConfig(engine=args.engine, crop_only=True, max_frames=args.max_frames, overwrite=True)
    pipeline = Pipeline(base)
    detector = pipeline.detector
    driving = pipeline.analyse(args.driver)
    driver_mouth = motion.mouth_opening(track(args.driver, detector, args.max_frames))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        variants = [(region, 1.0) for region in REGION_NAMES]
        variants += [("all", float(s)) for s in args.scales.split(",") if s]
        for region, scale in variants:
            pipeline.config = replace(base, region=region, expression_scale=scale)
            out = Path(tmp) / f"{region}_{scale}.mp4"
            pipeline.animate([args.portrait], driving, out)
            points = track(out, detector)
            mouth = motion.mouth_opening(points)
            rows.append(
                {
                    "output": f"--region {region} --expression-scale {scale:g}",
                    "nose_travel_px": float(
                        np.nanmax(np.nanmax(points[:, 30], 0) - np.nanmin(points[:, 30], 0))
                    ),
                    "mouth_max": float(np.nanmax(mouth)),
                    "mouth_r_driver": corr(mouth, driver_mouth[: len(mouth)]),
                }
            )
        if args.video is not None:
            own = track(args.video, detector, args.max_frames)  # as many as the source's analysis read
            source = pipeline.analyse(args.video)
            for region in ("all", "lips"):
                pipeline.config = replace(base, region=region, crop_only=False)
                out = Path(tmp) / f"video_{region}.mp4"
                started = time.perf_counter()
                animate_video(pipeline, args.video, source, driving, out)
                seconds = time.perf_counter() - started
                points = track(out, detector)
                n = len(points)
                shown = own[source_frames(source, driving, args.max_frames)]  # on the driver's clock
                mouth = motion.mouth_opening(points)
                rows.append(
                    {
                        "output": f"{args.video.name} dubbed, --region {region}",
                        "mouth_r_driver": corr(mouth, driver_mouth[:n]),
                        "mouth_r_own": corr(mouth, motion.mouth_opening(shown)),
                        "driver_r_own": corr(driver_mouth[:n], motion.mouth_opening(shown)),  # by chance
                        "nose_x_r_own": corr(points[:, 30, 0], shown[:, 30, 0]),
                        "render_s_per_frame": seconds / n,
                    }
                )
    for row in rows:
        print(row["output"], {k: round(v, 3) for k, v in row.items() if k != "output"})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
