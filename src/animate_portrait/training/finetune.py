"""The fine-tuning stage of Zakharov et al. 2019 (Sec. 3.3): a short adaptation to one new person.

    ê = mean_k E(x_k, y_k)            (the K sources, as at render time)
    ψ′ ← P·ê                          then trained directly (P and E are not used again)
    w′ ← w₀ + ê                       D's column for the new person; D's trunk θ and b from meta-learning
    per step:  target = one source, augmented;  x̂ = G(y_target, ψ′, sources)
        G (ψ′ + flow + decoder):  10·L1 + perceptual (+ ½ × the same on the decoded image) − D(x̂) + 10·FM
        D (θ, b, w′):            hinge(D(target), D(x̂))
    the same losses as meta-training (training/train.py), without L_MCH: there is no W_i to match.

The paper fine-tunes all of G. Here the source and sketch encoders and P stay frozen: ψ′ replaces P·ê,
and the source features are what the flow carries, so tuning the encoders would only let G memorise the
sources. The trainable part of G is the flow/confidence net and the decoder (fuse, AdaIN blocks, output
convs), about 1.1 M of G's 1.8 M parameters, and the encoders' backward pass is skipped, which on a CPU is
the bulk of the saving.

Our G also sees the sources themselves, so "reproduce each source from its own sketch" would be solved by
an identity flow and a blend mask of 1. The target is therefore a *warped* copy of a source (scale,
rotation, shift applied to image and landmarks together), so G must move the source's pixels and draw what
the warp uncovers; flips (landmarks mirrored by index) and colour jitter, identical for the sources and the
target of a step, keep one photograph from being overfitted.

What it returns is a `Person` (person_file.py: ψ′, the tuned G tensors and w′, saved as safetensors with
a JSON card); renderer_tuning.py runs this on a renderer's sources, caches the result and renders with it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..models import Discriminator, Embedder, Generator
from ..models.blocks import MIRROR, rasterise_sketch, to_unit
from ..models.perceptual import MobileNetV2Features, perceptual_l1
from .losses import adversarial_g, feature_matching, hinge_d
from .person_file import Person

# G's modules tuned with ψ′: flow/confidence net and decoder. Encoders and P stay as meta-learned.
TUNED_G = ("flow.", "fuse3.", "bottleneck.", "attn.", "fuse2.", "dec2.", "fuse1.", "dec1.", "out1.", "out2.")

# How often the training loop really ran (not served from the cache): tests read it.
RUNS = {"runs": 0, "steps": 0}


@dataclass(frozen=True)
class FinetuneSettings:
    """What a fine-tuning run depends on besides the sources and the weights (all part of the cache key)."""

    steps: int = 100
    batch: int = 1
    lr_psi: float = 1e-3  # ψ′ is a few thousand numbers trained from scratch-ish: a larger step
    lr_g: float = 5e-5  # the paper's fine-tuning learning rate for G
    lr_d: float = 2e-4  # ... and for D
    tune_g: bool = True  # also tune G's flow + decoder (False: ψ′ only)
    w_l1: float = 10.0
    w_perc: float = 1.0
    w_decoded: float = 0.5
    w_adv: float = 1.0
    w_fm: float = 10.0
    scale: float = 0.06  # ± zoom of the target relative to its source
    rotate: float = 6.0  # ± degrees
    shift: float = 0.04  # ± fraction of the crop
    flip: float = 0.5  # probability (sources and target together)
    brightness: float = 0.15
    contrast: float = 0.15
    saturation: float = 0.2
    seed: int = 0
    # Sources G sees in one step: a random subset when K is larger. Each step re-encodes its (augmented)
    # sources, so at K = 32 a step would cost 32 encoder passes; the flow's per-source confidences do not
    # depend on K, and over 100 steps each of 32 sources is still drawn about 12 times. Rendering uses all K.
    step_sources: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------
# augmentation (kornia is not on every machine we run on; these are a few tensor lines)


def _affine(x: torch.Tensor, pts: torch.Tensor, a: torch.Tensor, c: torch.Tensor) -> tuple:
    """Warp images (N,3,S,S) and crop-pixel points (N,68,2) by u_out = A·u_in + c in unit coordinates."""
    s = x.shape[-1]
    ainv = torch.linalg.inv(a)
    theta = torch.cat([ainv, -(ainv @ c[:, :, None])], 2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    u = torch.einsum("nij,npj->npi", a, to_unit(pts, s)) + c[:, None]
    return x, (u + 1) * (s / 2) - 0.5


def _flip(x: torch.Tensor, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror images and points; points are re-indexed so that the left brow stays the red one."""
    s = x.shape[-1]
    p = pts.clone()
    p[..., 0] = s - 1 - p[..., 0]
    return x.flip(-1), p[:, MIRROR]


