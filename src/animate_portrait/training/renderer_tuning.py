"""Fine-tuning a NeuralRenderer on its sources: the cache, switching persons, and the CLI's one call.

`person_for` caches results under `cache_dir()` by a hash of the source crops, the weights and the
settings, so reruns and batch runs do not redo the work; `apply_person` lets one renderer serve person
after person (a batch) without mixing them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import InputError
from ..models.perceptual import find_mobilenet, load_mobilenet
from ..weights import load_weights, sha256
from .finetune import TUNED_G, FinetuneSettings, finetune
from .person_file import FORMAT, Person, load_person, save_person

if TYPE_CHECKING:
    from ..engines.neural import NeuralRenderer
    from ..pipeline import Pipeline
    from ..types import SourceFace

# Sensible step counts per device: off on a CPU unless asked (100 steps at 256² take minutes there).
DEFAULT_STEPS = {"cuda": 200, "mps": 100, "cpu": 0}
COMMAND_STEPS = {"cuda": 200, "mps": 100, "cpu": 50}  # `finetune` is an explicit request: short on CPU


def cache_dir() -> Path:
    """$ANIMATE_PORTRAIT_CACHE, else $XDG_CACHE_HOME/animate-portrait, else ~/.cache/animate-portrait."""
    env = os.environ.get("ANIMATE_PORTRAIT_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "animate-portrait"


def cache_key(sources: Sequence[SourceFace], weights_sha256: str, settings: FinetuneSettings) -> str:
    """sha256 over the source crops and landmarks (what the run sees), the weights and the settings."""
    h = hashlib.sha256()
    h.update(f"{FORMAT}\n{weights_sha256}\n{json.dumps(settings.to_dict(), sort_keys=True)}\n".encode())
    for src in sources:
        h.update(np.ascontiguousarray(src.face, np.uint8).tobytes())
        h.update(np.ascontiguousarray(src.points, np.float32).tobytes())
    return h.hexdigest()


def _file_sha(path: Path) -> str | None:
    try:
        return sha256(Path(path))
    except OSError:
        return None


def finetune_renderer(
    renderer: NeuralRenderer,
    sources: Sequence[SourceFace],
    settings: FinetuneSettings,
    on_step: Callable[[int], None] | None = None,
    mobilenet: str | None = None,
) -> Person:
    """Fine-tune the renderer's model on these sources (D and the perceptual net are loaded for it).

    E, G and D come fresh from the renderer's weights file: a renderer that already rendered another
    person (a batch) has that person's tensors in its G, and tuning must start from the meta-learned ones.
    """
    _, nets, _ = load_weights(renderer.weights, renderer.device, parts=("E", "G", "D"))
    try:
        perc = load_mobilenet(find_mobilenet(mobilenet), renderer.device)
    except FileNotFoundError as exc:
        raise InputError(None, f"fine-tuning needs the perceptual network: {exc}") from None
    faces = renderer._to_model(np.stack([src.face for src in sources]))
    points = renderer._points(np.stack([src.points for src in sources]))
    person = finetune(nets["E"], nets["G"], nets["D"], faces, points, settings, perc, on_step)
    person.card.update(
        weights_sha256=renderer.card["sha256"],
        weights_file=Path(renderer.weights).name,
        sources=[{"path": str(src.path), "sha256": _file_sha(src.path)} for src in sources],
    )
    return person


Bar = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


def person_for(
    renderer: NeuralRenderer,
    sources: Sequence[SourceFace],
    settings: FinetuneSettings,
    bar: Bar | None = None,
    use_cache: bool = True,
) -> tuple[Person, bool]:
    """The tuned person for these sources: from the cache when this exact run was done before.

    Returns (person, cache_hit). `bar(label, total)` is a progress-bar context (console.Reporter.bar).
    """
    sha = renderer.card["sha256"]
    path = cache_dir() / "finetune" / f"{cache_key(sources, sha, settings)}.safetensors"
    if use_cache and path.is_file():
        try:
            return load_person(path, renderer.G, sha), True
        except InputError:
            pass  # a damaged cache entry: redo the work and overwrite it
    with bar("fine-tuning", settings.steps) if bar else nullcontext(lambda n=1: None) as step:
        person = finetune_renderer(renderer, sources, settings, on_step=step)
    if use_cache:
        save_person(path, person)
    return person, False


def apply_person(renderer: NeuralRenderer, person: Person | None) -> None:
    """Render with `person` (None: the meta-learned model). The G tensors an earlier person replaced go
    back first, so one renderer can serve person after person (a batch) without mixing them."""
    while "inner" in vars(renderer):  # a wrapper (engines/mouth.py) around the neural renderer
        renderer = renderer.inner
    meta = getattr(renderer, "_meta_g", None)
    own = renderer.G.state_dict()
    if meta is None:  # the first person: keep what it replaces
        meta = {n: v.detach().clone() for n, v in own.items() if n.startswith(TUNED_G)}
        renderer._meta_g = meta  # type: ignore[attr-defined]
    elif renderer.person is not None:
        with torch.no_grad():
            for name, value in meta.items():
                own[name].copy_(value)
        renderer.person = None
    if person is not None:
        renderer.use_person(person)


def use_person_file(renderer: NeuralRenderer, path: Path) -> Person:
    """`--person`: load a person file, check it against the renderer's weights, and render with it."""
    person = load_person(path, renderer.G, renderer.card["sha256"])
    apply_person(renderer, person)
    return person


def finetune_pipeline(
    pipeline: Pipeline,
    paths: Sequence[Path],
    steps: int,
    bar: Bar | None = None,
    info: Callable[[str], None] | None = None,
    settings: FinetuneSettings | None = None,
) -> list[SourceFace]:
    """`--finetune-steps N`: load the sources, fine-tune (or take the cached result), render with it.

    Returns the loaded sources, for `Pipeline.animate(loaded=...)`.
    """
    loaded = pipeline.load_sources(paths, info)
    st = settings if settings is not None else FinetuneSettings(steps=steps)
    person, hit = person_for(pipeline.renderer, loaded, st, bar)
    if hit and info is not None:
        info(f"fine-tuning: {steps} steps on these sources were done before; using the cached result")
    apply_person(pipeline.renderer, person)
    return loaded


def default_steps(device: str, table: dict[str, int] = DEFAULT_STEPS) -> int:
    return table.get(torch.device(device).type, 0)
