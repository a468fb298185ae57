"""What self- and cross-reenactment share: table rows (`Setup`), the judge that looks at output frames,
and per-frame accumulators that become per-clip numbers."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import identity, metrics
from ..types import MAX_TRAVEL, Landmarks, SourceFace

if TYPE_CHECKING:
    from ..engines import Renderer
    from ..landmarks import LandmarkDetector
    from ..models.perceptual import MobileNetV2Features


VARIANTS = ("feed-forward", "fine-tuned")


@dataclass(frozen=True)
class Setup:
    """One row of the table: an engine fed K source frames.

    `variant` names anything else that changes the renderer for the same engine and K: "fine-tuned" is the
    paper's §3.3 stage (training/finetune.py) run on the K sources before rendering, neural engine only.
    """

    engine: str
    shots: int = 1
    variant: str = "feed-forward"

    @property
    def label(self) -> dict[str, object]:
        return {"engine": self.engine, "shots": self.shots, "variant": self.variant}


@dataclass
class RendererFactory:
    """Builds a fresh renderer per (setup, clip): `prepare` is stateful, so rows never share one.

    `finetune_steps`: the steps of the "fine-tuned" rows. Their results go through the fine-tuning
    cache (`renderer_tuning.person_for`), so an evaluation run again on the same clips and weights does
    not tune again.
    """

    size: int
    device: str
    weights: Path | None = None
    finetune_steps: int = 0
    mouth: bool = True  # paint the mouth interior (engines/mouth.py), as `animate` does by default
    max_travel: float | None = MAX_TRAVEL  # cross-reenactment's retargeting, as `animate`'s (types.py)
    gaze: bool = True  # the output's irises follow the driver's (gaze.py), as `animate`'s
    mouth_interior: str = "painted"  # what a painted opening shows (engines/mouth.py), as `animate`'s

    def make(self, setup: Setup) -> Renderer:
        from ..engines import get_renderer, paints_mouth

        if setup.variant not in VARIANTS:
            raise ValueError(f"unknown variant {setup.variant!r}")
        if setup.variant == "fine-tuned" and setup.engine != "neural":
            raise ValueError(f"only the neural engine can be fine-tuned, not {setup.engine!r}")
        mouth = paints_mouth(setup.engine, self.mouth)
        return get_renderer(setup.engine, self.size, self.device, self.weights, mouth=mouth)

    def prepared(self, setup: Setup, sources: list[SourceFace]) -> tuple[Renderer, dict[str, float]]:
        """A renderer ready for `setup` on its K sources (fine-tuned first when the setup says so), and
        numbers about the preparation for the per-clip items (fine-tuning seconds, cache hit)."""
        renderer = self.make(setup)
        extra: dict[str, float] = {}
        if setup.variant == "fine-tuned":
            from ..training.finetune import FinetuneSettings
            from ..training.renderer_tuning import apply_person, person_for

            person, hit = person_for(renderer, sources, FinetuneSettings(steps=self.finetune_steps))
            apply_person(renderer, person)
            # The seconds the tuning took when it ran (a cache hit keeps the card of that run).
            extra = {"finetune_seconds": float(person.card.get("seconds", float("nan"))),
                     "finetune_cached": float(hit)}  # fmt: skip
        renderer.prepare(sources)
        return renderer, extra

    def check(self, engine: str) -> str | None:
        """None when the engine can be built here, else why not (neural before its weights exist)."""
        from ..errors import InputError

        try:
            self.make(Setup(engine))
        except (InputError, OSError) as exc:
            return str(exc)
        return None


@dataclass(frozen=True)
class Seen:
    """What the judge found in one output frame: landmarks (crop px) and identity descriptor, or None."""

    points: np.ndarray | None
    descriptor: np.ndarray | None


class Judge:
    """Looks at rendered crops the way a viewer's tools would: re-detects the face (no help from the
    target landmarks, so a smeared face counts as lost), describes its identity, and compares pixels."""

    def __init__(self, detector: LandmarkDetector, device: str = "cpu") -> None:
        self.detector = detector
        self.device = device
        self._net: MobileNetV2Features | None = None

    @property
    def net(self) -> MobileNetV2Features:
        if self._net is None:
            import torch

            from ..errors import InputError
            from ..models.perceptual import find_mobilenet, load_mobilenet  # training's net and loader

            try:
                path = find_mobilenet(None)
            except FileNotFoundError as exc:
                raise InputError(None, f"perceptual distance needs the backbone: {exc}") from None
            self._net = load_mobilenet(path, torch.device(self.device))
        return self._net

    def look(self, image: np.ndarray) -> Seen:
        # Contiguous: renderers may return permuted tensor views, which dlib misreads.
        image = np.ascontiguousarray(image)
        faces = self.detector.detect(image)
        if not faces:
            return Seen(None, None)
        return Seen(faces[0].points, identity.descriptor(image, faces[0]))

    def truth(self, reals: list[np.ndarray], points: np.ndarray) -> Truth:
        """What every row compares with, computed once per batch of real target crops."""
        return Truth(
            crops=reals,
            points=points,
            features=metrics.unit_features(reals, self.net),
            descriptors=[identity.descriptor(r, Landmarks(p)) for r, p in zip(reals, points, strict=True)],
        )

    def full_reference(self, outputs: np.ndarray, truth: Truth) -> list[dict[str, float]]:
        """Per-frame metrics of a batch of output crops against the real crops (self-reenactment)."""
        far = metrics.perceptual_between(metrics.unit_features(list(outputs), self.net), truth.features)
        rows = []
        for out, real, pts, real_id, lpips in zip(
            outputs, truth.crops, truth.points, truth.descriptors, far, strict=True
        ):
            seen = self.look(out)
            rows.append(
                {
                    "psnr": metrics.psnr(out, real),
                    "ssim": metrics.ssim(out, real),
                    "face_ssim": metrics.face_ssim(out, real, pts),
                    "perceptual": float(lpips),
                    "mouth_l1": metrics.mouth_l1(out, real, pts),
                    "eyes_l1": metrics.eyes_l1(out, real, pts),
                    "landmark_error": metrics.landmark_error(seen.points, pts),
                    "identity": identity.compare(seen.descriptor, real_id),
                    "opening": np.nan if seen.points is None else float(metrics.mouth_opening(seen.points)),
                    "face_found": float(seen.points is not None),
                }
            )
        return rows


@dataclass
class Truth:
    """A batch of real target crops with their landmarks (crop px), backbone features and descriptors."""

    crops: list[np.ndarray]
    points: np.ndarray
    features: list
    descriptors: list[np.ndarray | None]


@dataclass
class Series:
    """Per-frame values of one (setup, clip) or (setup, pair), by metric name, in frame order."""

    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, **named: float) -> None:
        for name, value in named.items():
            self.values[name].append(float(value))

    def __len__(self) -> int:
        return max((len(v) for v in self.values.values()), default=0)


def mean_finite(values: list[float] | np.ndarray) -> float:
    """Mean over finite values (NaN when none): a frame with no face has no landmark error, and is
    counted instead in `face_found`, reported next to it."""
    arr = np.asarray(values, np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def mean_over(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per-metric mean over clips (or pairs), each counted once whatever its length; NaNs skipped."""
    names = sorted({k for row in rows for k in row})
    return {k: mean_finite([row.get(k, np.nan) for row in rows]) for k in names}