def _colour(x: torch.Tensor, r: torch.Tensor, st: FinetuneSettings) -> torch.Tensor:
    """Brightness, contrast and saturation jitter (r: 3 numbers in [-1, 1]) on (N,3,S,S) in [0, 1]."""
    x = x * (1 + st.brightness * r[0])
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (1 + st.contrast * r[1]) + mean
    grey = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, True)
    return (grey + (x - grey) * (1 + st.saturation * r[2])).clamp(0, 1)


def augment_step(
    x: torch.Tensor, pts: torch.Tensor, st: FinetuneSettings, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training example: (K sources, target) → src (K,3,S,S) in [-1,1], src_pts, tgt (3,S,S), tgt_pts.

    x (K,3,S,S) in [0,1], pts (K,68,2). Flip and colour are shared; the target is a source, warped.
    Past `st.step_sources` sources, a random subset of that many stands in for the K (see the settings).
    """
    if x.shape[0] > st.step_sources:
        pick = torch.randperm(x.shape[0], generator=gen)[: st.step_sources].to(x.device)
        x, pts = x[pick], pts[pick]
    k = x.shape[0]
    dev = x.device
    r = torch.rand(7, generator=gen) * 2 - 1
    j = int(torch.randint(k, (1,), generator=gen))
    if float(torch.rand(1, generator=gen)) < st.flip:
        x, pts = _flip(x, pts)
    x = _colour(x, r[:3].to(dev), st)
    ang = math.radians(st.rotate) * float(r[3])
    scale = 1 + st.scale * float(r[4])
    a = scale * torch.tensor([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]], device=dev)
    c = (st.shift * 2 * r[5:7]).to(dev)
    tgt, tgt_pts = _affine(x[j : j + 1], pts[j : j + 1], a[None], c[None])
    return x * 2 - 1, pts, tgt[0] * 2 - 1, tgt_pts[0]


# ---------------------------------------------------------------------------------------------------------
# the training loop


def reconstruction_l1(
    G: Generator, psi: torch.Tensor, x: torch.Tensor, pts: torch.Tensor, st: FinetuneSettings, n: int = 4
) -> float:
    """The fine-tuning L1 on a fixed set of `n` augmented examples of the sources (seeded, no grad).

    x (K,3,S,S) in [-1,1], pts (K,68,2) model pixels. Redrawing a source from its own sketch with itself
    as the source is nearly free for this G (identity flow), so the measure uses warped targets, as the
    training does, from a generator of its own: the same examples before and after.
    """
    s = x.shape[-1]
    gen = torch.Generator().manual_seed(10_000 + st.seed)
    total = 0.0
    with torch.no_grad():
        for _ in range(n):
            src, src_pts, tgt, tgt_pts = augment_step((x + 1) / 2, pts, st, gen)
            y = rasterise_sketch(src_pts, s)
            state = G.encode_sources(src[None], y[None], to_unit(src_pts, s)[None])
            y_t = rasterise_sketch(tgt_pts[None], s)
            out, _ = G(y_t, to_unit(tgt_pts[None], s), psi, state)
            total += float((out[0] - tgt).abs().mean())
    return total / n


def finetune(
    E: Embedder,
    G: Generator,
    D: Discriminator,
    faces: torch.Tensor,
    points: torch.Tensor,
    settings: FinetuneSettings,
    perc: MobileNetV2Features,
    on_step: Callable[[int], None] | None = None,
) -> Person:
    """Fine-tune on K source crops; E, G and D are left untouched (G and D are copied).

    faces (K,3,S,S) in [-1,1] at the model's size, points (K,68,2) in model pixels, all on one device.
    """
    st = settings
    dev = faces.device
    s = faces.shape[-1]
    torch.manual_seed(st.seed)
    gen = torch.Generator().manual_seed(st.seed)
    G, D = copy.deepcopy(G).train(), copy.deepcopy(D).train()
    G.requires_grad_(False)
    with torch.no_grad():
        y = rasterise_sketch(points, s)
        e_hat = E(faces[None], y[None])  # ê over the K sources
        psi0 = G.psi(e_hat)  # ψ̂ = P·ê
        loss_before = reconstruction_l1(G, psi0, faces, points, st)
    psi = torch.nn.Parameter(psi0.clone())  # ψ′ ← P·ê, then trained directly
    tuned = [(n, p) for n, p in G.named_parameters() if st.tune_g and n.startswith(TUNED_G)]
    for _, p in tuned:
        p.requires_grad_(True)
    # D's column for the new person: W ← ê (one row), so that W + w₀ = w′ = w₀ + ê
    D.W = torch.nn.Parameter(e_hat.detach().clone())
    ids = torch.zeros(st.batch, dtype=torch.long, device=dev)
    opt_g = torch.optim.Adam(
        [{"params": [psi], "lr": st.lr_psi}, {"params": [p for _, p in tuned], "lr": st.lr_g}],
        betas=(0.5, 0.999),
    )
    opt_d = torch.optim.Adam(D.parameters(), lr=st.lr_d, betas=(0.0, 0.999))
    x01 = (faces + 1) / 2
    t0 = time.perf_counter()
    last: dict[str, float] = {}
    for _ in range(st.steps):
        ex = [augment_step(x01, points, st, gen) for _ in range(st.batch)]
        src = torch.stack([e[0] for e in ex])  # (B,K,3,S,S)
        src_pts = torch.stack([e[1] for e in ex])
        tgt = torch.stack([e[2] for e in ex])  # (B,3,S,S)
        tgt_pts = torch.stack([e[3] for e in ex])
        with torch.no_grad():  # frozen source encoder: features need no graph
            y_s = rasterise_sketch(src_pts.flatten(0, 1), s).view(*src.shape)
            state = G.encode_sources(src, y_s, to_unit(src_pts, s))
        y_t = rasterise_sketch(tgt_pts, s)
        D.requires_grad_(False)
        fake, aux = G(y_t, to_unit(tgt_pts, s), psi, state)
        l1 = (fake - tgt).abs().mean()
        dec = aux["decoded"]
        loss_g = st.w_l1 * l1 + st.w_perc * perceptual_l1(perc, fake, tgt)
        loss_g = loss_g + st.w_decoded * (
            st.w_l1 * (dec - tgt).abs().mean() + st.w_perc * perceptual_l1(perc, dec, tgt)
        )
        r_fake, f_fake = D(fake, y_t, ids)
        with torch.no_grad():
            _, f_real = D(tgt, y_t, ids)
        l_adv, l_fm = adversarial_g(r_fake), feature_matching(f_real, f_fake)
        loss_g = loss_g + st.w_adv * l_adv + st.w_fm * l_fm
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)
        r_real, _ = D(tgt, y_t, ids)
        r_fake, _ = D(fake.detach(), y_t, ids)
        loss_d = hinge_d(r_real, r_fake)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        last = {k: v.item() for k, v in (("l1", l1), ("adv_g", l_adv), ("fm", l_fm), ("d", loss_d))}
        if not all(math.isfinite(v) for v in last.values()):
            raise FloatingPointError(f"non-finite fine-tuning loss: {last}")
        RUNS["steps"] += 1
        if on_step is not None:
            on_step(1)
    RUNS["runs"] += 1
    G.eval()
    psi_t = psi.detach()
    loss_after = reconstruction_l1(G, psi_t, faces, points, st)
    card = {
        "steps": st.steps,
        "settings": st.to_dict(),
        "seconds": round(time.perf_counter() - t0, 2),
        "device": str(dev),
        "reconstruction_l1": {"before": round(loss_before, 5), "after": round(loss_after, 5)},
        "last_losses": {k: round(v, 5) for k, v in last.items()},
        "tuned_g": sorted({n.split(".")[0] for n, _ in tuned}),
    }
    return Person(
        psi=psi_t.clone(),
        g={n: p.detach().clone() for n, p in tuned},
        w=(D.W[0] + D.w0).detach().clone(),  # w′ (for a later run that goes on tuning D)
        card=card,
    )
