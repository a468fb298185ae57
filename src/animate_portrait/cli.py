"""The command line: parses, calls the Pipeline, prints. Nothing else lives here.

Exit codes: 0 ok · 1 bad input · 2 usage · 3 internal fault · 130 interrupted · 143 terminated.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from . import __version__
from .console import EXIT_INPUT, Reporter, raise_on_sigterm, stopped
from .errors import InputError
from .types import MAX_TRAVEL, MOUTH_INTERIORS, OUTPUT_FORMATS, OUTPUT_HELP, REGION_NAMES, RenderConfig

if TYPE_CHECKING:
    from .persons import PersonPolicy
    from .pipeline import AnimateResult, Pipeline

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help=(
        "Bring a portrait to life: its face talks, blinks and turns as the person in a driving video does."
        "\n\n"
        "animate-portrait SOURCE... --driver VIDEO -o OUT.mp4 runs the [bold]animate[/] command."
    ),
)

# Options shared by the commands that render.
Driver = Annotated[Path, typer.Option("--driver", "-d", help="Driving video, or a motion file (.npz).")]
Engine = Annotated[str, typer.Option(help="Renderer: neural | warp | static.")]
Size = Annotated[int, typer.Option(help="Working resolution of the face crop.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | mps (auto takes the GPU when present).")]
Weights = Annotated[Path | None, typer.Option(help="Weights file for the neural engine.")]
Marks = Annotated[str, typer.Option("--landmarks", help="Landmark backend: dlib | fan.")]
Relative = Annotated[
    bool, typer.Option("--relative/--absolute", help="Apply the driver's motion relative to its first frame.")
]
MaxTravel = Annotated[
    float,
    typer.Option(
        min=0,
        help="Relative motion: how far the head may move in the picture, in face sizes. Beyond 60% of "
        "it the driver's travel is eased, so a head crossing its frame does not leave the face's crop "
        "(0: the head stays in place; a large value: all of the driver's travel).",
    ),
]
Region = Annotated[
    str,
    typer.Option(
        metavar="|".join(REGION_NAMES),
        help="Relative motion: what the portrait takes from the driver. all: head pose and expression; "
        "expression: the face moves, the head stays; pose: the head moves, the face stays; lips: lip-sync "
        "only (lips and jaw); eyes: blinks, gaze and brows only.",
    ),
]
ExpressionScale = Annotated[
    float,
    typer.Option(
        min=0,
        help="Relative motion: the driver's expression change × this (0: a still face; 1.3: livelier; "
        "the head's pose is not scaled).",
    ),
]
Faces = Annotated[
    str,
    typer.Option(
        metavar="largest|all",
        help="Which faces of the picture are driven: the largest, or all of them (a group photo), each "
        "pasted back.",
    ),
]
CropOnly = Annotated[bool, typer.Option(help="Write the aligned face crop instead of the whole picture.")]
SideBySide = Annotated[
    bool,
    typer.Option(
        "--side-by-side",
        help="Put the driver's frame, scaled to the output's height, left of every output frame: the "
        "motion and the result side by side (its landmark sketch for a motion file without its video).",
    ),
]
MaxFrames = Annotated[int | None, typer.Option(help="Stop after this many driver frames.")]
NoAudio = Annotated[bool, typer.Option("--no-audio", help="Do not copy the driver's audio.")]
Audio = Annotated[
    Path | None,
    typer.Option(
        "--audio",
        metavar="FILE",
        help="Soundtrack from this file (audio, or a video with sound) instead of the driver's; cut or "
        "padded with silence to the video's length.",
    ),
]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing output file.")]
Mouth = Annotated[
    bool,
    typer.Option(
        "--mouth/--no-mouth",
        help="Paint the mouth interior where the lips part further than the portrait's: a closed painted "
        "mouth has none to move.",
    ),
]
MouthInterior = Annotated[
    str,
    typer.Option(
        metavar="painted|driver",
        help="What the painted opening shows. painted: upper teeth over the dark. driver: what the "
        "driver's own mouth shows, row by row (teeth, a tongue, the dark between), read from its video; "
        "closer to the real mouth, but dlib follows the mouth less well with it (docs/RESULTS.md).",
    ),
]
Gaze = Annotated[
    bool,
    typer.Option(
        "--gaze/--no-gaze",
        help="Move the portrait's irises as the driver's look aside (read from the driving "
        "video; a motion file made before this option holds no gaze).",
    ),
]
FullDetail = Annotated[
    bool,
    typer.Option(
        "--detail/--no-detail",
        help="Paste the face back with the picture's full-resolution detail, where the face is the "
        "portrait's own pixels moved; else it is rendered at --size and upsampled into a big picture.",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, no messages.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]

DEFAULT_ENGINE = "warp"


def _config(
    engine,
    size,
    device,
    weights,
    landmarks,
    relative,
    crop_only,
    max_frames,
    no_audio,
    overwrite,
    mouth=True,
    max_travel=MAX_TRAVEL,
    region="all",
    expression_scale=1.0,
    faces="largest",
    audio_file=None,
    side_by_side=False,
    gaze=True,
    mouth_interior="painted",
    detail=True,
):
    if engine not in ("neural", "warp", "static"):
        raise typer.BadParameter(f"unknown engine {engine!r}", param_hint="--engine")
    if landmarks not in ("dlib", "fan"):
        raise typer.BadParameter(f"unknown backend {landmarks!r}", param_hint="--landmarks")
    if size < 64 or size % 8:
        raise typer.BadParameter("must be a multiple of 8, at least 64", param_hint="--size")
    if mouth_interior not in MOUTH_INTERIORS:
        raise typer.BadParameter(f"use one of {', '.join(MOUTH_INTERIORS)}", param_hint="--mouth-interior")
    if region not in REGION_NAMES:
        raise typer.BadParameter(f"use one of {', '.join(REGION_NAMES)}", param_hint="--region")
    if faces not in ("largest", "all"):
        raise typer.BadParameter("use largest or all", param_hint="--faces")
    if faces == "all" and crop_only:
        raise typer.BadParameter("--crop-only writes one face's crop: drop one of them", param_hint="--faces")
    if not relative and (region != "all" or expression_scale != 1.0):
        raise typer.BadParameter(
            "needs relative motion: drop --absolute", param_hint="--region / --expression-scale"
        )
    if audio_file is not None and no_audio:
        raise typer.BadParameter(
            "--audio adds a soundtrack, --no-audio drops it: pick one", param_hint="--audio"
        )
    return RenderConfig(
        size=size,
        engine=engine,
        device=device,
        landmarks=landmarks,
        relative=relative,
        max_travel=max_travel,
        crop_only=crop_only,
        audio=not no_audio,
        max_frames=max_frames,
        weights=weights,
        overwrite=overwrite,
        mouth=mouth,
        region=region,
        expression_scale=expression_scale,
        faces=faces,
        audio_file=audio_file,
        side_by_side=side_by_side,
        gaze=gaze,
        mouth_interior=mouth_interior,
        detail=detail,
    )


def _check_audio(config: RenderConfig, output_suffix: str) -> None:
    """--audio's file must hold sound, and the output must be able to carry it."""
    from . import video

    if config.audio_file is None:
        return
    if not video.has_sound(Path("output" + output_suffix)):
        raise typer.BadParameter(f"a {output_suffix.lstrip('.').upper()} has no sound", param_hint="--audio")
    video.check_audio(config.audio_file)


