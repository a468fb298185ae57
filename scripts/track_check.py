"""How far the frame-to-frame tracker (landmarks.track) drifts from a full detection on every frame.

For each clip: track it as `animate`/`prepare`/`evaluate` do, and run dlib's full detection on every
frame. Where detection finds a face, the tracked points' mean distance from the detected ones, in units
of the detected face's size (its tight box diagonal), is the drift. Prints per clip and overall: mean
drift, 95th percentile, and the share of frames over 0.05 and 0.1 (a tenth of the face: visibly wrong).
Also how far the head travels: the tracked centre of the stable points (nose, eye corners) from its place
in the first frame, in face widths (jaw end to jaw end in the first frame). Relative motion carries that
translation over to the portrait, inside its fixed crop box.

    python scripts/track_check.py CLIP... [--max-frames 150] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from animate_portrait import landmarks, video
from animate_portrait.motion import STABLE


def drift(clip: Path, detector: object, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(drift per frame with a detected face, head travel per tracked frame)."""
    frames = list(video.read_frames(clip, max_frames))
    tracked = landmarks.track(frames, detector)
    out = []
    for i, frame in enumerate(frames):
        faces = detector.detect(frame)
        if not faces or not tracked.found[i]:
            continue
        ref = faces[0]
        out.append(float(np.linalg.norm(tracked.points[i] - ref.points, axis=1).mean() / ref.size))
    pts = tracked.points[tracked.found]
    if len(pts) == 0:
        return np.asarray(out), np.zeros(0)
    centre = pts[:, STABLE].mean(1)
    travel = np.linalg.norm(centre - centre[0], axis=1) / np.linalg.norm(pts[0, 16] - pts[0, 0])
    return np.asarray(out), travel


def summary(d: np.ndarray, travel: np.ndarray) -> dict:
    return {
        "frames": len(d),
        "mean": float(d.mean()),
        "p95": float(np.percentile(d, 95)),
        "over_0.05": float((d > 0.05).mean()),
        "over_0.1": float((d > 0.1).mean()),
        "travel_p50": float(np.median(travel)),
        "travel_max": float(travel.max()),
        "travel_over_0.4": float((travel > 0.4).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clips", nargs="+", type=Path)
    ap.add_argument("--max-frames", type=int, default=150)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    det = landmarks.get_detector("dlib")
    rows, every, travels = {}, [], []
    for clip in a.clips:
        d, travel = drift(clip, det, a.max_frames)
        if len(d) == 0:
            print(f"{clip.name}: no face")
            continue
        every.append(d)
        travels.append(travel)
        rows[clip.name] = r = summary(d, travel)
        print(f"{clip.name:60s} {r['frames']:4d} mean {r['mean']:.4f} p95 {r['p95']:.4f} "
              f">0.05 {r['over_0.05']:.3f} >0.1 {r['over_0.1']:.3f} "
              f"travel max {r['travel_max']:.2f}", flush=True)  # fmt: skip
    total = summary(np.concatenate(every), np.concatenate(travels))
    print("all", json.dumps(total))
    if a.json:
        a.json.write_text(json.dumps({"clips": rows, "all": total}, indent=1))


if __name__ == "__main__":
    main()
