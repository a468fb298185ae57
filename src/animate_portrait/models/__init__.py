"""The talking-head networks of Zakharov et al. 2019, plus a landmark-driven flow for one-shot identity.

- `Embedder` E(x, y) → ê (embedder.py)
- `Generator` G(y_t, ψ̂ = P·ê, sources) → x̂ (generator.py)
- `Discriminator` D(x, y, i) → r = Vᵀ(W_i + w₀) + b (discriminator.py)
- `MobileNetV2Features`, the frozen perceptual backbone for training (perceptual.py)

All sizes come from one `ModelConfig`, which the weights card stores so that a file rebuilds its model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class ModelConfig:
    """Sizes of E, G and D. The defaults are the shipped model (≤ 200 ms per 256² frame on 2 CPU cores)."""

    size: int = 256  # working resolution of the face crop
    emb_dim: int = 256  # ê, the embedding (the paper used 512)
    enc_ch: tuple[int, int, int] = (32, 64, 128)  # source-feature encoder at size/2, /4, /8
    sketch_ch: tuple[int, int, int] = (16, 32, 64)  # target-sketch encoder (instance norm) at /2, /4, /8
    emb_ch: tuple[int, ...] = (32, 64, 128, 256, 256)  # E (and D's trunk): size/2 … size/32
    flow_ch: int = 32  # flow/confidence refinement net, runs at size/4
    n_bottleneck: int = 2  # AdaIN residual blocks at size/8
    g_attention: bool = False  # self-attention in G's bottleneck (costs ~15 ms at 256² on CPU)
    e_attention: bool = True  # self-attention in E at size/16 (cheap; E runs once per source)
    g_sn: bool = False  # spectral norm in G (off: it slows the few-minute training we can afford)
    d_sn: bool = True  # spectral norm in D (keeps the hinge game stable)
    n_ids: int = 1  # columns W_i of the projection discriminator (training videos)
    # ê from E's last map: "sum_relu" is the paper's ReLU(sum pooling); "mean_leaky" = LeakyReLU(mean
    # pooling), for an E brought back by Embedder.revive (sum pooling × Adam killed every unit once)
    e_pool: str = "sum_relu"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


from .discriminator import Discriminator  # noqa: E402
from .embedder import Embedder  # noqa: E402
from .generator import Generator  # noqa: E402

__all__ = ["ModelConfig", "Embedder", "Generator", "Discriminator"]
