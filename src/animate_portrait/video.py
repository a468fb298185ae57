"""Media I/O through imageio-ffmpeg's bundled ffmpeg: images in, frames streamed in and out, audio muxed.

We call the bundled ffmpeg binary ourselves (`imageio_ffmpeg.get_ffmpeg_exe()`, argument lists, never a
shell) instead of `imageio_ffmpeg.read_frames/write_frames`, because those generators hide ffmpeg's exit
status and error log: a truncated driver would silently yield fewer frames, and a failed encode would leave
a broken MP4 that we would then rename into place. Everything streams one frame at a time.

Decoding and encoding run on background threads (pipe reads and writes release the GIL), so ffmpeg works
while the caller tracks landmarks or renders. Both hand frames through bounded queues: memory stays flat
in the video's length, and an error in a thread is raised in the caller as the same InputError.
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError
from .types import OUTPUT_FORMATS, VideoInfo

CRF = 18  # x264 quality: visually lossless on faces, ~3x smaller than crf 10

# Encoders by OUTPUT_FORMATS' family.
_H264 = ["-c:v", "libx264", "-preset", "medium", "-crf", str(CRF), "-pix_fmt", "yuv420p"]
# VP9 at crf 30: 1.7 grey levels from the x264 output on the demo's 512² frames, and 70% of its size; with
# row-mt and cpu-used 4 the whole 50-frame demo took 6.8 s against x264's 5.1 s here.
_VP9 = "-c:v libvpx-vp9 -crf 30 -b:v 0 -row-mt 1 -deadline good -cpu-used 4 -pix_fmt yuv420p".split()
# GIF: one palette for the whole video and only the rectangle that changed stored per frame (10x smaller
# than a palette per frame). A palette made from the whole video would make ffmpeg hold every frame until
# the end, so memory would grow with its length; instead it is made from the first frame (a talking portrait
# keeps its colours; octree kept a later open mouth closer than median cut did) plus a grey ramp for colours
# the first frame lacks.
_GIF_GREYS = np.repeat(np.linspace(0, 255, 16).round().astype(np.uint8)[:, None], 3, 1)
_GIF_USE = "[0:v][1:v]paletteuse=diff_mode=rectangle:dither=bayer:bayer_scale=5"
_VIDEO_RE = re.compile(r"Stream #\S+.*?: Video: (\w+).*?, (\d{2,5})x(\d{2,5})")
_AUDIO_RE = re.compile(r"Stream #\S+.*?: Audio: (\w+)")
_FPS_RE = re.compile(r"([\d.]+)(k?) (fps|tbr)")
_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")
_ROTATION_RE = re.compile(r"rotation of (-?[\d.]+) degrees|rotate\s*:\s*(-?\d+)")


# Frames held in a queue between a thread and the caller: enough to ride out a slow frame on either side,
# capped in bytes so that a 4K portrait's queue stays at tens of MB.
QUEUE_FRAMES = 16
QUEUE_BYTES = 64 << 20

T = TypeVar("T")


def _ffmpeg() -> str:
    import imageio_ffmpeg  # here, not at the top: a GPU bench of the renderer alone runs without it

    return imageio_ffmpeg.get_ffmpeg_exe()


def queue_frames(frame_bytes: int) -> int:
    """How many frames of `frame_bytes` a background queue holds: QUEUE_FRAMES, fewer for huge frames."""
    return max(2, min(QUEUE_FRAMES, QUEUE_BYTES // max(1, frame_bytes)))


_DONE = object()


def in_background(items: Iterator[T], maxsize: int) -> Iterator[T]:
    """Run the iterator `items` on a daemon thread, `maxsize` items ahead of the caller.

    An exception raised in the thread is raised here, after the items before it. When the caller stops
    early (break, an error, Ctrl-C), `items` is closed in its thread, so its own clean-up (killing ffmpeg)
    runs before this generator returns.
    """
    box: queue.Queue = queue.Queue(maxsize)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in items:
                if stop.is_set():
                    break
                box.put((item, None))
            else:
                box.put((_DONE, None))
        except BaseException as err:  # handed to the caller, which raises it as its own
            box.put((_DONE, err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="animate-portrait-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, err = box.get()
            if err is not None:
                raise err
            if item is _DONE:
                break
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a put() on a full queue until the thread has seen `stop`
            try:
                while True:
                    box.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


def _require_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "file not found")
    if not path.is_file():
        raise InputError(path, "not a file")
    if not os.access(path, os.R_OK):
        raise InputError(path, "cannot read the file (permission denied)")


def read_image(path: Path) -> np.ndarray:
    """Load a picture as RGB uint8, turned upright by its EXIF orientation, alpha dropped."""
    path = Path(path)
    _require_file(path)
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I"):  # 16-bit greys: keep the top 8 bits, not a clipped white
                grey = (np.asarray(im, np.int64) >> 8).clip(0, 255).astype(np.uint8)
                return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
            return np.ascontiguousarray(np.asarray(im.convert("RGB")))
    except UnidentifiedImageError:
        raise InputError(path, "not an image (unknown format)") from None
    except Image.DecompressionBombError:
        raise InputError(path, "image is too large to load safely") from None
    except OSError as e:
        raise InputError(path, f"corrupt or truncated image ({e})") from None


def _snap_fps(fps: float) -> Fraction:
    """ffmpeg prints 29.97 for 30000/1001; snap to the NTSC rational so long videos don't drift."""
    for base in (24, 30, 48, 60, 120):
        if abs(fps - base * 1000 / 1001) < 0.006:
            return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def _header(path: Path) -> str:
    """`ffmpeg -i` with no output prints the container's streams to stderr (and exits 1: expected)."""
    _require_file(path)
    res = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, timeout=60)
    return res.stderr.decode("utf-8", "replace")


