"""Meta-learning episodes from the prepared cache, built on the training device.

The whole cache is decoded once into one uint8 tensor (`FrameBank`; ~3.5 GB at 256² for the 84 training
clips: fine in a GPU's memory, and it removes every per-step decode and host→device copy). An episode
(the paper's meta-learning step) is one clip: K source frames and a target frame of the same person.
`EpisodeSampler.sample` draws a batch of episodes and augments each one identically across its frames:

- geometry: scale, small rotation, shift and horizontal flip (the landmarks are mirrored by index too, so
  the left brow stays the red one);
- colour: brightness, contrast, saturation, channel gains, sometimes greyscale, so that the model sees
  colour casts like those of old paintings.

The cache's MP4s are decoded with imageio-ffmpeg when it is installed, else with OpenCV (the GPU machine
has cv2 but not imageio-ffmpeg).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.blocks import MIRROR, to_unit


def decode_mp4(path: Path) -> np.ndarray:
    """All frames of an MP4 as (N, H, W, 3) RGB uint8."""
    try:
        import imageio_ffmpeg
    except ImportError:
        imageio_ffmpeg = None
    if imageio_ffmpeg is not None:
        gen = imageio_ffmpeg.read_frames(str(path))
        meta = next(gen)
        w, h = meta["size"]
        frames = [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in gen]
    else:
        frames = _decode_cv2(path)
        if not frames:
            frames = _decode_system_ffmpeg(path)
    if not frames:
        raise ValueError(f"{path}: no frames decoded")
    return np.stack(frames)


def _decode_cv2(path: Path) -> list[np.ndarray]:
    try:
        import cv2
    except ImportError:
        return []
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def _decode_system_ffmpeg(path: Path) -> list[np.ndarray]:
    """Last resort: an `ffmpeg` on PATH, frames piped as raw RGB."""
    import shutil
    import subprocess

    exe = shutil.which("ffmpeg")
    if exe is None:
        return []
    probe = subprocess.run(
        [exe, "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
    )
    n = len(probe.stdout)
    side = int(round((n / 3) ** 0.5))  # the cache's crops are square
    if n == 0 or side * side * 3 != n:
        return []
    raw = subprocess.run(
        [exe, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True
    ).stdout
    arr = np.frombuffer(raw, np.uint8).reshape(-1, side, side, 3)
    return list(arr)


@dataclass
class FrameBank:
    """Every cached frame in one tensor, plus per-clip bookkeeping."""

    frames: torch.Tensor  # (T, 3, S, S) uint8
    points: torch.Tensor  # (T, 68, 2) float32, crop pixels at S
    starts: torch.Tensor  # (C,) long: first row of each clip
    lengths: torch.Tensor  # (C,) long
    names: list[str]
    identities: list[str]
    size: int
    boxes: torch.Tensor | None = None  # (T, 3) crop centre x, y and side in frame pixels; None in old caches

    @property
    def n_clips(self) -> int:
        return len(self.names)

    def summary(self) -> dict:
        return {
            "clips": self.n_clips,
            "people": len(set(self.identities)),
            "frames": int(self.lengths.sum()),
            "size": self.size,
        }

    @classmethod
    def load(cls, cache: Path, device: str | torch.device = "cpu", max_clips: int | None = None) -> FrameBank:
        """Decode every `<stem>.mp4` with its `<stem>.npz` in `cache` (sorted by name, so ids are stable)."""
        npzs = sorted(Path(cache).glob("*.npz"))
        npzs = [p for p in npzs if p.with_suffix(".mp4").exists()]
        if max_clips is not None:
            npzs = npzs[:max_clips]
        if not npzs:
            raise FileNotFoundError(f"{cache}: no prepared clips (*.npz + *.mp4)")
        frames, points, boxes, lengths, names, ids = [], [], [], [], [], []
        size = 0
        # decoders release the GIL: decode clips in parallel threads, keep the results in order
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            decoded = pool.map(lambda p: decode_mp4(p.with_suffix(".mp4")), npzs)
            for p, fr in zip(npzs, decoded, strict=False):
                with np.load(p, allow_pickle=False) as z:
                    pts = z["points"].astype(np.float32)
                    box = z["boxes"].astype(np.float32) if "boxes" in z.files else None
                    ident = str(z["identity"])
                    size = int(z["size"])
                n = min(len(fr), len(pts))
                if n < 2:
                    continue
                frames.append(torch.from_numpy(fr[:n]).to(device).permute(0, 3, 1, 2).contiguous())
                points.append(torch.from_numpy(pts[:n]).to(device))
                boxes.append(None if box is None else torch.from_numpy(box[:n]).to(device))
                lengths.append(n)
                names.append(p.stem)
                ids.append(ident)
        lens = torch.tensor(lengths, dtype=torch.long, device=device)
        starts = torch.cumsum(lens, 0) - lens
        all_boxes = None if any(b is None for b in boxes) else torch.cat(boxes)
        return cls(torch.cat(frames), torch.cat(points), starts, lens, names, ids, size, all_boxes)


@dataclass
class Episode:
    """A batch of B episodes, each K sources + 1 target of one clip, augmented and at the training size."""

    src: torch.Tensor  # (B, K, 3, S, S) float in [-1, 1]
    src_pts: torch.Tensor  # (B, K, 68, 2) crop pixels at S
    tgt: torch.Tensor  # (B, 3, S, S)
    tgt_pts: torch.Tensor  # (B, 68, 2)
    vid: torch.Tensor  # (B,) long: the clip's index (the discriminator's W_i)


@dataclass
class Augment:
    """Ranges of the per-episode augmentation (all identical across an episode's frames)."""

    scale: float = 0.1  # ± relative zoom
    rotate: float = 10.0  # ± degrees
    shift: float = 0.05  # ± fraction of the crop
    flip: float = 0.5  # probability
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.3
    gains: float = 0.1  # per-channel multiplicative colour cast
    grey: float = 0.1  # probability of greyscale


AUGMENT = Augment()


class EpisodeSampler:
    """Draws batches of augmented episodes from a `FrameBank`, on the bank's device."""

    def __init__(
        self,
        bank: FrameBank,
        size: int,
        augment: Augment | None = AUGMENT,
        fixed_box: bool = False,
        closed_sources: float = 0.0,
    ) -> None:
        """`closed_sources`: the share of episodes whose K sources come from the least open third of their
        clip's mouths and whose target from the most open third. A portrait is one image with its mouth
        shut, so G must draw the inside of the mouth; drawn at random, about 85% of episodes with an open
        target also have an open source to copy it from (docs/RESULTS.md, "The discriminator")."""
        if fixed_box and bank.boxes is None:
            raise ValueError("fixed_box needs a cache with crop boxes: prepare it again")
        self.bank = bank
        self.fixed_box = fixed_box
        self.closed_sources = closed_sources
        self.size = size
        self.aug = augment
        self.device = bank.frames.device
        self._starts = bank.starts.cpu()  # index arithmetic on the host: no device sync per step
        self._lengths = bank.lengths.cpu()
        self._by_opening = _offsets_by_opening(bank) if closed_sources > 0 else None

    def sample(self, batch: int, k: int, gen: torch.Generator) -> Episode:
        """`gen` is a CPU generator: every random choice comes from it, so a seed fixes the data stream."""
        bank, dev, s = self.bank, self.device, self.size
        clip = torch.randint(bank.n_clips, (batch,), generator=gen)
        lens = self._lengths[clip]
        offs = (torch.rand(batch, k + 1, generator=gen) * lens[:, None]).long()
        if self._by_opening is not None:
            offs = self._closed_to_open(offs, clip, gen)
        rows = (self._starts[clip][:, None] + offs).to(dev)  # (B, K+1)
        frames = bank.frames[rows.flatten()].float().div_(255)  # (B*(K+1), 3, S0, S0)
        pts = bank.points[rows.flatten()].view(batch, k + 1, 68, 2)
        theta, a, c, flip = self._geometry(batch, gen)
        n = k + 1
        theta = theta.to(dev).repeat_interleave(n, 0)
        u = to_unit(pts, bank.size)
        if self.fixed_box:
            # Every frame seen through the target's crop box, as the renderer sees a moving head through
            # the portrait's one fixed box: u_frame = r·u_target + t, with r and t from the two boxes.
            r, t = self._box_maps(rows)
            theta = r.view(-1, 1, 1) * theta
            theta[:, :, 2] += t.view(-1, 2)
            u = (u - t.view(batch, n, 1, 2)) / r.view(batch, n, 1, 1)
        grid = F.affine_grid(theta, [batch * n, 3, s, s], align_corners=False)
        frames = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
        # landmarks: unit coords → A·u + c → crop px at S; mirrored by index where flipped
        u = torch.einsum("bij,bnpj->bnpi", a.to(dev), u) + c.to(dev)[:, None, None]
        pts = (u + 1) * (s / 2) - 0.5
        fl = flip.to(dev)
        pts = torch.where(fl[:, None, None, None], pts[:, :, MIRROR.to(dev)], pts)
        frames = self._colour(frames.view(batch, n, 3, s, s), gen) * 2 - 1
        return Episode(frames[:, :k], pts[:, :k], frames[:, k], pts[:, k], clip.to(dev))

    def _closed_to_open(self, offs: torch.Tensor, clip: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Redraw a `closed_sources` share of the episodes (B, K+1 frame offsets, target last): sources
        from the clip's least open third of mouths, the target from its most open third."""
        assert self._by_opening is not None
        batch, n = offs.shape
        pick = torch.rand(batch, generator=gen) < self.closed_sources
        lens, starts = self._lengths[clip], self._starts[clip]
        third = (lens // 3).clamp(min=1)[:, None]
        rank = (torch.rand(batch, n, generator=gen) * third).long()  # 0 .. third-1: the least open
        rank[:, -1] = lens - 1 - rank[:, -1]  # the target: among the most open
        redrawn = self._by_opening[starts[:, None] + rank]
        return torch.where(pick[:, None], redrawn, offs)

    def _box_maps(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For (B, N) bank rows, each episode's target last: r (B·N,) and t (B·N, 2) such that a point at
        unit coordinates u in the target's crop is at r·u + t in each frame's own crop."""
        box = self.bank.boxes[rows]  # (B, N, 3)
        tgt = box[:, -1:]
        r = tgt[..., 2] / box[..., 2]
        # crop px x = (X − corner)·size/side, unit u = (x + ½)·2/size − 1 (to_unit): hence the 1/size term
        t = (tgt[..., :2] - box[..., :2]) * 2 / box[..., 2:3] + ((1 - r) / self.bank.size)[..., None]
        return r.flatten(), t.flatten(0, 1)

    def _geometry(
        self, b: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-episode forward map u_out = A·u_in + c (unit coords) and affine_grid's inverse θ."""
        ag = self.aug
        r = torch.rand(b, 5, generator=gen) * 2 - 1
        if ag is None:
            r = torch.zeros(b, 5)
        scale = 1 + (ag.scale if ag else 0) * r[:, 0]
        ang = math.radians(ag.rotate if ag else 0) * r[:, 1]
        shift = (ag.shift if ag else 0) * 2 * r[:, 2:4]
        flip = (torch.rand(b, generator=gen) < ag.flip) if ag else torch.zeros(b, dtype=torch.bool)
        cos, sin = torch.cos(ang), torch.sin(ang)
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        fl = torch.ones(b, 2)
        fl[flip, 0] = -1
        a = scale[:, None, None] * rot * fl[:, None, :]
        ainv = torch.linalg.inv(a)
        theta = torch.cat([ainv, -(ainv @ shift[:, :, None])], 2)
        return theta, a, shift, flip

    def _colour(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """x (B, N, 3, H, W) in [0, 1] → jittered, the same jitter for all N frames of an episode."""
        ag = self.aug
        if ag is None:
            return x
        b = x.shape[0]
        r = (torch.rand(b, 7, generator=gen) * 2 - 1).to(x.device)
        grey_p = (torch.rand(b, generator=gen) < ag.grey).to(x.device)

        def v(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, *([1] * (x.dim() - 1)))

        x = x * v(1 + ag.brightness * r[:, 0])
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
        x = (x - mean) * v(1 + ag.contrast * r[:, 1]) + mean
        grey = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 1, 3, 1, 1)).sum(2, True)
        sat = v(1 + ag.saturation * r[:, 2])
        sat = torch.where(v(grey_p), torch.zeros_like(sat), sat)
        x = grey + (x - grey) * sat
        x = x * (1 + ag.gains * r[:, 3:6]).view(b, 1, 3, 1, 1)
        return x.clamp(0, 1)


def _offsets_by_opening(bank: FrameBank) -> torch.Tensor:
    """(T,) long, laid out as the bank's rows: each clip's frame offsets sorted by how far its mouth is
    open (inner-lip gap over the outer eye corners' distance), least open first."""
    from ..motion import mouth_opening

    opening = torch.from_numpy(mouth_opening(bank.points.cpu().numpy()))
    out = torch.empty(len(opening), dtype=torch.long)
    for start, length in zip(bank.starts.tolist(), bank.lengths.tolist(), strict=True):
        out[start : start + length] = torch.argsort(opening[start : start + length], stable=True)
    return out
