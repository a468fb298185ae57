"""Does the full-resolution detail (detail.py) bring the pasted-back face closer to the real frames?

`evaluate` compares 256² crops, where the detail cannot show. This is self-reenactment at the clip's own
resolution: the clip's first frame is the portrait (the whole frame), its later frames drive it, and each
output frame is compared with the real one in the real face's crop box, in picture pixels, with the
detail on and off:

    psnr, ssim    in that box, at full resolution
    perceptual    the LPIPS-style distance (metrics.perceptual) on the box at full resolution
    sharpness     the mean absolute Laplacian in the box, as a share of the real frame's (1: as sharp)

Only clips whose face crop is at least detail.MIN_GAIN × the working size take part (else there is
nothing to restore). Every 3rd frame after the first 8, at most 20 a clip, as `evaluate`'s protocol:

    python scripts/detail_check.py CLIP... --engines warp,neural --json OUT
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from animate_portrait import detail, face, metrics, video
from animate_portrait.models.perceptual import find_mobilenet, load_mobilenet
from animate_portrait.pipeline import Pipeline
from animate_portrait.types import Crop, Landmarks, RenderConfig

START, STEP, MAX_FRAMES = 8, 3, 20


def laplacian(image: np.ndarray) -> float:
    grey = image.astype(np.float64).mean(-1)
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(np.abs(lap).mean())


def box_of(points: np.ndarray, size: int) -> Crop:
    """The real face's crop box at about one crop pixel per picture pixel (cut alike from the output and
    the real frame)."""
    crop = face.crop_for(Landmarks(points), size)
    return Crop(center=crop.center, side=crop.side, size=round(crop.side))


def check_clip(clip: Path, engine: str, net, size: int = 256) -> dict | None:
    """Mean scores over the picked frames of one clip, with the detail on and off; None: not a candidate."""
    frames = list(video.read_frames(clip))
    pipeline = Pipeline(RenderConfig(engine=engine, device="cpu", size=size))
    driving = pipeline.analyse(clip)
    first = pipeline.detector.detect(frames[0])
    if not first:
        return None
    lead = pipeline.source_from(clip, frames[0], first[0])
    if not detail.worth_it(lead):
        return None
    picked = [t for t in range(START, len(frames), STEP) if driving.found[t]][:MAX_FRAMES]
    scores = {}
    for on in (True, False):
        pipeline.config = replace(pipeline.config, detail=on, max_frames=picked[-1] + 1)
        seen: dict[str, list[float]] = {k: [] for k in ("psnr", "ssim", "perceptual", "sharpness")}
        for t, rendered in enumerate(pipeline.render_frames([lead], driving)):
            if t not in picked:
                continue
            box = box_of(driving.points[t], size)
            out, real = face.extract(rendered, box), face.extract(frames[t], box)
            seen["psnr"].append(metrics.psnr(out, real))
            seen["ssim"].append(metrics.ssim(out, real))
            seen["perceptual"].append(metrics.perceptual(out, real, net))
            seen["sharpness"].append(laplacian(out) / max(laplacian(real), 1e-6))
        scores["detail" if on else "plain"] = {k: float(np.mean(v)) for k, v in seen.items()}
    return {"frames": len(picked), "side": round(lead.crop.side), **scores}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clips", nargs="+", type=Path)
    ap.add_argument("--engines", default="warp,neural")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    net = load_mobilenet(find_mobilenet(None), "cpu")
    results: dict[str, dict] = {}
    for engine in args.engines.split(","):
        for clip in args.clips:
            got = check_clip(clip, engine, net)
            if got is None:
                print(
                    f"{engine:7s} {clip.name}: skipped (no face in frame 0, or a face under "
                    f"{detail.MIN_GAIN} × 256 px)"
                )
                continue
            results.setdefault(engine, {})[clip.name] = got
            d, p = got["detail"], got["plain"]
            print(
                f"{engine:7s} {clip.name} ({got['side']} px, {got['frames']} frames): "
                + "  ".join(f"{k} {p[k]:.4f} -> {d[k]:.4f}" for k in d)
            )
        clips = list(results.get(engine, {}).values())
        if clips:
            keys = clips[0]["detail"]
            mean = {
                v: {k: float(np.mean([c[v][k] for c in clips])) for k in keys} for v in ("plain", "detail")
            }
            change = "  ".join(f"{k} {mean['plain'][k]:.4f} -> {mean['detail'][k]:.4f}" for k in keys)
            print(f"{engine:7s} MEAN over {len(clips)} clips: {change}")
            results[engine]["mean"] = {"clips": len(clips), **mean}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, allow_nan=True))


if __name__ == "__main__":
    main()
