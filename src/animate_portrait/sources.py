"""K-shot inputs: a folder of portraits, the same-person check, and loading K sources in bounded memory.

    SOURCE... + --sources DIR ─► paths ─► per image: detect → crop → dlib descriptor → drop the picture
                                                     └─► same_person(descriptors) ─► keep / warn / InputError

The first source is the *lead*: its picture is the one that gets animated (paste-back), so only it keeps
its full-resolution image. The other K−1 sources only feed the embedder's mean ê and the per-pixel source
fusion, which read the working-size crop; their `SourceFace.image` is therefore the face crop itself (the
same array as `SourceFace.face`, no copy), not the picture. Memory is one full picture plus K crops
(K × size² × 3 bytes), whatever K and however large the photos.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError
from .identity import SAME_PERSON, compare
from .types import SourceFace

if TYPE_CHECKING:
    from .pipeline import Pipeline

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
Warn = Callable[[str], None]


def images_in(folder: Path) -> list[Path]:
    """The images directly in `folder` (by suffix, any case), sorted by name; InputError if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    found = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.name,
    )
    if not found:
        raise InputError(folder, f"no images found ({', '.join(s[1:] for s in IMAGE_SUFFIXES)})")
    return found


def gather(paths: Sequence[Path] | None, folder: Path | None) -> list[Path]:
    """SOURCE arguments first (the first one stays the lead), then the folder's images; repeats dropped."""
    all_paths = [Path(p) for p in paths or []]
    if folder is not None:
        all_paths += images_in(folder)
    seen: set[Path] = set()
    unique = []
    for path in all_paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


@dataclass(frozen=True)
class Verdict:
    """What `same_person` decided about K descriptors (indices into them; 0 is the lead)."""

    reference: int  # the medoid: the source the others are measured against
    distances: np.ndarray  # (K,) each source's identity distance to the reference (inf: no descriptor)
    drop: tuple[int, ...] = ()  # a minority of non-lead sources that are someone else: drop and warn
    reject: int | None = None  # the source to name in an error (the lead, or one side of a split)


def same_person(descriptors: Sequence[np.ndarray | None], threshold: float = SAME_PERSON) -> Verdict:
    """Find the odd images out among K face descriptors of what should be one person.

    The reference is the medoid (the descriptor with the least total distance to the others; ties go to
    the lead), so one stranger cannot pull it the way it would pull a mean. A source at distance
    ≥ `threshold` from it is someone else. Then:

    - nobody off → keep all;
    - the lead is off (the others agree without it) → reject the lead: it is the picture to animate;
    - half or more are off (no clear majority, e.g. K = 2 with two people) → reject the farthest non-lead;
    - otherwise a minority of non-lead sources is off → drop them (the caller warns) and go on.
    """
    k = len(descriptors)
    if k < 2:
        return Verdict(0, np.zeros(k))
    pairwise = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            pairwise[i, j] = pairwise[j, i] = compare(descriptors[i], descriptors[j])
    # Missing descriptors count as very far (finite, so that the sums still rank the others).
    totals = np.minimum(pairwise, 10.0).sum(axis=1)
    reference = 0 if totals[0] <= totals.min() + 1e-9 else int(np.argmin(totals))
    distances = pairwise[reference].copy()
    if descriptors[reference] is None:
        distances[:] = np.inf
    off = [i for i in range(k) if distances[i] >= threshold]
    if not off:
        return Verdict(reference, distances)
    if 2 * len(off) >= k:
        others = [i for i in off if i != 0]
        worst = max(others, key=lambda i: distances[i]) if others else 0
        return Verdict(reference, distances, reject=worst)
    if 0 in off:
        return Verdict(reference, distances, reject=0)
    return Verdict(reference, distances, drop=tuple(off))


def _odd_message(verdict: Verdict, index: int, threshold: float) -> str:
    d = verdict.distances[index]
    how = "no face descriptor" if not np.isfinite(d) else f"identity distance {d:.2f} ≥ {threshold:g}"
    return f"not the same person as the other sources ({how})"


def load_sources(pipeline: Pipeline, paths: Sequence[Path], warn: Warn | None = None) -> list[SourceFace]:
    """Load K sources of one person, lead first, and check that they are one person (K > 1).

    Landmarks are found once per image; the dlib descriptor is computed from them on the full picture,
    which is then let go for every source but the lead (see the module docstring).
    """
    from . import identity

    check = len(paths) > 1
    sources: list[SourceFace] = []
    descriptors: list[np.ndarray | None] = []
    for i, path in enumerate(paths):
        image, faces = pipeline.find_faces(Path(path))
        source = pipeline.source_from(path, image, faces[0], n_faces=len(faces))
        if check:
            descriptors.append(identity.descriptor(image, faces[0]))
        if i > 0:
            source = replace(source, image=source.face)  # the picture goes; the crop stays
        del image
        sources.append(source)
    if not check:
        return sources
    verdict = same_person(descriptors)
    if verdict.reject is not None:
        raise InputError(paths[verdict.reject], _odd_message(verdict, verdict.reject, SAME_PERSON))
    for i in verdict.drop:
        if warn is not None:
            warn(f"warning: {paths[i]}: {_odd_message(verdict, i, SAME_PERSON)}; left out")
    return [s for i, s in enumerate(sources) if i not in verdict.drop]