@app.command(
    "animate",
    epilog="Examples: animate-portrait mona_lisa.jpg --driver talk.mp4 -o out.mp4 · "
    "animate-portrait lead.jpg --sources more_photos/ --driver talk.mp4 -o out.mp4 · "
    "animate-portrait friends.jpg --driver talk.mp4 -o out.gif --faces all · "
    "animate-portrait interview.mp4 --driver voice.mp4 -o dubbed.mp4 --region lips --engine neural",
)
def animate(
    driver: Driver,
    output: Annotated[Path, typer.Option("--output", "-o", help=OUTPUT_HELP)],
    sources: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="SOURCE...",
            help="One or more images of the same person (K-shot); the first is the one animated. "
            "Optional with --sources. Or one video (.mp4, .mov, .mkv, .webm, .avi): it keeps its own head "
            "motion and takes the driver's expression (dubbing; --region lips for the mouth only).",
        ),
    ] = None,
    source_dir: Annotated[
        Path | None,
        typer.Option(
            "--sources",
            metavar="DIR",
            help="Folder of more images of the same person (jpg, jpeg, png, webp, bmp; by name), added "
            "after SOURCE. A source that is someone else is left out with a warning, or is an error when "
            "it is the first one.",
        ),
    ] = None,
    engine: Engine = DEFAULT_ENGINE,
    size: Size = 256,
    device: Device = "auto",
    weights: Weights = None,
    landmarks: Marks = "dlib",
    relative: Relative = True,
    max_travel: MaxTravel = MAX_TRAVEL,
    region: Region = "all",
    expression_scale: ExpressionScale = 1.0,
    faces: Faces = "largest",
    crop_only: CropOnly = False,
    side_by_side: SideBySide = False,
    max_frames: MaxFrames = None,
    no_audio: NoAudio = False,
    audio: Audio = None,
    overwrite: Overwrite = False,
    mouth: Mouth = True,
    mouth_interior: MouthInterior = "painted",
    gaze: Gaze = True,
    detail: FullDetail = True,
    finetune_steps: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Neural engine: fine-tune on the sources for N steps before rendering (the paper's "
            "per-person stage; cached, so reruns are instant). 0: off. Default: 200 on a GPU, off on a "
            "CPU (100 steps at 256² take about a minute or two there); 100-300 is sensible on a GPU.",
        ),
    ] = None,
    person: Annotated[
        Path | None,
        typer.Option(
            metavar="PERSON.safetensors",
            help="Neural engine: a person fine-tuned before with `animate-portrait finetune`.",
        ),
    ] = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Animate SOURCE image(s) with a driving video into one MP4."""
    from .persons import PersonPolicy
    from .pipeline import Pipeline, check_sources
    from .sources import gather

    config = _config(
        engine,
        size,
        device,
        weights,
        landmarks,
        relative,
        crop_only,
        max_frames,
        no_audio,
        overwrite,
        mouth,
        max_travel,
        region,
        expression_scale,
        faces,
        audio,
        side_by_side,
        gaze,
        mouth_interior,
        detail,
    )
    policy = PersonPolicy(finetune_steps, person)
    if problem := policy.problem(engine) or policy.problem_with_faces(faces):
        raise typer.BadParameter(problem, param_hint="--finetune-steps / --person")
    report = Reporter(quiet=quiet)
    with report.guard():
        sources = gather(sources, source_dir)
        check_sources(sources)
        if faces == "all" and len(sources) > 1:
            raise typer.BadParameter(
                "drives every face of one picture: give one SOURCE", param_hint="--faces"
            )
        from . import still, video
        from .video_source import is_video

        video.check_output(output, overwrite)
        still.check_driver(output, driver, max_frames)
        _check_audio(config, output.suffix)
        if any(is_video(path) for path in sources):
            _check_video_source(sources, config, policy)
            # a video source keeps its own eyes (and gaze): they move with its own head
            dubbing = Pipeline(replace(config, gaze=False))
            result = _animate_video(dubbing, sources[0], driver, output, report)
            report.done(result, as_json)
            return
        pipeline = Pipeline(config)
        pipeline.load_renderer()
        policy.load(pipeline)  # a bad person file fails now, before the driver's analysis
        driving = report.analyse(pipeline, driver)
        loaded = policy.apply(pipeline, sources, report.bar, report.info)
        with report.bar("rendering", pipeline.frames_used(driving)) as step:
            result = pipeline.animate(
                sources, driving, output, progress=step, warn=report.info, loaded=loaded
            )
        report.done(result, as_json)


def _check_video_source(sources: list[Path], config: RenderConfig, policy: PersonPolicy) -> None:
    """Usage errors of a video source (video_source.py): alone, with its own pose and faces, untuned."""
    from .video_source import settings_problem

    tuned = bool(policy.finetune_steps or policy.person)
    if problem := settings_problem(config, len(sources), tuned):
        option, why = problem
        raise typer.BadParameter(why, param_hint=option)


def _animate_video(
    pipeline: Pipeline, source: Path, driver: Path, output: Path, report: Reporter
) -> AnimateResult:
    """Analyse the source video and the driver, then dub the one with the other's expression."""
    from .video_source import animate_video, source_frames

    pipeline.load_renderer()
    source_motion = report.analyse(pipeline, source, role="source")
    driving = report.analyse(pipeline, driver)
    shown = source_frames(source_motion, driving, pipeline.config.max_frames)
    if len(shown) < pipeline.frames_used(driving):
        report.info(f"{source}: shorter than the driver; the output stops after {len(shown)} frames")
    with report.bar("rendering", len(shown)) as step:
        return animate_video(pipeline, source, source_motion, driving, output, progress=step, shown=shown)


