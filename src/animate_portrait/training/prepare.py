"""Training cache: per clip, the stable face crops as one H.264 MP4 and an npz of crop-space landmarks.

Why MP4 rather than per-frame JPEGs: the whole cache travels to a GPU machine inside a 64 MiB limit, and
~18k crops at 256² as JPEGs are ~250 MB; as H.264 they are ~20 MB. The loader decodes each clip once
into RAM (dataset.py), so the codec costs nothing during training.

Per clip `<stem>.mp4` + `<stem>.npz` with:
    points (N, 68, 2) float32   landmarks in crop pixels, one row per kept frame (= per MP4 frame)
    frame_index (N,) int32      the frame's index in the original clip
    boxes (N, 3) float32        each crop's centre x, y and side in the original frame's pixels, so that
                                training can show a frame inside another frame's box (dataset.py)
    identity ()  str            the person, from MANIFEST.tsv (groups clips of the same person)
    clip ()  str, fps () float, size () int
Frames where no face was detected are dropped (their landmarks are only interpolated guesses).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

MANIFEST = Path(__file__).resolve().parents[4] / "shared" / "data" / "MANIFEST.tsv"


def read_identities(manifest: Path = MANIFEST) -> dict[str, str]:
    """filename → identity, from the shared data's MANIFEST.tsv (empty when the file is absent)."""
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as fh:
        return {row["filename"]: row["identity"] for row in csv.DictReader(fh, delimiter="\t")}


def prepare_clip(
    clip: Path, out: Path, size: int, detector: object, identity: str, max_frames: int | None = None
) -> int:
    """Write `out/<stem>.mp4` + `.npz` for one clip; returns the number of frames kept."""
    from .. import face, landmarks, motion, video

    info = video.probe(clip)
    tr = landmarks.track(video.read_frames(clip, max_frames), detector)
    if not tr.found.any():
        return 0
    pts = motion.smooth(motion.fill_gaps(tr.points, tr.found), info.fps)
    crops = face.crop_track(pts, size)
    keep = np.flatnonzero(tr.found)
    kept_pts = np.stack([crops[t].to_crop(pts[t]) for t in keep]).astype(np.float32)
    mp4 = out / f"{clip.stem}.mp4"
    keep_set = set(keep.tolist())
    with video.VideoWriter(mp4, info.fps, (size, size), overwrite=True) as writer:
        for t, frame in enumerate(video.read_frames(clip, max_frames)):
            if t in keep_set:
                writer.write(face.extract(frame, crops[t]))
    tmp = out / f".{clip.stem}.{os.getpid()}.tmp.npz"  # atomic: a reader never sees half a file
    np.savez_compressed(
        tmp,
        points=kept_pts,
        frame_index=keep.astype(np.int32),
        boxes=np.array([(*crops[t].center, crops[t].side) for t in keep], np.float32),
        identity=np.array(identity),
        clip=np.array(clip.name),
        fps=np.array(float(info.fps)),
        size=np.array(int(size)),
    )
    os.replace(tmp, out / f"{clip.stem}.npz")
    return len(keep)


def prepare_clips(
    clips: list[Path],
    out: Path,
    size: int = 256,
    detector: str = "dlib",
    manifest: Path = MANIFEST,
    overwrite: bool = False,
    max_frames: int | None = None,
    on_clip: Callable[[Path, int], None] | None = None,
) -> dict[str, int]:
    """Prepare every clip into `out` (skipping clips already there unless `overwrite`).

    Returns {clip name: frames kept}. A clip in which no face is found is skipped and reported with 0.
    """
    from ..landmarks import get_detector

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = read_identities(manifest)
    det = get_detector(detector)
    done: dict[str, int] = {}
    for clip in clips:
        clip = Path(clip)
        npz = out / f"{clip.stem}.npz"
        if npz.exists() and (out / f"{clip.stem}.mp4").exists() and not overwrite:
            with np.load(npz, allow_pickle=False) as z:
                done[clip.name] = int(z["points"].shape[0])
        else:
            done[clip.name] = prepare_clip(clip, out, size, det, ids.get(clip.name, clip.stem), max_frames)
        if on_clip is not None:
            on_clip(clip, done[clip.name])
    return done


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Prepare a training cache from talking-face clips.")
    ap.add_argument("clips", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--reverse", action="store_true", help="work from the last clip (a second worker)")
    a = ap.parse_args(argv)
    clips = sorted(
        p
        for c in a.clips
        for p in (
            sorted(q for q in c.iterdir() if q.suffix.lower() in (".mp4", ".mov", ".mkv", ".webm", ".avi"))
            if c.is_dir()
            else [c]
        )
    )
    if a.reverse:
        clips = clips[::-1]

    def report(clip: Path, n: int) -> None:
        print(f"{clip.name}: {n} frames", flush=True)

    prepare_clips(clips, a.out, a.size, overwrite=a.overwrite, on_clip=report)


if __name__ == "__main__":
    main()
