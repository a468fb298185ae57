"""Shipped model weights: one safetensors file (E, G, D in fp16) and a JSON card beside it.

The card (`<name>.json`) holds the model config (so the file rebuilds its own networks), the file's
sha256, training steps, a data summary, licences and the evaluation table. `load_weights` verifies
everything before any tensor reaches a network and raises `InputError` naming the file and the problem:
missing file, missing or unreadable card, checksum mismatch, unreadable tensors, missing keys, or a
tensor whose shape does not match the config.

Spectral norm is folded into the plain weights at export (W/σ), so inference pays nothing for it and the
file holds ordinary conv weights. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import InputError
from .models import Discriminator, Embedder, Generator, ModelConfig

FORMAT = "animate-portrait-neural/1"


def _default_weights() -> Path:
    """weights/ of a checkout (editable install), else the copy installed with the package."""
    checkout = Path(__file__).resolve().parents[2] / "weights" / "neural.safetensors"
    if checkout.is_file():
        return checkout
    return Path(__file__).resolve().parent / "weights_data" / "neural.safetensors"


DEFAULT_WEIGHTS = _default_weights()
_BUILDERS = {"E": Embedder, "G": Generator, "D": Discriminator}


def card_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def settle_spectral_norm(net: nn.Module, iterations: int = 30) -> None:
    """Run power iterations until each spectral-norm σ estimate has converged for the current weights.

    Spectral norm updates its vectors u, v once per forward pass in training mode. A net whose forward
    has not run since its weights were set (D after `init_from`, through a warm-up without the adversarial
    phase) still holds random vectors, and W/σ read with them is off by orders of magnitude (one warm-up
    snapshot's D came out ×20–×4,000 and wrecked fine-tuning). Reading a parametrized weight in training
    mode runs one iteration, which is all this does; on converged vectors it changes nothing.
    """
    was_training = net.training
    net.train()
    with torch.no_grad():
        for m in net.modules():
            if nn.utils.parametrize.is_parametrized(m):
                for pname in m.parametrizations.keys():
                    for _ in range(iterations):
                        getattr(m, pname)
    net.train(was_training)


def plain_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """The net's state dict with spectral norm folded in (parametrized weights become plain ones).

    Computed by reading each parametrized weight in eval mode (W/σ with converged power-iteration
    vectors, see `settle_spectral_norm`), not by `remove_parametrizations` on a deep copy: the copy shares
    its parametrized class with the original, and removing the parametrization there breaks the original.
    """
    settle_spectral_norm(net)
    out = {k: v for k, v in net.state_dict().items() if ".parametrizations." not in k}
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for name, m in net.named_modules():
            if nn.utils.parametrize.is_parametrized(m):
                for pname in m.parametrizations.keys():
                    out[f"{name}.{pname}" if name else pname] = getattr(m, pname).detach().clone()
    net.train(was_training)
    return out


def inference_config(cfg: ModelConfig) -> ModelConfig:
    """The config of the networks as stored: spectral norm already folded."""
    return replace(cfg, g_sn=False, d_sn=False)


def save_weights(
    path: Path, nets: dict[str, nn.Module], cfg: ModelConfig, card: dict | None = None, dtype=torch.float16
) -> Path:
    """Write `path` (safetensors, prefixed keys "E.", "G.", "D.") and its card; returns the card's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    params: dict[str, int] = {}
    for name, net in nets.items():
        sd = plain_state_dict(net)
        params[name] = sum(p.numel() for p in net.parameters())
        for k, v in sd.items():
            v = v.detach()
            tensors[f"{name}.{k}"] = (v.to(dtype) if v.is_floating_point() else v).cpu().contiguous()
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT})
    os.replace(tmp, path)
    full = {
        "format": FORMAT,
        "file": path.name,
        "sha256": sha256(path),
        "bytes": path.stat().st_size,
        "dtype": str(dtype).replace("torch.", ""),
        "nets": sorted(nets),
        "params": params,
        "config": inference_config(cfg).to_dict(),
        "spectral_norm_folded": True,
    }
    full.update(card or {})
    cpath = card_path(path)
    tmpc = cpath.with_name(f".{cpath.name}.tmp")
    tmpc.write_text(json.dumps(full, indent=2) + "\n")
    os.replace(tmpc, cpath)
    return cpath


def read_card(path: Path) -> dict:
    """The verified card of weights file `path` (InputError when missing, unreadable or not matching)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "weights file not found")
    cpath = card_path(path)
    if not cpath.is_file():
        raise InputError(path, f"weights card {cpath.name} not found beside the weights")
    try:
        card = json.loads(cpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(cpath, f"weights card is not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT or "config" not in card:
        raise InputError(cpath, f"not an animate-portrait weights card (expected format {FORMAT})")
    digest = sha256(path)
    if card.get("sha256") != digest:
        raise InputError(path, "weights are corrupt: sha256 does not match the card")
    return card


def load_weights(
    path: Path | None = None, device: str | torch.device = "cpu", parts: tuple[str, ...] = ("E", "G")
) -> tuple[ModelConfig, dict[str, nn.Module], dict]:
    """Verify and load `parts` of a weights file into fresh fp32 networks in eval mode.

    Returns (config, {"E": Embedder, ...}, card). Raises InputError for any problem with the file.
    """
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    card = read_card(path)
    try:
        cfg = ModelConfig.from_dict(card["config"])
    except (TypeError, ValueError) as exc:
        raise InputError(card_path(path), f"bad model config in the card ({exc})") from None
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(path, f"weights are not a readable safetensors file ({exc})") from None
    nets: dict[str, nn.Module] = {}
    for name in parts:
        if name not in _BUILDERS:
            raise ValueError(f"unknown network {name!r}")
        net = _BUILDERS[name](cfg)
        own = net.state_dict()
        prefix = f"{name}."
        sub = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        missing = sorted(set(own) - set(sub))
        if missing:
            raise InputError(
                path, f"weights lack {len(missing)} tensors of {name} (e.g. {prefix}{missing[0]})"
            )
        for k, v in own.items():
            if tuple(sub[k].shape) != tuple(v.shape):
                raise InputError(
                    path,
                    f"tensor {prefix}{k} has shape {tuple(sub[k].shape)}, "
                    f"the config expects {tuple(v.shape)}",
                )
        net.load_state_dict({k: sub[k].to(v.dtype) for k, v in own.items()}, strict=True)
        nets[name] = net.to(device).eval()
    return cfg, nets, card