@app.command("motion", epilog="Example: animate-portrait motion talk.mp4 -o talk.motion.npz")
def motion_cmd(
    video_path: Annotated[Path, typer.Argument(metavar="VIDEO", help="Driving video to analyse once.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Motion file (.npz).")],
    landmarks: Marks = "dlib",
    max_frames: MaxFrames = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Analyse a driving video once (landmarks per frame) for reuse on many portraits."""
    from . import motion, video
    from .pipeline import Pipeline

    report = Reporter(quiet=quiet)
    with report.guard():
        if output.suffix.lower() != ".npz":
            raise InputError(output, "a motion file must end in .npz")
        video.check_writable(output, overwrite)
        pipeline = Pipeline(RenderConfig(landmarks=landmarks, max_frames=max_frames))
        driving = report.analyse(pipeline, video_path)
        motion.save_motion(driving, output)
        summary = {
            "output": str(output),
            "frames": driving.n_frames,
            "fps": driving.fps,
            "filled": driving.n_filled,
        }
        report.emit(summary, as_json, f"wrote {output} ({driving.n_frames} frames)")


@app.command(
    "batch",
    epilog="Example: ls *.jpg | animate-portrait batch - --driver talk.mp4 --output-dir out/ --json "
    "--jobs 2 --shard 0/4 --resume",
)
def batch(
    portraits: Annotated[
        list[str],
        typer.Argument(
            help="Portrait images, or videos to dub (see animate); '-' reads one path per line from stdin."
        ),
    ],
    driver: Driver,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="Folder for the <portrait>.mp4 (or --format) files.")
    ],
    engine: Engine = DEFAULT_ENGINE,
    size: Size = 256,
    device: Device = "auto",
    weights: Weights = None,
    landmarks: Marks = "dlib",
    relative: Relative = True,
    max_travel: MaxTravel = MAX_TRAVEL,
    region: Region = "all",
    expression_scale: ExpressionScale = 1.0,
    faces: Faces = "largest",
    crop_only: CropOnly = False,
    side_by_side: SideBySide = False,
    max_frames: MaxFrames = None,
    no_audio: NoAudio = False,
    audio: Audio = None,
    overwrite: Overwrite = False,
    mouth: Mouth = True,
    mouth_interior: MouthInterior = "painted",
    gaze: Gaze = True,
    detail: FullDetail = True,
    finetune_steps: Annotated[
        int,
        typer.Option(
            min=0,
            help="Neural engine: fine-tune on each portrait for N steps first (cached per portrait, so a "
            "rerun or --resume does not redo it). Default 0: off, whatever the device.",
        ),
    ] = 0,
    jobs: Annotated[
        int, typer.Option(min=1, help="Worker processes, each rendering one portrait at a time (CPU).")
    ] = 1,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="Torch threads per worker process (default: the CPU cores / --jobs)."),
    ] = None,
    group: Annotated[
        int | None,
        typer.Option(
            min=1, help="Portraits per forward pass of the renderer (default: 8 on CUDA, 1 on a CPU)."
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="auto|HOST:PORT",
            help="Render on a Ray cluster, one task per portrait (pip install 'animate-portrait\\[ray]'): "
            "auto joins the running one or starts a local one. Needs a shared filesystem.",
        ),
    ] = None,
    ray_gpus: Annotated[
        float,
        typer.Option(min=0, help="With --ray: GPUs per task where the cluster has GPUs (0: CPUs only)."),
    ] = 0.25,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="I/N",
            help="Take only shard I of N (0 ≤ I < N), split by a hash of each path, for spreading one "
            "listing over machines.",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Skip portraits whose output already exists as a readable video.")
    ] = False,
    out_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="mp4|mov|mkv|webm|gif|png|jpg|webp",
            help="The outputs' container; a still image (png, jpg, webp) takes a photo as the driver.",
        ),
    ] = "mp4",
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Animate many portraits with one driver, analysed once. A failed portrait does not stop the others."""
    from .batch import Shard, run_batch

    config = _config(
        engine,
        size,
        device,
        weights,
        landmarks,
        relative,
        crop_only,
        max_frames,
        no_audio,
        overwrite,
        mouth,
        max_travel,
        region,
        expression_scale,
        faces,
        audio,
        side_by_side,
        gaze,
        mouth_interior,
        detail,
    )
    if finetune_steps and engine != "neural":
        raise typer.BadParameter("needs --engine neural", param_hint="--finetune-steps")
    if finetune_steps and faces == "all":
        raise typer.BadParameter("--faces all drives every face alike: it takes no person's tuning")
    config = replace(config, finetune_steps=finetune_steps)
    suffix = "." + out_format.lower().lstrip(".")
    if suffix not in OUTPUT_FORMATS:
        raise typer.BadParameter(
            f"use one of {', '.join(f[1:] for f in OUTPUT_FORMATS)}", param_hint="--format"
        )
    if resume and overwrite:
        raise typer.BadParameter("--resume keeps finished outputs, --overwrite replaces them: pick one")
    try:
        part = None if shard is None else Shard.parse(shard)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--shard") from None
    if ray is not None and (jobs > 1 or (group or 1) > 1):
        raise typer.BadParameter("renders one portrait per task: drop --jobs/--group", param_hint="--ray")
    report = Reporter(quiet=quiet)
    with report.guard():
        _check_audio(config, suffix)
        paths = _expand_stdin(portraits)
        with _cluster(ray, ray_gpus, threads or 1, report) as executor:
            failed = run_batch(
                paths,
                driver,
                output_dir,
                config,
                report,
                as_json,
                shard=part,
                resume=resume,
                jobs=jobs,
                threads=threads,
                group=group,
                executor=executor,
                suffix=suffix,
            )
    if failed:
        raise typer.Exit(EXIT_INPUT)


@app.command("demo")
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help=OUTPUT_HELP)] = Path("demo.mp4"),
    engine: Engine = DEFAULT_ENGINE,
    device: Device = "auto",
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Run the main job on an embedded default: NASA's astronaut portrait with a shipped motion file."""
    from .assets import demo_motion_path, demo_portrait_path
    from .pipeline import Pipeline

    report = Reporter(quiet=quiet)
    with report.guard():
        config = _config(engine, 256, device, None, "dlib", True, False, None, True, overwrite)
        pipeline = Pipeline(config)
        portrait = demo_portrait_path()
        driving = pipeline.analyse(demo_motion_path())
        with report.bar("rendering", driving.n_frames) as step:
            result = pipeline.animate([portrait], driving, output, progress=step)
        report.done(result, as_json)


