"""Full-resolution detail for a face pasted back into a big picture.

Every engine renders the face at the working size (256²), so in a big picture the pasted face is
upsampled (3× for a face crop 768 px across) and looks soft beside its sharp surroundings. Yet most of
a rendered face is the portrait's own pixels, moved, and the engine says where it read them
(`Renderer.render_traced`): the same flow moves the picture's own pixels. What the working size lost
(those moved pixels less the working-size crop moved alike, upsampled) is added to the upsampled render
wherever the render agrees with that working-size warp. Where the engine drew something else (the
painted or generated mouth interior, irises moved by the gaze, the neural decoder's own strokes) the two
disagree, the gate closes, and the face stays as rendered.

The full-resolution crop is the picture's pixel box around the face, unresampled, so that pasting it
back is a copy: a crop at fractional picture coordinates would be resampled twice, on the way in and
out, and lose at each the very detail this restores.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from . import face
from .models.blocks import identity_grid, resize_grid
from .types import Crop, SourceFace

# Detail is restored up to this many pixels across the face (4× the working size); a bigger face is
# taken at this size, and paste-back upsamples the rest: past it, the cost per frame grows with the square.
MAX_SIDE = 1024
# Below this much upsampling a face loses too little to be worth it.
MIN_GAIN = 1.25
# The gate, on the mean absolute difference (grey levels) between the render and the warped working-size
# crop, after a 3×3 maximum: full detail up to AGREE, none from DISAGREE on.
AGREE, DISAGREE = 4.0, 12.0


def worth_it(source: SourceFace) -> bool:
    """Whether the picture holds the face at MIN_GAIN × the working size or more."""
    return source.crop.side >= MIN_GAIN * source.crop.size


def full_crop(crop: Crop, max_side: int = MAX_SIDE) -> Crop:
    """The picture's whole-pixel box around `crop`, at one crop pixel per picture pixel (face.extract and
    face.paste_back then copy it); past `max_side`, `crop` itself at that size."""
    if crop.side > max_side:
        return Crop(center=crop.center, side=crop.side, size=max_side)
    side = math.ceil(crop.side) + 1
    x0, y0 = (math.floor(v) for v in crop.origin)
    return Crop(center=(x0 + side / 2, y0 + side / 2), side=side, size=side)


def _normalised(crop: Crop) -> tuple[float, np.ndarray]:
    """(a, b): a picture point's grid_sample coordinate (align_corners=False) in `crop` is a·p + b."""
    a = 2 / crop.side
    return a, 1 / crop.size - 1 - a * np.asarray(crop.origin, np.float64)


class Detail:
    """One source face's full-resolution pixels, to restore its renders' detail.

    `crop` is their box in the picture: paste `restore`'s faces back with it (face.paste_back)."""

    def __init__(self, source: SourceFace, device: str = "cpu", max_side: int = MAX_SIDE) -> None:
        self.crop = full_crop(source.crop, max_side)
        self.device = torch.device(device)

        def tensor(image: np.ndarray) -> torch.Tensor:
            return torch.tensor(image, device=self.device).permute(2, 0, 1)[None].float()

        self._full = tensor(face.extract(source.image, self.crop))
        self._face = tensor(source.face)
        # Where the full crop's pixel centres lie in the working-size crop's grid_sample coordinates.
        a_full, b_full = _normalised(self.crop)
        a, b = _normalised(source.crop)
        scale, shift = a / a_full, b - a / a_full * b_full
        full_grid = identity_grid(self.crop.size).double()
        self._at = (full_grid * scale + torch.from_numpy(shift)).float().to(self.device)
        self._full_grid = full_grid.float().to(self.device)  # the same pixels in the full crop's coordinates
        self._to_full = 1 / scale  # a working-size displacement in the full crop's coordinates

    def restore(self, rendered: np.ndarray, grids: np.ndarray) -> np.ndarray:
        """(B, size, size, 3) renders and their (B, g, g, 2) sampling grids (`Renderer.render_traced`) →
        (B, side, side, 3) uint8, frame by frame (at 1024² a batch would hold hundreds of MB)."""
        return np.stack([self._one(crop, grid) for crop, grid in zip(rendered, grids, strict=True)])

    @torch.inference_mode()
    def _one(self, rendered: np.ndarray, grid: np.ndarray) -> np.ndarray:
        size = self._face.shape[-1]
        grid = resize_grid(torch.as_tensor(grid, device=self.device)[None].float(), size)
        flow = (grid - identity_grid(size, self.device)).permute(0, 3, 1, 2)
        low = (
            torch.as_tensor(np.ascontiguousarray(rendered), device=self.device).permute(2, 0, 1)[None].float()
        )
        moved_low = sample(self._face, grid)  # the working-size crop, moved as the engine moved it
        differ = F.max_pool2d((low - moved_low).abs().mean(1, keepdim=True), 3, stride=1, padding=1)
        gate = ((DISAGREE - differ) / (DISAGREE - AGREE)).clamp(0, 1)
        # The render less the gated working-size warp, the gate and the flow, read at the full crop's pixels
        # in one pass; the gated full-resolution warp then takes the place of the working-size one (where
        # the gate is open and the two agree, the output is the moved picture pixels exactly).
        up = sample(torch.cat([low - gate * moved_low, gate, flow], 1), self._at)
        # where each full pixel reads the source; then in place, as a 1024² frame is large
        source_at = up[:, 4:6].permute(0, 2, 3, 1).mul(self._to_full).add_(self._full_grid)
        out = sample(self._full, source_at).mul_(up[:, 3:4]).add_(up[:, :3])
        return out[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


def sample(image: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """`image` (1, C, H, W) read bilinearly at grid_sample coordinates `at` (1, h, w, 2)."""
    return F.grid_sample(image, at, mode="bilinear", padding_mode="border", align_corners=False)