def probe(path: Path) -> VideoInfo:
    """Read fps, size, frame-count estimate and audio codec from `ffmpeg -i`'s header."""
    path = Path(path)
    log = _header(path)
    video = _VIDEO_RE.search(log)
    if video is None:
        # A cut-off MP4 still starts with a valid header (ftyp), so ffmpeg recognises the format with
        # confidence; a text file named .mp4 is only "detected with low score" before it fails.
        if "low score" not in log and ("moov atom not found" in log or "partial file" in log):
            raise InputError(path, "truncated or corrupt video")
        if "Invalid data found" in log or "Stream #" not in log:
            raise InputError(path, "not a video (ffmpeg cannot read it)")
        raise InputError(path, "has no video stream")
    w, h = int(video.group(2)), int(video.group(3))
    rot = _ROTATION_RE.search(log)
    if rot and round(float(rot.group(1) or rot.group(2))) % 180 == 90:
        w, h = h, w  # ffmpeg auto-rotates phone videos while decoding, so report the upright size
    line = log[video.start() : log.find("\n", video.start())]
    fps_m = _FPS_RE.search(line)
    fps = float(fps_m.group(1)) * (1000 if fps_m.group(2) else 1) if fps_m else 0.0
    if fps <= 0:
        raise InputError(path, "video has no frame rate")
    dur = _DURATION_RE.search(log)
    secs = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else 0.0
    audio = _AUDIO_RE.search(log)
    return VideoInfo(
        fps=float(_snap_fps(fps)),
        size=(w, h),
        n_frames=max(1, round(secs * fps)),
        has_audio=audio is not None,
        audio_codec=audio.group(1) if audio else None,
    )


