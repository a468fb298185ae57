"""Person files: one person's fine-tuned parameters (training/finetune.py), as safetensors plus a JSON card.

The card holds the weights' sha256 the person was tuned from, the sources' sha256s, steps and settings;
`load_person` checks it, and the tensor shapes, against the loaded generator. Never pickles.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import InputError
from ..models import Generator
from ..weights import sha256

FORMAT = "animate-portrait-person/1"


@dataclass
class Person:
    """One person's tuned parameters: ψ′ (1, n_psi), G tensors by state-dict name, w′ (emb_dim,)."""

    psi: torch.Tensor
    g: dict[str, torch.Tensor]
    w: torch.Tensor
    card: dict = field(default_factory=dict)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"psi": self.psi, "w": self.w, **{f"G.{k}": v for k, v in self.g.items()}}
        return {k: v.detach().float().cpu().contiguous() for k, v in out.items()}


def card_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def save_person(path: Path, person: Person) -> Path:
    """Write `path` (safetensors) and its card atomically; returns the card's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(person.tensors(), str(tmp), metadata={"format": FORMAT})
    os.replace(tmp, path)
    card = {"format": FORMAT, "file": path.name, "sha256": sha256(path), **person.card}
    cpath = card_path(path)
    tmpc = cpath.with_name(f".{cpath.name}.tmp")
    tmpc.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmpc, cpath)
    return cpath


def load_person(path: Path, G: Generator, weights_sha256: str) -> Person:
    """Read and verify a person file against the loaded weights (sha256) and G's shapes (InputError)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "person file not found")
    cpath = card_path(path)
    try:
        card = json.loads(cpath.read_text())
    except FileNotFoundError:
        raise InputError(path, f"person card {cpath.name} not found beside the file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(cpath, f"person card is not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise InputError(cpath, f"not an animate-portrait person card (expected format {FORMAT})")
    if card.get("sha256") != sha256(path):
        raise InputError(path, "person file is corrupt: sha256 does not match its card")
    tuned_from = str(card.get("weights_sha256", ""))
    if tuned_from != weights_sha256:
        raise InputError(
            path,
            f"tuned from weights {tuned_from[:12] or '?'}…, but the loaded weights are "
            f"{weights_sha256[:12]}…; fine-tune again with these weights",
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(path, f"not a readable safetensors file ({exc})") from None
    own = G.state_dict()
    n_psi = G.P.out_features
    if "psi" not in tensors or tuple(tensors["psi"].shape) != (1, n_psi):
        got = tuple(tensors["psi"].shape) if "psi" in tensors else "none"
        raise InputError(path, f"ψ′ has shape {got}, the loaded generator expects (1, {n_psi})")
    g = {}
    for key, v in tensors.items():
        if not key.startswith("G."):
            continue
        name = key[2:]
        if name not in own or tuple(own[name].shape) != tuple(v.shape):
            want = tuple(own[name].shape) if name in own else "no such tensor"
            raise InputError(path, f"tensor {key} has shape {tuple(v.shape)}, the loaded generator: {want}")
        g[name] = v
    w = tensors.get("w", torch.zeros(0))
    return Person(psi=tensors["psi"], g=g, w=w, card=card)
