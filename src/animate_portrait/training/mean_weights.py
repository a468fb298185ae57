"""The mean of two weights files of one model config (a "model soup", Wortsman et al. 2022): E, G and D.

Session 16's burst with closed-mouth sources gained perceptual distance and lost identity on new people;
the mean of it and the weights it started from kept most of the gain without the loss, and is the fourth
model (docs/RESULTS.md, "Session 16"). `scripts/average_weights.py` is the command line.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from ..weights import load_weights, save_weights

NETS = ("E", "G", "D")


def mean_weights(first: Path, second: Path, out: Path, share: float = 0.5) -> Path:
    """Write `out` (and its card): each float tensor (1 - share) × first's + share × second's. Both files
    are verified (card sha256, shapes) and must have one config. The card is the first file's, with the
    mean added to its `lineage`. Returns the card's path."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in [0, 1], got {share}")
    cfg, nets, card = load_weights(first, parts=NETS)
    other_cfg, other, other_card = load_weights(second, parts=NETS)
    if other_cfg != cfg:
        raise InputError(second, f"another model config than {first}'s: weights of one model only")
    with torch.no_grad():
        for name in NETS:
            theirs = other[name].state_dict()
            for key, mine in nets[name].state_dict().items():
                if mine.is_floating_point():
                    mine.lerp_(theirs[key], share)
    entry = {
        "what": f"the mean of two weights files, the second weighted {share}",
        "first_sha256": card["sha256"],
        "second_sha256": other_card["sha256"],
        "second_steps": other_card.get("steps"),
        "second_training": other_card.get("training"),
    }
    kept = {k: v for k, v in card.items() if k not in ("sha256", "bytes", "file")}
    kept["lineage"] = [*card.get("lineage", []), entry]
    return save_weights(out, nets, cfg, kept)
