"""The `warp` engine: a thin-plate-spline warp of the portrait's face from its landmarks to the targets.

No learned weights: it moves the pixels the source already has, so it opens a mouth by stretching
lips and whatever lies between them (no new teeth or mouth interior). That is the baseline the
neural generator has to beat.

The warp is a backward map, as grid sampling needs: for each output pixel, where in the source to
read. So the spline is fitted from the *target* points to the *source* points (Bookstein 1989), plus
fixed anchors on the crop border that map to themselves, so the background and the crop's edges stay
put and the spline cannot swing the corners around.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..types import SourceFace
from .base import Traced, check_sources, check_targets

# Bending regulariser added to the kernel's diagonal. It leaves an exact fit where the points agree
# and keeps the system solvable where two targets coincide with different sources (lips pressed
# shut over an open source mouth), averaging them instead of blowing up.
REGULARISER = 1e-3


def border_anchors(per_side: int = 5) -> torch.Tensor:
    """(4·(per_side-1), 2) points evenly spaced on the crop's outer edge, in normalised coordinates."""
    t = torch.linspace(-1.0, 1.0, per_side)[:-1]  # each side without its last corner
    one = torch.ones_like(t)
    sides = [torch.stack(s, dim=1) for s in ((t, -one), (one, t), (-t, one), (-one, -t))]
    return torch.cat(sides)


