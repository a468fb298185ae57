"""The mean of two weights files of one model config (a "model soup", Wortsman et al. 2022): E, G and D.

    python scripts/average_weights.py weights/neural.safetensors runs/s16/closed/neural.safetensors \
        --out runs/s16/soup/neural.safetensors

Session 16's burst (`--closed-sources 0.5`, 2,020 steps from the shipped weights) drew the mouth's inside
and gained perceptual distance, but lost identity on new people; the mean of it and its starting point kept
most of the gain without the loss (docs/RESULTS.md, "Session 16"). Both files are verified (card
sha256, shapes) before use. The new card is the first file's, with the mean recorded in its `lineage`
(its `evaluation` is the first file's until measured again).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from animate_portrait.weights import load_weights, save_weights

NETS = ("E", "G", "D")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--share", type=float, default=0.5, help="the second file's weight in the mean")
    args = ap.parse_args()

    cfg, nets, card = load_weights(args.first, parts=NETS)
    cfg2, other, card2 = load_weights(args.second, parts=NETS)
    if cfg != cfg2:
        raise SystemExit(f"{args.second}: another model config than {args.first}'s")
    with torch.no_grad():
        for name in NETS:
            theirs = other[name].state_dict()
            for key, mine in nets[name].state_dict().items():
                if mine.is_floating_point():
                    mine.lerp_(theirs[key], args.share)
    entry = {
        "what": f"the mean of two weights files, the second weighted {args.share}",
        "first_sha256": card["sha256"],
        "second_sha256": card2["sha256"],
        "second_training": card2.get("training"),
        "second_steps": card2.get("steps"),
        "command": f"python scripts/average_weights.py <first> <second> --out <out> --share {args.share}",
    }
    keep = {k: v for k, v in card.items() if k not in ("sha256", "bytes", "file")}
    keep["lineage"] = [*card.get("lineage", []), entry]
    print(save_weights(args.out, nets, cfg, keep))


if __name__ == "__main__":
    main()
