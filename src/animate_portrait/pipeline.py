"""Pipeline: wires the stages for one portrait; the CLI, batch, demo and evaluation all go through it.

    sources ─► landmarks ─► crop ─┐
    driver ──► Motion ─► retarget ┴► Renderer (+ mouth) ─► gaze ─► detail ─► paste back ─► VideoWriter
                                                                        (a photo driver: StillWriter)

Everything after `analyse` streams in small batches: memory does not grow with the video's length.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import detail, face, gaze, motion, still, video
from .compare import DriverPanels, SideBySideWriter
from .engines import Renderer, get_renderer, paints_mouth
from .engines.base import Traced, rendered
from .engines.mouth import profiles_arg
from .errors import InputError, NoFaceError
from .landmarks import LandmarkDetector, get_detector
from .landmarks.magnify import Magnified, is_small, scale_image
from .types import Landmarks, Motion, RenderConfig, SourceFace

MOTION_SUFFIX = ".npz"
# Past this side a portrait is downscaled before anything else: H.264 and memory stay sane (8000² → 3840²).
MAX_PORTRAIT_SIDE = 3840
RENDER_BATCH = 8

Progress = Callable[[int], None]  # called with the number of frames just finished
VideoFile = video.VideoWriter | still.StillWriter
VideoOut = VideoFile | SideBySideWriter  # what Pipeline.video_writer gives: the same interface


@dataclass(frozen=True)
class Chunk:
    """A few driver frames, retargeted onto P portraits: what `Pipeline.render_group` renders."""

    targets: np.ndarray  # (P, t, 68, 2) crop px
    looks: gaze.GazeMoves | None  # moves every portrait's irises as the driver's; None: they stay
    mouths: np.ndarray | None  # (t, 2, R) what the driver's mouth shows (--mouth-interior driver); or None


@dataclass(frozen=True)
class AnimateResult:
    """What one run produced; the CLI prints it (as JSON with --json)."""

    source: str
    output: str
    frames: int
    fps: float
    width: int
    height: int
    audio: bool
    driver_frames_filled: int
    faces_in_portrait: int
    faces_animated: int
    seconds: float


def resolve_device(name: str) -> str:
    """`auto` takes CUDA, then Apple's MPS, then the CPU."""
    if name != "auto":
        return name
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    return scale_image(image, max_side / max(height, width))