def read_frames(path: Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Stream RGB uint8 frames; InputError when the file is not a decodable video or yields no frame.

    Errors in the middle of the file (a truncated download) are raised after the last good frame, so a
    caller never mistakes a cut-off driver for a complete one. A background thread reads up to
    `queue_frames` frames ahead of the caller.
    """
    path = Path(path)
    info = probe(path)  # fails early, before any frame, for missing/non-video files
    w, h = info.size
    yield from in_background(_decode(path, info, max_frames), queue_frames(w * h * 3))


def _decode(path: Path, info: VideoInfo, max_frames: int | None) -> Iterator[np.ndarray]:
    w, h = info.size
    nbytes = w * h * 3
    cmd = [_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-an", "-sn"]
    if path.suffix.lower() == ".gif":
        # Each GIF frame once. GIF delays are whole centiseconds, so 30 fps is stored as 30/40/30 ms, and
        # ffmpeg's constant-rate default would repeat frames; a GIF has no sound to stay in sync with.
        cmd += ["-fps_mode", "passthrough"]
    else:
        # Constant rate at the probed fps, the rate the output is written at. A phone's variable-rate
        # video otherwise decodes at its highest rate (ffmpeg's tbr): 60 frames for 2 s of a 30-then-10
        # fps clip whose header says 22.22 fps, so the output ran 2.7 s against 2 s of its audio.
        cmd += ["-fps_mode", "cfr", "-r", str(_snap_fps(info.fps))]
    if max_frames is not None:
        cmd += ["-frames:v", str(int(max_frames))]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    n = 0
    # stderr goes to a temp file, not a pipe: a chatty decoder can't fill a pipe buffer and deadlock us.
    with tempfile.TemporaryFile() as errlog:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errlog, start_new_session=True)
        try:
            assert proc.stdout is not None
            while max_frames is None or n < max_frames:
                buf = bytearray(nbytes)  # a fresh, writable buffer per frame: callers may keep or edit frames
                view, got = memoryview(buf), 0
                while got < nbytes and (k := proc.stdout.readinto(view[got:])):
                    got += k
                if got < nbytes:
                    break
                n += 1
                yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
            proc.stdout.close()
            rc = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:  # the caller stopped early or was interrupted
                proc.kill()
                proc.wait()
        if max_frames is not None and n >= max_frames:
            return
        errlog.seek(0)
        err = errlog.read().decode("utf-8", "replace").strip()
    if rc != 0 or _is_fatal(err):
        raise InputError(path, f"truncated or corrupt video (decoding failed after {n} frames)")
    if n == 0:
        raise InputError(path, "video has no decodable frames")


def _is_fatal(err: str) -> bool:
    # Benign decoder chatter exists (e.g. a missing reference frame at the very start); these don't.
    return any(s in err for s in ("partial file", "Invalid data found", "moov atom not found", "truncat"))


def check_audio(path: Path) -> None:
    """Fail before any work when a soundtrack (--audio) is missing or holds no sound."""
    path = Path(path)
    log = _header(path)
    if _AUDIO_RE.search(log) is None:
        if "Invalid data found" in log or "Stream #" not in log:
            raise InputError(path, "not an audio or video file (ffmpeg cannot read it)")
        raise InputError(path, "has no audio stream")


def output_format(path: Path) -> str:
    """The encoder family for an output's suffix (OUTPUT_FORMATS); InputError for any other suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        named = f"format '{suffix}'" if suffix else "format (no file extension)"
        raise InputError(path, f"unsupported output {named}; use {', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[suffix]


def has_sound(path: Path) -> bool:
    """Whether an output of this name can carry the driver's audio (GIF and still images can't)."""
    return output_format(path) not in ("gif", "still")


def check_output(path: Path, overwrite: bool) -> None:
    """Fail before any work when a video can't be written there: unknown format, or check_writable's."""
    output_format(path)
    check_writable(path, overwrite)


def check_writable(path: Path, overwrite: bool) -> None:
    """Fail before any work when the output can't be written: missing/unwritable folder, existing file."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(path, f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(path, f"output folder {folder} is not writable")
    if path.is_dir():
        raise InputError(path, "output is a folder, expected a file name")
    if path.exists() and not overwrite:
        raise InputError(path, "output already exists (use --overwrite to replace it)")


class VideoWriter:
    """Write a video atomically: H.264 + AAC (MP4, MOV, MKV), VP9 + Opus (WebM) or GIF (no sound), with
    the audio of `audio_from` (if it has any) muxed in.

    Frames go to a temp file beside `path` (same filesystem, so the final `os.replace` is atomic); any
    exception, KeyboardInterrupt included, kills ffmpeg and deletes the temp file. yuv420p needs even
    sizes, so an odd width/height is padded by one replicated pixel (the video is then 1 px larger).
    `write` only queues the frame: a thread feeds ffmpeg, so encoding overlaps the caller's rendering.
    """

    def __init__(
        self,
        path: Path,
        fps: float,
        size: tuple[int, int],
        audio_from: Path | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        check_output(self.path, overwrite)
        self.format = output_format(self.path)
        if self.format == "still":
            raise ValueError(f"{self.path}: a still image is written by still.StillWriter")
        self.fps = _snap_fps(float(fps))
        self.size = (int(size[0]), int(size[1]))
        self.out_size = (self.size[0] + self.size[0] % 2, self.size[1] + self.size[1] % 2)
        self.audio_from = Path(audio_from) if audio_from is not None else None
        # any media file works as the audio source: a driver video, or a plain audio file
        self.has_audio = (
            self.audio_from is not None
            and has_sound(self.path)
            and _AUDIO_RE.search(_header(self.audio_from)) is not None
        )
        self.n_frames = 0
        self.tmp = temp_path(self.path)
        # With audio the frames are encoded first, alone, and the sound is muxed in once their number is
        # known: ffmpeg's -shortest overshot by up to a second when the first frame came late (a neural
        # model loading), because the audio it had read meanwhile was flushed after the video's end.
        self.tmp_frames = temp_path(self.path) if self.has_audio else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._errlog: IO[bytes] | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(
            queue_frames(self.out_size[0] * self.out_size[1] * 3)
        )
        self._thread: threading.Thread | None = None
        self._palette_dir: tempfile.TemporaryDirectory[str] | None = None  # GIF only
        self._broken = False  # set by the feeding thread when ffmpeg stopped reading (it exited)

    def _command(self, palette: Path | None = None) -> list[str]:
        w, h = self.out_size
        cmd = [_ffmpeg(), "-nostdin", "-y", "-v", "error"]
        cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(self.fps), "-i", "-"]
        if self.format == "gif":
            assert palette is not None, "a GIF starts at its first frame, which makes its palette"
            cmd += ["-i", str(palette), "-lavfi", _GIF_USE, "-loop", "0"]
        else:
            cmd += _VP9 if self.format == "vp9" else _H264
        if self.tmp_frames is not None:  # frames only: _add_audio writes the container the output keeps
            return cmd + [str(self.tmp_frames)]
        return cmd + self._container_flags() + [str(self.tmp)]

    def _container_flags(self) -> list[str]:
        if self.path.suffix.lower() in (".mp4", ".m4v", ".mov"):
            return ["-movflags", "+faststart"]  # the index first, so a browser plays it while it loads
        return []

    def _add_audio(self) -> None:
        """The encoded frames (copied) + `audio_from`'s sound, cut or padded with silence to exactly the
        frames' duration, into the temp file that is renamed over the output."""
        assert self.tmp_frames is not None and self.audio_from is not None
        seconds = self.n_frames / self.fps
        # Re-encoded always: every driver codec fits the container that way.
        codec = ["libopus", "-b:a", "128k"] if self.format == "vp9" else ["aac", "-b:a", "160k"]
        cmd = [_ffmpeg(), "-nostdin", "-y", "-v", "error", "-i", str(self.tmp_frames)]
        cmd += ["-i", str(self.audio_from), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", *codec]
        cmd += ["-af", "apad", "-t", f"{float(seconds):.6f}", *self._container_flags(), str(self.tmp)]
        done = subprocess.run(cmd, capture_output=True, start_new_session=True)
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip().splitlines() or ["ffmpeg failed"]
            raise InputError(self.path, f"could not add the audio of {self.audio_from} ({err[-1][:160]})")

    def __enter__(self) -> VideoWriter:
        self._errlog = tempfile.TemporaryFile()
        if self.format != "gif":  # a GIF's encoder starts at the first frame (_start_gif)
            self._start(self._command())
        return self

    def _start_gif(self, first: np.ndarray) -> None:
        """Make the palette from the first frame (see _GIF_GREYS), then start the encoder with it."""
        self._palette_dir = tempfile.TemporaryDirectory(prefix="animate-portrait-")
        palette = Path(self._palette_dir.name) / "palette.png"
        n_own = 256 - len(_GIF_GREYS)
        own = Image.fromarray(first).quantize(n_own, method=Image.Quantize.FASTOCTREE).getpalette() or []
        own_rgb = np.asarray(own[: 3 * n_own], np.uint8).reshape(-1, 3)
        colours = np.zeros((256, 3), np.uint8)
        colours[: len(own_rgb)] = own_rgb
        colours[n_own:] = _GIF_GREYS
        Image.fromarray(colours.reshape(16, 16, 3)).save(palette)  # paletteuse takes a 16x16 image
        self._start(self._command(palette))

    def _start(self, cmd: list[str]) -> None:
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self._errlog, start_new_session=True)
        try:
            self._thread = threading.Thread(target=self._feed, name="animate-portrait-writer", daemon=True)
            self._thread.start()
        except BaseException as err:  # a Ctrl-C here: `with` never calls __exit__, so call it now
            self.__exit__(type(err), err, err.__traceback__)
            raise

    def _feed(self) -> None:
        """The writer thread: queued frames into ffmpeg's stdin until the None that ends the video."""
        assert self._proc is not None and self._proc.stdin is not None
        while (data := self._queue.get()) is not None:
            if self._broken:
                continue  # keep draining, so that a write() blocked on a full queue returns and sees it
            try:
                self._proc.stdin.write(data)
            except (BrokenPipeError, ValueError, OSError):  # ffmpeg exited (or was killed on an abort)
                self._broken = True

    def write(self, frame: np.ndarray) -> None:
        """Queue one RGB uint8 frame of exactly `size` for encoding."""
        w, h = self.size
        if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise ValueError(f"expected a ({h}, {w}, 3) uint8 frame, got {frame.shape} {frame.dtype}")
        if self.out_size != self.size:
            frame = np.pad(frame, ((0, self.out_size[1] - h), (0, self.out_size[0] - w), (0, 0)), mode="edge")
        assert self._errlog is not None, "use VideoWriter inside `with`"
        if self._proc is None:
            self._start_gif(frame)
        if self._broken:
            raise InputError(self.path, f"could not write the video ({self._error()})")
        # A copy (tobytes): the caller may reuse its array while this frame waits in the queue.
        self._queue.put(np.ascontiguousarray(frame).tobytes())
        self.n_frames += 1

    def _finish_feeding(self) -> None:
        """Send the end marker and wait until the thread has written (or dropped) every queued frame."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _error(self) -> str:
        assert self._errlog is not None
        self._errlog.seek(0)
        err = self._errlog.read().decode("utf-8", "replace").strip()
        return (err.splitlines()[-1] if err else "ffmpeg failed")[:160]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc = self._proc
        try:
            if exc_type is None:
                if proc is None:  # a GIF, whose encoder starts at the first frame, got none
                    raise InputError(self.path, "no frames to write")
                self._finish_feeding()
                try:
                    assert proc.stdin is not None
                    proc.stdin.close()  # flushes the last frames: ffmpeg may have exited by now
                except (BrokenPipeError, ValueError):
                    self._broken = True
                rc = proc.wait()
                if rc != 0 or self._broken:
                    raise InputError(self.path, f"could not write the video ({self._error()})")
                if self.n_frames == 0:
                    raise InputError(self.path, "no frames to write")
                if self.has_audio:
                    self._add_audio()
                os.replace(self.tmp, self.path)
        finally:
            if proc is not None:
                self._stop(proc)
            if self._errlog is not None:
                self._errlog.close()
            if self._palette_dir is not None:
                self._palette_dir.cleanup()
            self.tmp.unlink(missing_ok=True)
            if self.tmp_frames is not None:
                self.tmp_frames.unlink(missing_ok=True)

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.kill()  # first: a thread blocked writing into ffmpeg gets EPIPE and drains the rest
            proc.wait()
        self._finish_feeding()
        if proc.stdin and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` to a hidden temp file beside `path` (same suffix), then rename it over `path`: a reader
    never sees half a file, and an error, Ctrl-C or SIGTERM leaves none."""
    tmp = temp_path(Path(path))
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def temp_path(output: Path) -> Path:
    """Where an output is written before its atomic rename: `.NAME.<hex>.tmp.SUFFIX` beside it (hidden,
    and unique, so two writers of one name never share it)."""
    return output.with_name(f".{output.name}.{secrets.token_hex(4)}.tmp{output.suffix}")


def _temp_owner(name: str) -> str | None:
    """The output name whose temp file (temp_path) `name` is, else None."""
    parts = name[1:].rsplit(".", 3)  # NAME, hex, "tmp", suffix
    return parts[0] if name.startswith(".") and len(parts) == 4 and parts[2] == "tmp" else None


def sweep_temp_files(outputs: Iterable[Path]) -> None:
    """Delete the temp files (temp_path) that a killed worker left beside these outputs (a Ray retry
    writes its own; a worker stopped on Ctrl-C may be killed mid-clean-up).
    Call it only once the batch's workers have ended: none of these files is being written then.
    One listing per folder, not one per output: a folder of a shared filesystem may hold thousands."""
    by_folder: dict[Path, set[str]] = {}
    for output in outputs:
        by_folder.setdefault(output.parent, set()).add(output.name)
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if _temp_owner(entry.name) in names:
                Path(entry.path).unlink(missing_ok=True)
