"""Can the discriminator learn? D trained alone, G frozen, on the prepared training cache.

Both GPU bursts logged d ≈ 2.0 (chance) through their adversarial phases. This trains only D, against the
shipped G's frames or against a blatant fake (the real target box-blurred 5×5), and prints every 10 steps:
the hinge loss d, D's accuracy (the share of pairs in which it scores the real frame above the fake), the
mean per-image margin r_real − r_fake, and the share of D's last-layer units alive (> 0) on real frames.

    python scripts/d_probe.py [--fake generator|blur] [--fresh] [--patch] [--steps 200] [--batch 8] [--lr R]

--fresh starts D from random weights instead of the shipped D; --patch uses the per-location hinge
(TrainConfig.d_patch). The D step is the training loop's own (training/train.py, _d_step).
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from animate_portrait.models import Discriminator, Embedder, Generator, ModelConfig
from animate_portrait.training.dataset import EpisodeSampler, FrameBank
from animate_portrait.training.run_files import init_from
from animate_portrait.training.train import TrainConfig, _d_step, _generate, d_optimizer, image_margins
from animate_portrait.weights import DEFAULT_WEIGHTS, load_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="cache/train")
    ap.add_argument("--fake", choices=("generator", "blur"), default="generator")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--patch", action="store_true")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr_d)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    bank = FrameBank.load(a.cache, dev, None)
    shipped, _, _ = load_weights(DEFAULT_WEIGHTS, dev, parts=("E",))
    # as train.py builds them: the stored config has spectral norm folded (d_sn False); training's D has it
    mcfg = ModelConfig.from_dict({**ModelConfig().to_dict(), "size": shipped.size, "n_ids": bank.n_clips})
    E, G, D = Embedder(mcfg).to(dev), Generator(mcfg).to(dev), Discriminator(mcfg).to(dev)
    init_from(DEFAULT_WEIGHTS, E, G, D)
    if a.fresh:
        D = Discriminator(mcfg).to(dev)
    cfg = TrainConfig(size=mcfg.size, batch=a.batch, d_patch=a.patch, lr_d=a.lr)
    opt_d = d_optimizer(D, cfg.lr_d)
    sampler = EpisodeSampler(bank, mcfg.size)
    E.eval(), G.eval(), D.train()
    t0 = time.time()
    for step in range(1, a.steps + 1):
        ep = sampler.sample(a.batch, 1, gen)
        with torch.no_grad():
            fake, _, e_hat, y_t = _generate(E, G, ep, mcfg.size)
            if a.fake == "blur":
                fake = F.avg_pool2d(ep.tgt, 5, 1, 2, count_include_pad=False)
        d, r_real, r_fake = _d_step(D, opt_d, ep, y_t, fake, e_hat, cfg, nullcontext())
        if step % 10 == 0 or step == 1:
            with torch.no_grad():
                alive = float((D(ep.tgt, y_t, ep.vid)[1][-1] > 0).float().mean())
            margin = image_margins(r_real, r_fake)
            rec = {"step": step, "s": round(time.time() - t0), "d": round(float(d), 4),
                   "acc": float((margin > 0).float().mean()), "margin": round(float(margin.mean()), 4),
                   "alive": round(alive, 3)}  # fmt: skip
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
