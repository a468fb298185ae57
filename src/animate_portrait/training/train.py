"""Meta-training of E, G and D on the prepared cache (Zakharov et al. 2019, Sec. 3.2), resumable.

    python -m animate_portrait.training.train CACHE --out RUN [--minutes 7] [--device cuda] ...

One step = a batch of episodes (K sources, K drawn from 1..k_max per step, + 1 target, one clip each):
    ê = mean_k E(x_k, y_k);  ψ̂ = P·ê;  x̂ = G(y_t, ψ̂, sources)
    G, E:  λ₁·L1 + λ_p·perceptual  (+ ½ × the same on G's decoded image alone)
           [+ w_mask·hinge²(|mask logit| − 4) + w_mouth·mouth-box L1
            + w_warped·L1 of the warped source outside the face, 4 scales: all off unless asked]
           [+ −D(x̂) + 10·FM + 10·L_MCH once step ≥ adv_start]
    D:     hinge(D(x_t), D(x̂))      [+ 80·L_MCH for W]   (one D step per G step; the paper used two)
           [d_patch: the hinge per location of D's last map; d_pretrain: D-only steps when adv starts]
Why these deviations from the paper: we train for minutes, not days. An L1 + perceptual warm-up first
gets the flow, mask and decoder into place (the adversarial game on a random G wastes the few steps we
have); Adam β₁ = 0.5 for E/G (the paper: 0) speeds that regression; one D step per G step halves D's cost.

Outputs in RUN/: ckpt.safetensors + ckpt.json (every `ckpt_minutes`, and at the end; model and optimiser
tensors flattened, RNG state as a tensor: no pickles), log.jsonl (losses), samples/step_XXXXXX.png
(source | target sketch | output | target, one episode a row), and weights/neural.safetensors + .json
(E, G, D in fp16, spectral norm folded) at the end: run_files.py writes them all.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO

import torch
import torch.nn.functional as F

from ..models import Discriminator, Embedder, Generator, ModelConfig
from ..models.blocks import rasterise_sketch, to_unit
from ..models.perceptual import find_mobilenet, load_mobilenet, perceptual_l1
from .dataset import Augment, Episode, EpisodeSampler, FrameBank
from .losses import (
    adversarial_g,
    feature_matching,
    hinge_d,
    match_loss,
    mouth_l1,
    outside_face,
    warp_pyramid_l1,
)
from .run_files import export, init_from, load_checkpoint, save_checkpoint, save_grid


@dataclass
class TrainConfig:
    size: int = 256  # training resolution (the cache may be larger: frames are resampled)
    batch: int = 8
    k_max: int = 8  # K is drawn from 1..k_max each step
    steps: int = 1000  # stop after this many steps ...
    minutes: float | None = None  # ... or after this much wall time, whichever comes first
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1_g: float = 0.5
    w_l1: float = 10.0
    w_perc: float = 1.0
    w_decoded: float = 0.5  # content loss on G's decoded image alone, so the decoder learns to draw
    w_mask: float = 0.0  # hinge² on |mask logit| > 4: keeps m in [0.02, 0.98], where its gradient lives
    w_mouth: float = 0.0  # extra L1 inside the target's mouth box (teeth and lips are few pixels)
    # L1 of the warped source alone against the target outside the face, at four scales: a direct signal
    # for G's flow net, where most of the perceptual distance lies and a perfect motion would gain 13–21%
    # (docs/RESULTS.md, "Where the error lies"); the decoder otherwise covers up a misplaced warp.
    w_warped: float = 0.0
    w_adv: float = 1.0
    w_fm: float = 10.0
    w_mch: float = 10.0  # the paper's 80 drags ê to W's random start in a short run (see d_optimizer)
    adv_start: int = 500  # adversarial terms from this step on (L1 + perceptual warm-up before) ...
    adv_start_frac: float | None = None  # ... or, with --minutes, from this fraction of the time budget
    # D's fakes are mostly the warped real pixels, so D learns slowly: both GPU bursts sat at d ≈ 2.0
    # (chance), and with the global hinge a D trained alone told a 5×5-blurred frame from the real one by a
    # margin of 0.005 (the hinge asks for 1) after 200 CPU steps (docs/RESULTS.md, "The discriminator").
    # Two options, off by default:
    d_patch: bool = False  # hinge per location of D's last map: 7× the margin in that test, units alive
    d_pretrain: int = 0  # D-only steps against the current G when the adversarial phase starts
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    ckpt_minutes: float = 3.0
    sample_every: int = 250
    log_every: int = 10
    max_clips: int | None = None
    augment: bool = True
    # Sources seen through the target's crop box (needs a cache prepared with boxes): the renderer keeps one
    # box while the head moves in it, but the cache's crops follow the head, so without this G never sees a
    # head move across a still background, and the hair and background outside the face, most of the
    # perceptual distance, are left to the spline (docs/RESULTS.md, "Where the error lies").
    fixed_box: bool = False
    # Episodes that make G draw the inside of the mouth: sources shut, target open (dataset.EpisodeSampler)
    closed_sources: float = 0.0
    mobilenet: str | None = None  # MobileNetV2 weights (.safetensors or torchvision .pth); None: find it
    init: str | None = None  # start E/G/D from a weights file (e.g. the shipped one)
    reset_mask: bool = False  # after --init: restart the blend mask at 0.5 (un-saturate it)
    revive_embedder: bool = False  # after --init: E's dead output back, pooled by mean (Embedder.revive)
    export_warmup: bool = True  # also export the weights as they are when the adversarial phase starts
    model: dict = field(default_factory=dict)  # ModelConfig overrides, e.g. {"emb_dim": 128}


def sample_k(k_max: int, gen: torch.Generator) -> int:
    """K for this step: 1 half of the time (one-shot is the main use), else uniform in 2..k_max."""
    if k_max <= 1 or float(torch.rand(1, generator=gen)) < 0.5:
        return 1
    return int(torch.randint(2, k_max + 1, (1,), generator=gen))


class _Progress:
    """A rich progress bar on a terminal; plain lines every few log intervals otherwise."""

    def __init__(self, total: int, start: int) -> None:
        self.tty = sys.stdout.isatty()
        self.bar = None
        if self.tty:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("train"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def update(self, step: int, info: str, force: bool = False) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)
        elif force:
            print(f"step {step} {info}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def train(cache: Path, out: Path, config: TrainConfig) -> Path:
    """Train (or resume) into `out`; returns the path of the exported weights."""
    cfg = config
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    t_load = time.time()
    bank = FrameBank.load(cache, dev, cfg.max_clips)
    print(f"data: {bank.summary()} loaded in {time.time() - t_load:.1f} s on {dev}", flush=True)
    sampler = EpisodeSampler(
        bank, cfg.size, Augment() if cfg.augment else None, cfg.fixed_box, cfg.closed_sources
    )

    # a revived E pools by mean with a leaky activation (Embedder.revive): the same tensors, another config
    revived = {"e_pool": "mean_leaky"} if cfg.revive_embedder else {}
    mcfg = ModelConfig.from_dict(
        {**ModelConfig().to_dict(), **cfg.model, **revived, "size": cfg.size, "n_ids": bank.n_clips}
    )
    E, G, D = Embedder(mcfg).to(dev), Generator(mcfg).to(dev), Discriminator(mcfg).to(dev)
    if cfg.init:
        init_from(Path(cfg.init), E, G, D)
        if cfg.reset_mask:
            G.reset_mask(_rgb_logit_scale(E, G, sampler, cfg, gen))
        if cfg.revive_embedder:
            _revive_embedder(E, G, sampler, cfg)
    perc = load_mobilenet(find_mobilenet(cfg.mobilenet), dev)
    if cuda:
        for m in (E, G, D, perc):
            m.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(
        list(E.parameters()) + list(G.parameters()), lr=cfg.lr_g, betas=(cfg.beta1_g, 0.999)
    )
    opt_d = d_optimizer(D, cfg.lr_d)
    nets, opts = {"E": E, "G": G, "D": D}, {"opt_g": opt_g, "opt_d": opt_d}

    step, elapsed_before = 0, 0.0
    # the step the adversarial phase starts at: fixed, or found when the time fraction is reached
    by_time = cfg.adv_start_frac is not None and cfg.minutes is not None
    adv_from: int | None = None if by_time else cfg.adv_start
    if (out / "ckpt.safetensors").exists():
        meta = load_checkpoint(out, nets, opts, gen)
        step, elapsed_before = int(meta["step"]), float(meta.get("elapsed_s", 0.0))
        adv_from = meta.get("adv_start", adv_from)
        print(f"resumed from step {step}", flush=True)

    run_meta = {
        "train_config": asdict(cfg),
        "model_config": mcfg.to_dict(),
        "data": bank.summary(),
        "clips": bank.names,
    }
    (out / "run.json").write_text(json.dumps(run_meta, indent=2))
    log = open(out / "log.jsonl", "a")
    prog = _Progress(cfg.steps, step)
    t0 = time.time()
    last_ckpt = t0
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (cuda and cfg.amp) else nullcontext()
    s = cfg.size
    ema: dict[str, float] = {}
    try:
        while step < cfg.steps:
            elapsed = elapsed_before + time.time() - t0
            if cfg.minutes is not None and elapsed > cfg.minutes * 60:
                break
            k = sample_k(cfg.k_max, gen)
            ep = sampler.sample(cfg.batch, k, gen)
            if adv_from is None and elapsed >= cfg.adv_start_frac * cfg.minutes * 60:
                adv_from = step
                print(f"adversarial phase from step {step}", flush=True)
            adv = adv_from is not None and step >= adv_from
            if step == adv_from and step > 0 and cfg.export_warmup:
                # snapshot the content-loss-only model: if the short adversarial phase hurts, ship this one
                export(out, nets, mcfg, step, elapsed, bank, cfg, str(dev), "neural_warmup", adv_from)
            if step == adv_from and cfg.d_pretrain > 0:
                _pretrain_d(E, G, D, opt_d, sampler, cfg, gen, amp, log)
            E.train(), G.train(), D.train()
            D.requires_grad_(False)
            with amp:
                fake, aux, e_hat, y_t = _generate(E, G, ep, s)
                l1 = (fake.float() - ep.tgt).abs().mean()
                lp = perceptual_l1(perc, fake, ep.tgt)
                loss_g = cfg.w_l1 * l1 + cfg.w_perc * lp
                # the share of ê's entries above 0: at 0, E is dead and G's AdaIN ignores the sources
                logs = {"l1": l1, "perc": lp, "e_live": (e_hat.detach() > 0).float().mean()}
                if cfg.w_mask > 0:
                    # a saturated mask (m = 1 everywhere) passes no gradient and never lets the decoder in
                    l_mask = F.relu(aux["mask_logit"].float().abs() - 4.0).pow(2).mean()
                    loss_g = loss_g + cfg.w_mask * l_mask
                    logs["mask_pen"] = l_mask
                if cfg.w_mouth > 0:
                    l_mouth = mouth_l1(fake.float(), ep.tgt, ep.tgt_pts)
                    loss_g = loss_g + cfg.w_mouth * l_mouth
                    logs["mouth"] = l_mouth
                if cfg.w_warped > 0:
                    l_warped = warp_pyramid_l1(aux["warped"].float(), ep.tgt, outside_face(ep.tgt_pts, s))
                    loss_g = loss_g + cfg.w_warped * l_warped
                    logs["warped"] = l_warped
                if cfg.w_decoded > 0:
                    # the decoded image must stand alone too: otherwise the blend mask can settle on the
                    # warped source everywhere and the decoder (mouth interior, blinks) never learns
                    dec = aux["decoded"]
                    l1_dec = (dec.float() - ep.tgt).abs().mean()
                    loss_g = loss_g + cfg.w_decoded * (
                        cfg.w_l1 * l1_dec + cfg.w_perc * perceptual_l1(perc, dec, ep.tgt)
                    )
                    logs["l1_dec"] = l1_dec
                if adv:
                    r_fake, f_fake = D(fake, y_t, ep.vid, cfg.d_patch)
                    with torch.no_grad():
                        _, f_real = D(ep.tgt, y_t, ep.vid)
                    l_adv = adversarial_g(r_fake.float())
                    l_fm = feature_matching([f.float() for f in f_real], [f.float() for f in f_fake])
                    l_mch = match_loss(D.W[ep.vid].detach(), e_hat.float())
                    loss_g = loss_g + cfg.w_adv * l_adv + cfg.w_fm * l_fm + cfg.w_mch * l_mch
                    logs.update(adv_g=l_adv, fm=l_fm, mch=l_mch)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            D.requires_grad_(True)
            if adv:
                l_hinge, r_real, r_fake = _d_step(D, opt_d, ep, y_t, fake.detach(), e_hat.detach(), cfg, amp)
                logs.update(d=l_hinge, r_real=r_real.mean(), r_fake=r_fake.mean())
            step += 1

            if step % cfg.log_every == 0 or step == 1:
                vals = {kk: float(v.detach()) for kk, v in logs.items()}
                if not all(math.isfinite(v) for v in vals.values()):
                    raise FloatingPointError(f"non-finite loss at step {step}: {vals}")
                for kk, v in vals.items():
                    ema[kk] = v if kk not in ema else 0.9 * ema[kk] + 0.1 * v
                el = elapsed_before + time.time() - t0
                rec = {
                    "step": step,
                    "time_s": round(el, 2),
                    "k": k,
                    **{kk: round(v, 5) for kk, v in vals.items()},
                    "mask": round(float(aux["mask"].detach().mean()), 4),
                }
                log.write(json.dumps(rec) + "\n")
                log.flush()
                info = " ".join(f"{kk}={v:.3f}" for kk, v in ema.items())
                prog.update(step, info, force=step % (cfg.log_every * 10) == 0 or step == 1)
            if step % cfg.sample_every == 0:
                save_grid(out / "samples" / f"step_{step:06d}.png", ep.src, y_t, fake, ep.tgt)
            if time.time() - last_ckpt > cfg.ckpt_minutes * 60:
                meta = _meta(step, elapsed_before + time.time() - t0, cfg, adv_from)
                save_checkpoint(out, nets, opts, gen, meta)
                last_ckpt = time.time()
    finally:
        prog.close()
        log.close()
    total = elapsed_before + time.time() - t0
    save_checkpoint(out, nets, opts, gen, _meta(step, total, cfg, adv_from))
    if "fake" in locals():
        save_grid(out / "samples" / f"step_{step:06d}.png", ep.src, y_t, fake, ep.tgt)
    print(f"done: {step} steps, {total:.0f} s", flush=True)
    return export(out, nets, mcfg, step, total, bank, cfg, str(dev), adv_start=adv_from)


def d_optimizer(D: Discriminator, lr: float) -> torch.optim.Adam:
    """Adam for D (betas 0, 0.999, as the paper). W_i gets a 10× learning rate: it must follow ê (whose
    entries are sums over D's final map, O(1–10)) within the few hundred adversarial steps we run, or L_MCH
    only drags ê towards W's random start."""
    rest = [p for n, p in D.named_parameters() if n != "W"]
    return torch.optim.Adam([{"params": rest}, {"params": [D.W], "lr": lr * 10}], lr=lr, betas=(0.0, 0.999))


def image_margins(r_real: torch.Tensor, r_fake: torch.Tensor) -> torch.Tensor:
    """(B,) r_real − r_fake per image, from D's scores (B,) or per-location maps (B, h, w), summed."""
    return r_real.reshape(len(r_real), -1).sum(1) - r_fake.reshape(len(r_fake), -1).sum(1)


def _d_step(
    D: Discriminator,
    opt_d: torch.optim.Optimizer,
    ep: Episode,
    y_t: torch.Tensor,
    fake: torch.Tensor,
    e_hat: torch.Tensor,
    cfg: TrainConfig,
    amp,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One D update (hinge + L_MCH for W): the hinge loss and D's scores (maps with d_patch)."""
    with amp:
        r_real, _ = D(ep.tgt, y_t, ep.vid, cfg.d_patch)
        r_fake, _ = D(fake, y_t, ep.vid, cfg.d_patch)
        l_hinge = hinge_d(r_real.float(), r_fake.float())
        loss_d = l_hinge + cfg.w_mch * match_loss(D.W[ep.vid], e_hat.float())
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    return l_hinge.detach(), r_real.detach().float(), r_fake.detach().float()


def _pretrain_d(
    E: Embedder,
    G: Generator,
    D: Discriminator,
    opt_d: torch.optim.Optimizer,
    sampler: EpisodeSampler,
    cfg: TrainConfig,
    gen: torch.Generator,
    amp,
    log: IO[str],
) -> None:
    """`cfg.d_pretrain` D-only steps against the current (frozen) G, so that G's first adversarial
    gradients come from a D that already tells its frames from real ones. Logged as {"d_pretrain": n, …}
    with `acc`: the share of pairs in which D scores the real frame above the fake."""
    E.eval(), G.eval(), D.train()
    for n in range(1, cfg.d_pretrain + 1):
        ep = sampler.sample(cfg.batch, sample_k(cfg.k_max, gen), gen)
        with torch.no_grad(), amp:
            fake, _, e_hat, y_t = _generate(E, G, ep, cfg.size)
        l_hinge, r_real, r_fake = _d_step(D, opt_d, ep, y_t, fake, e_hat, cfg, amp)
        if n % cfg.log_every == 0 or n == cfg.d_pretrain:
            acc = (image_margins(r_real, r_fake) > 0).float().mean()
            rec = {"d_pretrain": n, "d": round(float(l_hinge), 5), "acc": round(float(acc), 4)}
            log.write(json.dumps(rec) + "\n")
            print(f"D pre-training {n}/{cfg.d_pretrain}: d={rec['d']:.3f} acc={rec['acc']:.2f}", flush=True)
    log.flush()


def _generate(
    E: Embedder, G: Generator, ep: Episode, s: int
) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor]:
    """One episode batch through E and G: (x̂, G's aux outputs, ê, the target sketches y_t)."""
    b, k = ep.src.shape[:2]
    y_s = rasterise_sketch(ep.src_pts.flatten(0, 1), s).view(b, k, 3, s, s)
    y_t = rasterise_sketch(ep.tgt_pts, s)
    e_hat = E(ep.src, y_s)  # ê: mean over the K sources
    psi = G.psi(e_hat)  # ψ̂ = P·ê
    src = G.encode_sources(ep.src, y_s, to_unit(ep.src_pts, s))
    fake, aux = G(y_t, to_unit(ep.tgt_pts, s), psi, src)
    return fake, aux, e_hat, y_t


@torch.no_grad()
def _rgb_logit_scale(
    E: Embedder, G: Generator, sampler: EpisodeSampler, cfg: TrainConfig, gen: torch.Generator
) -> float:
    """The factor that brings G's pre-tanh RGB outputs on one batch to a standard deviation of 0.5, so
    that tanh passes gradient again (a data-dependent re-initialisation of the last layer, as LSUV)."""
    seen: dict[str, torch.Tensor] = {}
    hook = G.out2.register_forward_hook(lambda m, i, o: seen.setdefault("o", o.detach()))
    _generate(E, G, sampler.sample(cfg.batch, 1, gen), cfg.size)
    hook.remove()
    std = float(seen["o"][:, :3].float().std())
    print(
        f"reset mask: decoder RGB logits had std {std:.2f}; scaled by {0.5 / max(std, 1e-6):.4f}", flush=True
    )
    return 0.5 / max(std, 1e-6)


@torch.no_grad()
def _revive_embedder(E: Embedder, G: Generator, sampler: EpisodeSampler, cfg: TrainConfig) -> None:
    """E.revive on one batch of source frames, then P = 0, so that ψ̂ = P·ê + b, and with it G's output,
    is what it was: training starts from the same frames and P learns to use the live ê. The batch comes
    from its own generator, so the run's episodes are those it would have drawn without the revival."""
    ep = sampler.sample(max(cfg.batch, 32), 1, torch.Generator().manual_seed(cfg.seed + 1))
    x, y = ep.src.flatten(0, 1), rasterise_sketch(ep.src_pts.flatten(0, 1), cfg.size)
    live_before = float((E.embed_each(x, y) > 0).float().mean())
    live = E.revive(x, y)
    G.P.weight.zero_()
    print(f"revive embedder: ê entries above 0 {live_before:.2f} -> {live:.2f}; P reset to 0", flush=True)


def _meta(step: int, elapsed: float, cfg: TrainConfig, adv_start: int | None) -> dict:
    return {"step": step, "elapsed_s": round(elapsed, 2), "adv_start": adv_start, "train_config": asdict(cfg)}


def config_from_args(argv: list[str] | None = None) -> tuple[Path, Path, TrainConfig]:
    ap = argparse.ArgumentParser(description="Meta-train the talking-head model on a prepared cache.")
    ap.add_argument("cache", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    for f in fields(TrainConfig):
        if f.name == "model":
            ap.add_argument("--model", type=json.loads, default={}, help="ModelConfig overrides as JSON")
            continue
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            ap.add_argument(flag, type=lambda v: v.lower() in ("1", "true", "yes"), default=default)
        elif f.name in ("minutes", "adv_start_frac"):
            ap.add_argument(flag, type=float, default=default)
        elif f.name in ("max_clips",):
            ap.add_argument(flag, type=int, default=default)
        elif f.name in ("mobilenet", "init"):
            ap.add_argument(flag, type=str, default=default)
        else:
            ap.add_argument(flag, type=type(default), default=default)
    a = vars(ap.parse_args(argv))
    cache, out = a.pop("cache"), a.pop("out")
    return cache, out, TrainConfig(**a)


def main(argv: list[str] | None = None) -> None:
    cache, out, cfg = config_from_args(argv)
    path = train(cache, out, cfg)
    print(f"weights: {path}", flush=True)


if __name__ == "__main__":
    main()
