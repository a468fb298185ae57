"""The `neural` engine: the trained talking-head model (models/, weights/) behind the Renderer interface.

`prepare` runs once per portrait: the embedder's ê (the mean over the K sources, as in the paper),
ψ̂ = P·ê, and the generator's source features. `render` then only rasterises the target sketches and runs
the per-frame part of G, in batches. The model works at the resolution it was trained at; other crop
sizes are resampled on the way in and out.

Several portraits can share one forward pass (`prepare_group` / `render_group`): their ψ̂ and source
features are stacked along the batch, portrait-major, so a GPU sees batches of P portraits × t frames
instead of one portrait's few frames. Every layer of G works per sample (instance norm, AdaIN,
attention within one image), so a frame comes out the same whichever batch it rode in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.blocks import rasterise_sketch, to_unit
from ..models.generator import SourceState
from ..types import SourceFace
from ..weights import DEFAULT_WEIGHTS, load_weights
from .base import Traced, check_sources, check_targets

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# K > 1: how strongly G's fusion favours the sources whose face shape is closest to each target frame
# (models/generator.py, match_logits); 0 is the meta-trained fusion alone. Chosen among 0, 30, 100, 300 on
# 9 training clips and the 5 usable `wide` clips, never on the evaluation clips (docs/RESULTS.md,
# "Few-shot"): the best perceptual and identity distances that did not cost face SSIM.
SOURCE_MATCH = 100.0
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`; None is plain fp32. `auto`: fp16 on CUDA, where
    the tensor cores double the throughput and the output is 8-bit anyway; fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return _DTYPES.get(precision)


class NeuralRenderer:
    """E + G from a verified weights file, on "cpu" (fp32) or "cuda" (fp16 autocast, channels_last).

    `batch`: images per forward pass (default 8 on a CPU, where bigger batches only spill caches, 128 on
    a GPU). `compile`: run G through torch.compile (minutes of warm-up, then faster kernels on a GPU).
    `match`: with several sources, favour those that look like the target frame (SOURCE_MATCH).
    """

    groups = True  # several portraits per forward pass: prepare_group / render_group (group.py)

    def __init__(
        self,
        size: int,
        device: str = "cpu",
        weights: Path | None = None,
        batch: int | None = None,
        precision: str = "auto",
        channels_last: bool | None = None,
        compile: bool = False,
        match: float = SOURCE_MATCH,
    ) -> None:
        self.size = size
        self.device = torch.device(device)
        self.weights = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        self.cfg, nets, self.card = load_weights(self.weights, self.device, parts=("E", "G"))
        self.E, self.G = nets["E"], nets["G"]
        self.model_size = self.cfg.size
        self.batch = batch if batch is not None else (128 if self.device.type == "cuda" else 8)
        self.dtype = autocast_dtype(precision, self.device)
        self.channels_last = self.device.type == "cuda" if channels_last is None else channels_last
        if self.channels_last:
            # NHWC lets cuDNN use the tensor cores without transposing every conv's input
            self.G.to(memory_format=torch.channels_last)
        self._g = torch.compile(self.G, dynamic=False) if compile else self.G
        self._state: SourceState | None = None
        self._psi: torch.Tensor | None = None
        self._group: tuple[torch.Tensor, SourceState] | None = None  # ψ̂ (P, n) and sources (P, K, …)
        self._expanded: tuple[int, torch.Tensor, SourceState] | None = None  # the group, t frames each
        self.person = None  # a fine-tuned person (training/finetune.py): ψ′ replaces P·ê
        self.match = match

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

    def _encode(self, groups: Sequence[Sequence[SourceFace]]) -> tuple[torch.Tensor, SourceState]:
        """ψ̂ (P, n_psi) and G's source state (P, K, …) for P portraits of K sources each."""
        for sources in groups:
            check_sources(sources, self.size)
        if len({len(sources) for sources in groups}) != 1:
            raise ValueError("portraits rendered together need the same number of sources each")
        s = self.model_size
        p, k = len(groups), len(groups[0])
        faces = np.stack([src.face for sources in groups for src in sources])
        x = self._to_model(faces).unflatten(0, (p, k))  # (P, K, 3, S, S)
        pts = self._points(np.stack([src.points for sources in groups for src in sources]))
        y = rasterise_sketch(pts, s).unflatten(0, (p, k))
        pts = pts.unflatten(0, (p, k))
        psi = self.G.psi(self.E(x, y))  # ψ̂ = P·ê, ê the mean of E over each portrait's K sources
        return psi, self.G.encode_sources(x, y, to_unit(pts, s))

    @torch.inference_mode()
    def prepare(self, sources: Sequence[SourceFace]) -> None:
        self._psi, self._state = self._encode([sources])
        if self.person is not None:
            self._psi = self.person.psi.to(self.device, self._psi.dtype)  # ψ′, fine-tuned (paper §3.3)

    @torch.inference_mode()
    def prepare_group(self, groups: Sequence[Sequence[SourceFace]]) -> None:
        """Several portraits (each its K sources) for `render_group`."""
        if self.person is not None:
            raise ValueError("a fine-tuned person renders alone, not in a group")
        self._group = self._encode(groups)
        self._expanded = None

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        )

    def _forward(self, pts: torch.Tensor, psi: torch.Tensor, state: SourceState) -> Traced:
        """G's per-frame part for (N, 68, 2) model-pixel targets → (N, size, size, 3) uint8 crops, and
        where G read the lead (first) source: its refined flow, (N, S/4, S/4, 2) in the lead's crop."""
        s = self.model_size
        y = rasterise_sketch(pts, s)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out, aux = self._g(y, to_unit(pts, s), psi, state, self.match)
        out = out.float()
        if self.size != s:
            out = F.interpolate(out, size=(self.size, self.size), mode="bilinear", antialias=True)
        img = ((out + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        lead = aux["grid"].unflatten(0, (len(pts), -1))[:, 0]  # (N·K, …) grids, the lead's first
        return Traced(img.permute(0, 2, 3, 1).cpu().numpy(), lead.float().cpu().numpy())

    def render(self, targets: np.ndarray) -> np.ndarray:
        return self.render_traced(targets).frames

    @torch.inference_mode()
    def render_traced(self, targets: np.ndarray) -> Traced:
        """The crops and (B, S/4, S/4, 2) grids: G's own flow for the lead, from the same pass (detail.py)."""
        if self._state is None or self._psi is None:
            raise RuntimeError("call prepare() before render()")
        targets = check_targets(targets)
        passes = [
            self._forward(self._points(targets[i : i + self.batch]), self._psi, self._state)
            for i in range(0, len(targets), self.batch)
        ]
        if not passes:
            return self._none(0)
        return Traced(*(np.concatenate(part) for part in zip(*passes, strict=True)))

    def _none(self, *lead: int) -> Traced:
        """No frames: empty crops and grids of the right shapes, `lead` their leading dimensions."""
        q = self.model_size // 4
        crops = np.zeros((*lead, self.size, self.size, 3), np.uint8)
        return Traced(crops, np.zeros((*lead, q, q, 2), np.float32))

    def _group_passes(self, targets: np.ndarray):
        """The forward passes of `render_group`: (first frame i, frames t, model-pixel targets of P × t, the
        group's ψ̂ and sources repeated t times each)."""
        if self._group is None:
            raise RuntimeError("call prepare_group() before render_group()")
        p = self._group[0].shape[0]
        targets = np.asarray(targets, np.float32)
        if targets.ndim != 4 or targets.shape[0] != p:
            raise ValueError(f"expected ({p}, T, 68, 2) target landmarks, got {targets.shape}")
        step = max(1, self.batch // p)
        for i in range(0, targets.shape[1], step):
            chunk = check_targets(targets[:, i : i + step].reshape(-1, *targets.shape[2:]))
            t = chunk.shape[0] // p
            yield (i, t, self._points(chunk), *self._repeat(t))

    def render_group(self, targets: np.ndarray) -> np.ndarray:
        """(P, T, 68, 2) targets, each portrait's own → (P, T, size, size, 3) uint8 crops.

        One forward pass takes t = batch // P frames of every portrait (at least one each)."""
        return self.render_group_traced(targets).frames

    @torch.inference_mode()
    def render_group_traced(self, targets: np.ndarray) -> Traced:
        """`render_group`'s crops and where each read its portrait: (P, T, S/4, S/4, 2)."""
        p = len(targets)
        passes = [
            self._forward(pts, psi_t, state_t) for _, _, pts, psi_t, state_t in self._group_passes(targets)
        ]
        if not passes:
            return self._none(p, 0)
        return Traced(
            *(
                np.concatenate([x.reshape(p, -1, *x.shape[1:]) for x in part], axis=1)
                for part in zip(*passes, strict=True)
            )
        )

    def _repeat(self, t: int) -> tuple[torch.Tensor, SourceState]:
        """The group's ψ̂ and sources, each portrait's repeated for its t frames (kept for the next chunk)."""
        if self._expanded is None or self._expanded[0] != t:
            assert self._group is not None
            psi, st = self._group

            def rep(x: torch.Tensor) -> torch.Tensor:
                return x.repeat_interleave(t, dim=0)

            state = SourceState(
                rep(st.img), rep(st.img_q), rep(st.sketch_q), [rep(f) for f in st.feats], rep(st.points)
            )
            self._expanded = (t, rep(psi), state)
        return self._expanded[1], self._expanded[2]
