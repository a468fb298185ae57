"""Where in the 256² crop does the perceptual distance of self-reenactment come from?

`evaluate`'s perceptual distance covers the whole crop: face, hair, neck and background. This probe
measures it again with one region of each output frame replaced by the real frame's pixels:

    as_is         the output as rendered (what `evaluate` reports)
    mouth_oracle  the mouth box (metrics.mouth_box) taken from the real frame
    face_oracle   the face outline (metrics.face_mask: jaw and brows) taken from the real frame, so only
                  what lies outside the face is left to the engine
    bg_oracle     everything outside the face outline taken from the real frame

So face_oracle is what an engine that drew the face perfectly would score. The protocol is `evaluate`'s
(evaluation/self_reenactment.py), 1 source image:

    python scripts/where_error.py CLIP_OR_DIR... --engines warp,neural --max-frames 15 --json OUT
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from animate_portrait import metrics
from animate_portrait.errors import InputError
from animate_portrait.evaluation.common import Judge, RendererFactory, Setup
from animate_portrait.evaluation.self_reenactment import evaluate_clip
from animate_portrait.landmarks import get_detector
from animate_portrait.weights import read_card

VARIANTS = ("as_is", "mouth_oracle", "face_oracle", "bg_oracle")


class OracleJudge(Judge):
    """Scores each output with the four variants instead of `evaluate`'s metrics."""

    def full_reference(self, outputs, truth):  # noqa: ANN001, ANN201 (Judge's signature)
        variants: dict[str, list[np.ndarray]] = {v: [] for v in VARIANTS}
        for out, real, pts in zip(outputs, truth.crops, truth.points, strict=True):
            face = metrics.face_mask(pts, out.shape[0])
            x0, y0, x1, y1 = metrics.mouth_box(pts, out.shape[0])
            mouth = out.copy()
            mouth[y0:y1, x0:x1] = real[y0:y1, x0:x1]
            face_real, bg_real = out.copy(), real.copy()
            face_real[face], bg_real[face] = real[face], out[face]
            for name, image in zip(VARIANTS, (out, mouth, face_real, bg_real), strict=True):
                variants[name].append(image)
        far = {
            v: metrics.perceptual_between(metrics.unit_features(ims, self.net), truth.features)
            for v, ims in variants.items()
        }
        return [{**{v: float(far[v][i]) for v in VARIANTS}, "opening": np.nan} for i in range(len(outputs))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clips", nargs="+", type=Path)
    ap.add_argument("--engines", default="warp,neural")
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--max-frames", type=int, default=15)
    ap.add_argument("--frame-step", type=int, default=3)
    ap.add_argument("--source-span", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    clips = [c for p in a.clips for c in (sorted(p.iterdir()) if p.is_dir() else [p])]
    setups = [Setup(e) for e in a.engines.split(",")]
    if a.weights is not None and "neural" in a.engines:
        read_card(a.weights)  # a bad weights file fails here, not as every clip "skipped"
    factory = RendererFactory(256, "cpu", a.weights)
    judge = OracleJudge(get_detector("dlib"), "cpu")
    per_clip: dict[str, dict[str, dict[str, float]]] = {}
    for clip in clips:
        try:
            found = evaluate_clip(
                clip, setups, factory, judge, a.max_frames, a.frame_step, span=a.source_span
            )
        except InputError as exc:  # a clip without a face: nothing to measure
            print(f"skipped: {exc}", flush=True)
            continue
        if found:
            per_clip[clip.name] = {s.engine: found[s] for s in found}
            print(clip.name, {e: round(r["as_is"], 3) for e, r in per_clip[clip.name].items()}, flush=True)
    for s in setups:
        means = {v: np.mean([r[s.engine][v] for r in per_clip.values()]) for v in VARIANTS}
        print(f"{s.engine:8s} " + "  ".join(f"{v} {m:.4f}" for v, m in means.items()), flush=True)
    if a.json:
        a.json.write_text(json.dumps(per_clip, indent=1))


if __name__ == "__main__":
    main()
