"""How close does a photo as the driver come to the same frame inside its own video?

Every STEP-th frame of each clip is taken alone, as a photo. Truth: that frame retargeted onto a
portrait relative to the clip's own resting face (motion.neutral_reference over the whole clip), head
pose aside (region "expression"), as a video driver gives it. Each way of driving with the frame alone is
compared with it: nothing (the frame as its own reference: no motion), motion.photo_reference at several
template shares, and --absolute (its pose removed by a similarity). Errors, in the portrait's
eye-corner distances: RMS over brows, lids and mouth+chin, and the mouth opening's; over all frames and
over the quarter of frames whose expression moved most. Portraits: the resting faces of 5 of the clips
(a clip is never its own portrait).

    python scripts/photo_driver_check.py cache/train          # a `prepare` cache
    python scripts/photo_driver_check.py motions/             # or `animate-portrait motion` files
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from animate_portrait import motion

STEP = 10
EXPRESSION = np.r_[17:27, motion.EYE_REGION, motion.MOUTH_REGION]
SHARES = (0.0, 0.25, 0.5, 1.0)


def errors(est: np.ndarray, truth: np.ndarray, portrait: np.ndarray) -> tuple[float, float]:
    iod = float(np.linalg.norm(portrait[45] - portrait[36]))
    rms = float(np.sqrt(np.mean(np.sum((est[EXPRESSION] - truth[EXPRESSION]) ** 2, -1)))) / iod
    return rms, abs(float(motion.mouth_opening(est) - motion.mouth_opening(truth)))


def ways() -> dict[str, object]:
    out = {"nothing (the frame itself)": lambda f: f}
    for share in SHARES:
        out[f"photo_reference, share {share:g}"] = lambda f, s=share: motion.photo_reference(f, s)
    return out


def measure(clips: list[np.ndarray]) -> dict[str, np.ndarray]:
    resting = [motion.neutral_reference(points) for points in clips]
    portraits = list(range(0, len(clips), max(1, len(clips) // 5)))[:5]
    rows: dict[str, list] = {name: [] for name in [*ways(), "--absolute", "moved"]}
    for c, points in enumerate(clips):
        for p in portraits:
            if p == c:
                continue
            portrait = resting[p]
            for t in range(0, len(points), STEP):
                frame = points[t : t + 1]
                truth = motion.retarget(portrait, frame, reference=resting[c], region="expression")[0]
                rows["moved"].append(errors(portrait, truth, portrait))
                for name, reference in ways().items():
                    est = motion.retarget(portrait, frame, reference=reference(frame[0]), region="expression")
                    rows[name].append(errors(est[0], truth, portrait))
                absolute = motion.in_pose_of(motion.retarget(portrait, frame, relative=False)[0], truth)
                rows["--absolute"].append(errors(absolute, truth, portrait))
    return {name: np.array(r) for name, r in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="landmark .npz files: a `prepare` cache or motion files")
    args = parser.parse_args()
    clips = [np.load(f, allow_pickle=False)["points"] for f in sorted(args.folder.glob("*.npz"))]
    rows = measure(clips)
    moved = rows.pop("moved")[:, 0]
    most = moved > np.quantile(moved, 0.75)
    print(f"{len(clips)} clips, {len(moved)} (frame, portrait) pairs; truth moved {moved.mean():.4f}")
    print("| way | RMS↓ | RMS, most moved↓ | opening error↓ | opening error, most moved↓ |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r[:, 0].mean():.4f} | {r[most, 0].mean():.4f} | {r[:, 1].mean():.4f} | "
              f"{r[most, 1].mean():.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