@app.command("version")
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def _cluster(address: str | None, gpus: float, cpus: int, report: Reporter) -> AbstractContextManager:
    """--ray's executor (checked now, joined when there is work), or nothing: this machine renders."""
    if address is None:
        return nullcontext()
    from .ray_executor import RayExecutor

    return RayExecutor(address, gpus_per_task=gpus, cpus_per_task=cpus, info=report.info)


def _expand_stdin(items: list[str]) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        if item == "-":
            paths.extend(Path(line.strip()) for line in sys.stdin if line.strip())
        else:
            paths.append(Path(item))
    return paths


def _register_optional_commands() -> None:
    """prepare / train / evaluate / bench live in their own modules; they register themselves here."""
    from .commands import register

    register(app)


SUBCOMMANDS = {
    "animate",
    "motion",
    "batch",
    "demo",
    "version",
    "prepare",
    "train",
    "evaluate",
    "bench",
    "finetune",
}


def main() -> None:
    """Entry point. `animate-portrait IMG --driver V -o OUT` is the `animate` command without its name."""
    argv = sys.argv[1:]
    if argv and argv[0] not in SUBCOMMANDS and argv[0] not in ("--help", "-h", "--version"):
        argv = ["animate", *argv]
    if argv[:1] == ["--version"]:
        argv = ["version"]
    _register_optional_commands()
    raise_on_sigterm()
    try:
        app(args=argv, prog_name="animate-portrait", standalone_mode=True)
    except KeyboardInterrupt as stop:
        sys.exit(stopped(stop))