class Pipeline:
    """One configured set of stages: a landmark detector and a renderer, reused across portraits."""

    def __init__(self, config: RenderConfig, *, precision: str = "auto", compile: bool = False) -> None:
        """`precision` and `compile` tune the neural engine's forward pass (see `get_renderer`)."""
        self.config = config
        self.device = resolve_device(config.device)
        self.precision = precision
        self.compile = compile
        self._detector: LandmarkDetector | None = None
        self._renderer: Renderer | None = None

    @property
    def detector(self) -> LandmarkDetector:
        if self._detector is None:
            self._detector = get_detector(self.config.landmarks)
        return self._detector

    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            cfg = self.config
            self._renderer = get_renderer(
                cfg.engine,
                cfg.size,
                self.device,
                cfg.weights,
                precision=self.precision,
                compile=self.compile,
                mouth=self.paints_mouth,
            )
        return self._renderer

    def load_renderer(self) -> None:
        """Load the renderer (and its weights) now: bad weights then fail before a long driver analysis."""
        _ = self.renderer

    # --- inputs -------------------------------------------------------------------------------
    def find_faces(self, path: Path) -> tuple[np.ndarray, list[Landmarks]]:
        """Read a portrait (downscaled past MAX_PORTRAIT_SIDE) and find its faces, largest first."""
        image = _downscale(video.read_image(path), MAX_PORTRAIT_SIDE)
        faces = self.detector.detect(image)
        if not faces and is_small(*image.shape[:2]):  # a small face (2 of the 265 shared portraits)
            faces = Magnified(self.detector).detect(image)
        if not faces:
            raise NoFaceError(path, "no face found in the image")
        return image, faces

    def load_source(self, path: Path) -> SourceFace:
        """Read a portrait, find its largest face and cut the working-size crop around it."""
        image, faces = self.find_faces(path)
        return self.source_from(path, image, faces[0], n_faces=len(faces))

    def load_sources(
        self, paths: Sequence[Path], warn: Callable[[str], None] | None = None
    ) -> list[SourceFace]:
        """K images of one person, lead first: same-person check, and only the lead keeps its picture.

        See `sources.load_sources`: a stranger as the lead (or no clear majority) is an InputError; a
        minority of strangers among the others is left out, with a `warn` line for each.
        """
        from .sources import load_sources

        return load_sources(self, [Path(p) for p in paths], warn)

    def all_faces(self, lead: SourceFace) -> list[SourceFace]:
        """Every face in the lead's picture, largest first (the lead's own first), each with its crop."""
        if lead.n_faces == 1:
            return [lead]
        _, faces = self.find_faces(lead.path)
        return [self.source_from(lead.path, lead.image, found, n_faces=len(faces)) for found in faces]

    def source_from(self, path: Path, image: np.ndarray, found: Landmarks, n_faces: int = 1) -> SourceFace:
        crop = face.crop_for(found, self.config.size)
        return SourceFace(
            path=Path(path),
            image=image,
            crop=crop,
            face=face.extract(image, crop),
            points=crop.to_crop(found.points),
            n_faces=n_faces,
        )

    def analyse(self, driver: Path, on_frame: Callable[[], None] | None = None) -> Motion:
        """A driver video analysed now, or a motion file analysed before."""
        driver = Path(driver)
        if driver.suffix.lower() == MOTION_SUFFIX:
            return motion.load_motion(driver)
        return motion.analyse_driver(driver, self.detector, self.config.max_frames, on_frame)

    # --- the run ------------------------------------------------------------------------------
    def frames_used(self, driving: Motion) -> int:
        """How many of the driver's frames the output gets: all, or the first --max-frames."""
        return min(self.config.max_frames or driving.n_frames, driving.n_frames)

    def targets(self, leads: Sequence[SourceFace], driving: Motion) -> Iterator[np.ndarray]:
        """(P, t, 68, 2) crop px: the driver's frames (up to --max-frames) retargeted onto each portrait,
        RENDER_BATCH frames at a time so memory stays flat in video length. Relative motion is measured
        against the driver's neutral face (motion.neutral_reference), found once over all its frames."""
        n = self.frames_used(driving)
        points = driving.points[:n]
        neutral = motion.neutral_reference(points, driving.found[:n])
        for start in range(0, len(points), RENDER_BATCH):
            chunk = points[start : start + RENDER_BATCH]
            yield np.stack(
                [
                    motion.retarget(
                        lead.points,
                        chunk,
                        relative=self.config.relative,
                        reference=neutral,
                        max_travel=self.config.max_travel,
                        region=self.config.region,
                        expression_scale=self.config.expression_scale,
                    )
                    for lead in leads
                ]
            )

    @property
    def follows_gaze(self) -> bool:
        """Whether the portrait's irises take the driver's gaze: --gaze, with a --region that has the eyes,
        and an engine that moves the face (static moves nothing)."""
        cfg = self.config
        return cfg.gaze and cfg.region in gaze.REGIONS and cfg.engine != "static"

    def gaze_changes(self, driving: Motion) -> np.ndarray | None:
        """(T, 2) the driver's gaze change per frame (gaze.py), or None where the irises stay: not
        `follows_gaze`, or a driver without gaze (its eyes never read, or a motion file from before)."""
        if not self.follows_gaze or driving.gaze is None:
            return None
        return gaze.gaze_changes(driving.gaze[: self.frames_used(driving)])

    @property
    def paints_mouth(self) -> bool:
        """Whether the renderer paints the mouth's interior (engines/mouth.py; engines.paints_mouth)."""
        return paints_mouth(self.config.engine, self.config.mouth)

    def mouth_profiles(self, driving: Motion) -> np.ndarray | None:
        """(T, 2, R) what the driver's mouth shows when open (engines/mouth.py), for a renderer that paints
        the portrait's with it (--mouth-interior driver); None: it does not (the default, --no-mouth,
        static), or the driver's mouth was never read."""
        if not self.paints_mouth or self.config.mouth_interior != "driver" or driving.mouth is None:
            return None
        return driving.mouth[: self.frames_used(driving)]

    def moves(self, leads: Sequence[SourceFace], driving: Motion) -> Iterator[Chunk]:
        """`targets` chunk by chunk, each with what moves the leads' irises over its frames and what their
        mouths show; the leads' own gaze is read once."""
        changes = self.gaze_changes(driving)
        own = (
            None if changes is None else np.stack([gaze.read_gaze(lead.face, lead.points) for lead in leads])
        )
        mouths = self.mouth_profiles(driving)
        start = 0
        for chunk in self.targets(leads, driving):
            t = chunk.shape[1]
            looks = None if own is None else gaze.GazeMoves(own, changes[start : start + t])
            yield Chunk(chunk, looks, None if mouths is None else mouths[start : start + t])
            start += t

    def prepare_group(self, leads: Sequence[SourceFace]) -> None:
        """Ready `render_group` for these leads (one source each): the renderers that render a group in
        one pass prepare it now; the others prepare lead by lead as they render."""
        if getattr(self.renderer, "groups", False):
            self.renderer.prepare_group([[lead] for lead in leads])

    def render_group(self, leads: Sequence[SourceFace], chunk: Chunk, traced: bool = False) -> Traced:
        """A chunk's (P, t, 68, 2) targets (from `moves`) → (P, t, size, size, 3) crops: in one pass where
        the renderer can (it says so with `groups = True`, as the neural engine does, after
        `prepare_group`), else portrait by portrait (static and warp: their `prepare` is a copy, so
        preparing for every chunk costs nothing). Every portrait's irises and mouth follow the driver's.
        `traced`: with the (P, t, g, g, 2) grids where the crops read each lead (detail.py), else None."""
        renderer, targets = self.renderer, chunk.targets
        mouths = profiles_arg(chunk.mouths)
        if getattr(renderer, "groups", False):
            out = rendered(renderer, targets, traced, mouths, group=True)
        else:
            each = []
            for lead, own in zip(leads, targets, strict=True):
                renderer.prepare([lead])
                each.append(rendered(renderer, own, traced, mouths))
            out = Traced(*(None if part[0] is None else np.stack(part) for part in zip(*each, strict=True)))
        return out if chunk.looks is None else out._replace(frames=chunk.looks.apply(out.frames, targets))

    def details(self, leads: Sequence[SourceFace]) -> list[detail.Detail | None]:
        """What gives each lead's face its full-resolution detail when pasted back (detail.py); None in a
        crop, with --no-detail, or where the picture holds the face at about the working size."""
        cfg = self.config
        on = not cfg.crop_only and cfg.detail
        return [detail.Detail(lead, self.device) if on and detail.worth_it(lead) else None for lead in leads]

    def render_frames(self, sources: Sequence[SourceFace], driving: Motion) -> Iterator[np.ndarray]:
        """Frames of the face crop (or of the whole picture), one driver frame at a time."""
        lead = sources[0]
        if self.faces_animated(lead) > 1:
            yield from self._render_every_face(lead, driving)
            return
        renderer = self.renderer
        renderer.prepare(sources)
        details = self.details([lead])
        for chunk in self.moves([lead], driving):
            crops, grids = rendered(
                renderer, chunk.targets[0], details[0] is not None, profiles_arg(chunk.mouths)
            )
            crops = crops[None] if chunk.looks is None else chunk.looks.apply(crops[None], chunk.targets)
            if self.config.crop_only:
                yield from crops[0]
                continue
            yield from pasted(lead.image, [lead], details, crops, None if grids is None else grids[None])

    def faces_animated(self, lead: SourceFace) -> int:
        """How many faces of the lead's picture are driven: all with `--faces all` (not in a crop)."""
        every = self.config.faces == "all" and not self.config.crop_only
        return lead.n_faces if every else 1

    def _render_every_face(self, lead: SourceFace, driving: Motion) -> Iterator[np.ndarray]:
        """Whole pictures with every face in them driven alike (`--faces all`), each pasted back."""
        leads = self.all_faces(lead)
        self.prepare_group(leads)
        details = self.details(leads)
        for chunk in self.moves(leads, driving):
            crops, grids = self.render_group(leads, chunk, traced=any(details))  # (faces, t, size, size, 3)
            yield from pasted(lead.image, leads, details, crops, grids)

    def animate(
        self,
        source_paths: Sequence[Path],
        driving: Motion,
        output: Path,
        progress: Progress | None = None,
        warn: Callable[[str], None] | None = None,
        loaded: Sequence[SourceFace] | None = None,
    ) -> AnimateResult:
        """Animate one portrait (K images of one person) with an analysed driver into `output`.

        `loaded`: the sources already loaded from `source_paths` (the CLI's fine-tuning step needs them
        first), so that their faces are not detected twice.
        """
        started = time.perf_counter()
        video.check_output(output, self.config.overwrite)
        sources = list(loaded) if loaded is not None else self.load_sources(source_paths, warn)
        lead = sources[0]
        if self.config.crop_only:
            width = height = self.config.size
        else:
            height, width = lead.image.shape[:2]
        with self.video_writer(output, driving, (width, height)) as writer:
            for frame in self.render_frames(sources, driving):
                writer.write(frame)
                if progress is not None:
                    progress(1)
        return AnimateResult(
            source=str(lead.path),
            output=str(output),
            frames=writer.n_frames,
            fps=driving.fps,
            width=writer.size[0],
            height=writer.size[1],
            audio=writer.has_audio,  # False for a GIF, or a driver without sound
            driver_frames_filled=driving.n_filled,
            faces_in_portrait=lead.n_faces,
            faces_animated=self.faces_animated(lead),
            seconds=round(time.perf_counter() - started, 3),
        )

    def video_writer(self, output: Path, driving: Motion, size: tuple[int, int]) -> VideoOut:
        """The output's writer for frames of `size` (w, h): the driver's frame rate and soundtrack, and
        with --side-by-side the driver's frame on the left (the video is then that much wider)."""
        cfg, n = self.config, self.frames_used(driving)
        panels = DriverPanels(driving, size[1], n) if cfg.side_by_side else None
        wide = size if panels is None else (size[0] + panels.width, size[1])
        if still.is_still(output):
            writer: VideoFile = still.StillWriter(output, wide, n, cfg.overwrite)
        else:
            writer = video.VideoWriter(output, driving.fps, wide, self.audio_source(driving), cfg.overwrite)
        return writer if panels is None else SideBySideWriter(writer, panels)

    def audio_source(self, driving: Motion) -> Path | None:
        """The output's soundtrack: --audio's file, else the driver video's own (None: silent)."""
        if not self.config.audio:
            return None
        if self.config.audio_file is not None:
            return Path(self.config.audio_file)
        if not (driving.has_audio and driving.source):
            return None
        path = Path(driving.source)
        if not path.is_file():
            # A motion file made on another machine: the frames still render, without sound.
            return None
        return path


def pasted(
    image: np.ndarray,
    leads: Sequence[SourceFace],
    details: Sequence[detail.Detail | None],
    crops: np.ndarray,
    grids: np.ndarray | None,
) -> Iterator[np.ndarray]:
    """`image` with the P leads' faces pasted back, for each of t frames: (P, t, size, size, 3) renders,
    at full resolution where a lead has its `details` entry, read through `grids` (P, t, g, g, 2) then."""
    faces, boxes = [], []
    for i, (lead, own, full) in enumerate(zip(leads, crops, details, strict=True)):
        faces.append(own if full is None else full.restore(own, grids[i]))
        boxes.append(lead.crop if full is None else full.crop)
    for t in range(crops.shape[1]):
        yield face.paste_back_all(image, [f[t] for f in faces], boxes)


def check_sources(paths: Sequence[Path]) -> None:
    """Fail before any work when a source path is plainly wrong."""
    if not paths:
        raise InputError(None, "no source image given (SOURCE... or --sources DIR)")
    for path in paths:
        if not Path(path).is_file():
            raise InputError(path, "no such file")
