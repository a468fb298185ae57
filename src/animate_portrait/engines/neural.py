"""The `neural` engine: the trained talking-head model (models/, weights/) behind the Renderer interface.

`prepare` runs once per portrait: the embedder's ê (the mean over the K sources, as in the paper),
ψ̂ = P·ê, and the generator's source features. `render` then only rasterises the target sketches and runs
the per-frame part of G, in batches. The model works at the resolution it was trained at; other crop
sizes are resampled on the way in and out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.blocks import rasterise_sketch, to_unit
from ..types import SourceFace
from ..weights import DEFAULT_WEIGHTS, load_weights
from .base import check_sources, check_targets


class NeuralRenderer:
    """E + G from a verified weights file, on "cpu" (fp32) or "cuda" (fp16 autocast)."""

    def __init__(self, size: int, device: str = "cpu", weights: Path | None = None, batch: int = 8) -> None:
        self.size = size
        self.device = torch.device(device)
        self.weights = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        self.cfg, nets, self.card = load_weights(self.weights, self.device, parts=("E", "G"))
        self.E, self.G = nets["E"], nets["G"]
        self.model_size = self.cfg.size
        self.batch = batch
        self._state = None
        self._psi: torch.Tensor | None = None
        self.person = None  # a fine-tuned person (training/finetune.py): ψ′ replaces P·ê

    def use_person(self, person) -> None:
        """Render with a fine-tuned person: its G tensors go into G, its ψ′ replaces ψ̂ = P·ê."""
        with torch.no_grad():
            own = self.G.state_dict()
            for name, value in person.g.items():
                own[name].copy_(value.to(own[name].dtype))
        self.person = person

    def _to_model(self, images: np.ndarray) -> torch.Tensor:
        """(N, size, size, 3) uint8 → (N, 3, S, S) float in [-1, 1] at the model's size."""
        x = torch.as_tensor(np.ascontiguousarray(images), device=self.device).permute(0, 3, 1, 2).float()
        x = x / 127.5 - 1
        if self.size != self.model_size:
            x = F.interpolate(x, size=(self.model_size, self.model_size), mode="bilinear", antialias=True)
        return x

    def _points(self, points: np.ndarray) -> torch.Tensor:
        """Crop pixels at `size` → crop pixels at the model's size (pixel centres stay centres)."""
        p = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        return (p + 0.5) * (self.model_size / self.size) - 0.5

    @torch.inference_mode()
    def prepare(self, sources: Sequence[SourceFace]) -> None:
        check_sources(sources, self.size)
        s = self.model_size
        x = self._to_model(np.stack([src.face for src in sources]))[None]  # (1, K, 3, S, S)
        pts = self._points(np.stack([src.points for src in sources]))[None]  # (1, K, 68, 2)
        y = rasterise_sketch(pts[0], s)[None]
        e_hat = self.E(x, y)  # ê: mean of E over the K sources
        self._psi = self.G.psi(e_hat)  # ψ̂ = P·ê
        if self.person is not None:
            self._psi = self.person.psi.to(self.device, self._psi.dtype)  # ψ′, fine-tuned (paper §3.3)
        self._state = self.G.encode_sources(x, y, to_unit(pts, s))

    @torch.inference_mode()
    def render(self, targets: np.ndarray) -> np.ndarray:
        if self._state is None or self._psi is None:
            raise RuntimeError("call prepare() before render()")
        targets = check_targets(targets)
        s = self.model_size
        outs = []
        for i in range(0, len(targets), self.batch):
            pts = self._points(targets[i : i + self.batch])
            y = rasterise_sketch(pts, s)
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
                out, _ = self.G(y, to_unit(pts, s), self._psi, self._state)
            out = out.float()
            if self.size != s:
                out = F.interpolate(out, size=(self.size, self.size), mode="bilinear", antialias=True)
            img = ((out + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            outs.append(img.permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.size, self.size, 3), np.uint8)
