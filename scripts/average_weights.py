"""The mean of two weights files of one model config (training/mean_weights.py): E, G and D.

    python scripts/average_weights.py weights/neural.safetensors runs/s16/closed/neural.safetensors \
        --out runs/s16/soup/neural.safetensors

made the fourth model from the third and session 16's `--closed-sources 0.5` burst (docs/RESULTS.md,
"Session 16"). The new card is the first file's, with the mean in its `lineage`; its `evaluation` is the
first file's until measured again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from animate_portrait.training.mean_weights import mean_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--share", type=float, default=0.5, help="the second file's weight in the mean")
    args = ap.parse_args()
    print(mean_weights(args.first, args.second, args.out, args.share))


if __name__ == "__main__":
    main()