def _kernel(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """TPS radial basis U(r) = r² log r between (B, M, 2) points and (B, N, 2) centres -> (B, M, N)."""
    d2 = torch.cdist(points, centres).square()
    return 0.5 * d2 * torch.log(d2.clamp_min(1e-30))  # 0.5 r² log r² = r² log r, and 0 at r = 0


def fit_tps(
    centres: torch.Tensor, values: torch.Tensor, regulariser: float = REGULARISER
) -> tuple[torch.Tensor, torch.Tensor]:
    """Thin-plate spline f with f(centres_i) ≈ values_i: kernel (B, N, 2) and affine (B, 3, 2) weights
    in kornia's layout (f(p) = a_0 + [x y]·A + Σ_j w_j U(|p - c_j|), as `warp_points_tps` evaluates).

    Solved here rather than with kornia's `get_tps_transform`: that one centres the kernels on one
    point set while interpolating at the other, and has no regulariser, so coincident control points
    (closed lips) make it singular. This is the textbook system [[K + λI, P], [Pᵀ, 0]].
    """
    b, n, _ = centres.shape
    c = centres.double()
    k = _kernel(c, c) + regulariser * torch.eye(n, dtype=c.dtype, device=c.device)
    p = torch.cat([torch.ones(b, n, 1, dtype=c.dtype, device=c.device), c], dim=2)
    top = torch.cat([k, p], dim=2)
    bottom = torch.cat([p.transpose(1, 2), torch.zeros(b, 3, 3, dtype=c.dtype, device=c.device)], dim=2)
    rhs = torch.cat([values.double(), torch.zeros(b, 3, 2, dtype=c.dtype, device=c.device)], dim=1)
    weights = torch.linalg.solve(torch.cat([top, bottom], dim=1), rhs).to(centres.dtype)
    return weights[:, :n], weights[:, n:]


def eval_tps(
    points: torch.Tensor, centres: torch.Tensor, kernel: torch.Tensor, affine: torch.Tensor
) -> torch.Tensor:
    """f(points) for the spline from fit_tps. Same result as kornia's `warp_points_tps`, which
    broadcasts a (B, M, N, 2) product; one matmul here is 2-3x faster on a CPU for our 4096 x 84."""
    return _kernel(points, centres) @ kernel + affine[:, :1] + points @ affine[:, 1:]


class WarpRenderer:
    """Thin-plate-spline warp of the first source's crop (K-shot: the first source only; picking the
    closest source per frame would flicker between photos that differ in light and background)."""

    def __init__(self, size: int, device: str = "cpu", grid: int = 64) -> None:
        self.size = size
        self.device = torch.device(device)
        # The spline is evaluated on a coarse grid×grid lattice and the sampling grid upsampled
        # bilinearly: evaluating it per pixel costs 84 kernels per pixel (~145 ms for 256² on one CPU
        # thread, 4x that at 512²; ~6 ms this way), and the warp is smooth enough that the output
        # differs by < 0.05 grey levels on average.
        self.grid = min(grid, size)
        self.anchors = border_anchors().to(self.device)
        self._face: torch.Tensor | None = None
        self._points: torch.Tensor | None = None

    def _normalise(self, points: np.ndarray) -> torch.Tensor:
        """Crop pixels (pixel centres at integers) -> grid_sample's [-1, 1] with align_corners=False."""
        p = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        return (2 * p + 1) / self.size - 1

    def prepare(self, sources: Sequence[SourceFace]) -> None:
        check_sources(sources, self.size)
        lead = sources[0]
        face = torch.tensor(lead.face, device=self.device)  # a copy: source crops may be read-only
        self._face = face.permute(2, 0, 1)[None].float()
        self._points = torch.cat([self._normalise(lead.points), self.anchors])

    def render(self, targets: np.ndarray) -> np.ndarray:
        return self._render(targets, traced=False).frames

    def render_traced(self, targets: np.ndarray) -> Traced:
        """The crops and their splines, (B, size, size, 2): where each output pixel read the source."""
        return self._render(targets, traced=True)

    @torch.inference_mode()
    def _render(self, targets: np.ndarray, traced: bool) -> Traced:
        frames, grids = [], []
        for sampling in self._grids(targets):
            frames.append(self._sample(sampling))
            grids += [sampling] if traced else []
        # Contiguous (B, H, W, 3): a permuted view would reach dlib, PIL and ffmpeg with strides they
        # ignore (dlib then reads scrambled pixels).
        crops = torch.cat(frames).permute(0, 2, 3, 1).contiguous().cpu().numpy()
        return Traced(crops, torch.cat(grids).cpu().numpy() if traced else None)

    def _grids(self, targets: np.ndarray) -> Iterator[torch.Tensor]:
        """The splines fitted at `targets`, as (n, size, size, 2) grid_sample coordinates, n frames at a
        time."""
        if self._face is None or self._points is None:
            raise RuntimeError("call prepare() before render()")
        targets = check_targets(targets)
        b = len(targets)
        dst = torch.cat([self._normalise(targets), self.anchors.expand(b, -1, -1)], dim=1)
        kernel, affine = fit_tps(dst, self._points.expand(b, -1, -1))  # backward: target -> source
        # On a CPU, one frame at a time: a frame's (4096, 84) kernel matrix stays in cache, while a
        # batch's spills it and ran 4x slower per frame. A GPU wants the whole batch at once.
        step = b if self.device.type == "cuda" else 1
        for i in range(0, b, step):
            yield self._sampling(dst[i : i + step], kernel[i : i + step], affine[i : i + step])

    def _sampling(self, dst: torch.Tensor, kernel: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
        """(n, size, size, 2): the splines fitted at `dst`, on every output pixel."""
        n = len(dst)
        # Coarse lattice spanning the first to the last pixel centre, so that align_corners=True
        # upsampling puts its samples exactly on the output's pixel centres.
        edge = 1 - 1 / self.size
        axis = torch.linspace(-edge, edge, self.grid, device=self.device)
        ys, xs = torch.meshgrid(axis, axis, indexing="ij")
        lattice = torch.stack([xs, ys], dim=-1).reshape(1, -1, 2).expand(n, -1, -1)
        coarse = eval_tps(lattice, dst, kernel, affine).reshape(n, self.grid, self.grid, 2)
        return F.interpolate(
            coarse.permute(0, 3, 1, 2), size=(self.size, self.size), mode="bilinear", align_corners=True
        ).permute(0, 2, 3, 1)

    def _sample(self, sampling: torch.Tensor) -> torch.Tensor:
        """(n, 3, size, size) uint8: the source face read at (n, size, size, 2) `sampling`."""
        face = self._face.expand(len(sampling), -1, -1, -1)
        out = F.grid_sample(face, sampling, mode="bilinear", padding_mode="border", align_corners=False)
        return out.round().clamp(0, 255).to(torch.uint8)
