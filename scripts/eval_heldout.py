"""Held-out self-reenactment: source = a clip's first frame, targets = its later frames (crop space).

    python scripts/eval_heldout.py WEIGHTS CLIP.mp4... [--frames 150] [--k 1]
Prepares each eval clip once into runs/eval_cache (stable crops + landmarks, as for training), then renders
every later frame with `warp` and `neural` from the first frame's crop and compares with the real crops:
L1 (0-255) and PSNR over the whole crop and over the face box (landmark box grown 10%), mouth-box L1.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from animate_portrait.engines import get_renderer
from animate_portrait.training.dataset import decode_mp4
from animate_portrait.training.prepare import prepare_clips
from animate_portrait.types import Crop, SourceFace

ap = argparse.ArgumentParser()
ap.add_argument("weights", type=Path)
ap.add_argument("clips", nargs="+", type=Path)
ap.add_argument("--frames", type=int, default=150)
ap.add_argument("--k", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(2)
cache = Path("runs/eval_cache")
Path("runs").mkdir(exist_ok=True)
prepare_clips(a.clips, cache, 256, max_frames=a.frames + a.k)


def box(pts, grow, s=256):
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    gx, gy = (x1 - x0) * grow, (y1 - y0) * grow
    return (max(int(y0 - gy), 0), min(int(y1 + gy) + 1, s), max(int(x0 - gx), 0), min(int(x1 + gx) + 1, s))


def metrics(pred, real, pts):
    out = {}
    d = np.abs(pred.astype(np.float32) - real.astype(np.float32))
    for name, sel in (("crop", None), ("face", 0.1), ("mouth", 0.25)):
        vals, mses = [], []
        for i in range(len(pred)):
            if sel is None:
                di = d[i]
            else:
                p = pts[i][48:68] if name == "mouth" else pts[i]
                y0, y1, x0, x1 = box(p, sel)
                di = d[i, y0:y1, x0:x1]
            vals.append(di.mean())
            mses.append((di**2).mean())
        out[f"{name}_l1"] = float(np.mean(vals))
        if name != "mouth":
            out[f"{name}_psnr"] = float(np.mean([10 * np.log10(255**2 / max(m, 1e-6)) for m in mses]))
    return out


rows = {}
for clip in a.clips:
    fr = decode_mp4(cache / f"{clip.stem}.mp4")
    z = np.load(cache / f"{clip.stem}.npz")
    pts = z["points"]
    srcs = [SourceFace(clip, fr[j], Crop((128, 128), 256, 256), fr[j], pts[j]) for j in range(a.k)]
    tg, real = pts[a.k :], fr[a.k :]
    res = {}
    for eng in ("static", "warp", "neural"):
        r = get_renderer(eng, 256, "cpu", a.weights if eng == "neural" else None)
        r.prepare(srcs)
        pred = np.concatenate([r.render(tg[i : i + 8]) for i in range(0, len(tg), 8)])
        res[eng] = metrics(pred, real, tg)
        if eng == "neural":
            np.save(f"runs/eval_pred_{clip.stem}.npy", pred[::30])
    rows[clip.stem] = res
    print(clip.stem, json.dumps(res, indent=None), flush=True)
mean = {
    e: {k: float(np.mean([rows[c][e][k] for c in rows])) for k in rows[next(iter(rows))][e]}
    for e in ("static", "warp", "neural")
}
print("MEAN")
for e, m in mean.items():
    print(f"{e:7s} " + "  ".join(f"{k}={v:.3f}" for k, v in m.items()))
json.dump(
    {"clips": rows, "mean": mean, "k": a.k, "frames": a.frames},
    open(f"runs/eval_heldout_k{a.k}.json", "w"),
    indent=2,
)
