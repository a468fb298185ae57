"""Make the average resting face that a one-frame driver's expression is measured against
(src/animate_portrait/assets/neutral_face.txt; motion.photo_reference).

Each training clip's own resting face (motion.neutral_reference: mouth closed, eyes as usually open) is
brought into one pose by the similarity of its STABLE points, and the mean is taken (three rounds of
Procrustes averaging). The result is written in eye units: outer eye corners at (-0.5, 0) and (0.5, 0).

    python scripts/neutral_face.py cache/train -o src/animate_portrait/assets/neutral_face.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from animate_portrait import motion


def average_resting_face(clips: list[np.ndarray]) -> np.ndarray:
    resting = [motion.neutral_reference(points) for points in clips]
    mean = resting[0]
    for _ in range(3):
        mean = np.mean([motion.in_pose_of(face, mean) for face in resting], axis=0)
    return in_eye_units(mean)


def in_eye_units(face: np.ndarray) -> np.ndarray:
    z = face[:, 0] + 1j * face[:, 1]
    left, right = z[36], z[45]
    z = (z - (left + right) / 2) / (right - left)
    return np.stack([z.real, z.imag], axis=1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path, help="a `prepare` cache: one .npz of landmarks per clip")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    files = sorted(args.cache.glob("*.npz"))
    clips = [np.load(f, allow_pickle=False)["points"] for f in files]
    face = average_resting_face(clips)
    source = f"average resting face of {len(clips)} training clips (scripts/neutral_face.py)"
    header = f"{source}; x y in eye units"
    np.savetxt(args.output, face, fmt="%.5f", header=header)
    print(f"wrote {args.output} from {len(clips)} clips")


if __name__ == "__main__":
    main()
