"""`batch --ray auto|HOST:PORT`: a batch's portraits rendered as Ray tasks, over a cluster's GPUs or CPUs.

    batch.run_batch: names, --shard, --resume, the driver analysed once (all as without --ray)
        ─► ray.put(driver's Motion), once ─► one task per portrait, on any node with a free CPU or GPU share
        ─► one line per portrait as its task ends: the same lines as the in-process and --jobs paths

Ray is optional (`pip install 'animate-portrait[ray]'`) and is imported here only, only with --ray.
Every node needs this package installed and must see the portraits, the output folder and the driver (for
its audio) at the same paths: a shared filesystem. The tasks get absolute paths, so the working folder of
a worker process does not matter; the lines still name the paths as they were listed.

Retries: a worker process or node that dies (the OOM killer, a lost machine) is retried by Ray
(`max_retries`), as are the errors that may pass (`TRANSIENT`: a shared disk's hiccup, a GPU out of
memory). A portrait's InputError is permanent: it is its error line at once, never retried.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from .batch import PORTRAIT_ERRORS, _line, ok_line, render_portrait
from .console import DEBUG
from .errors import InputError
from .pipeline import Pipeline
from .types import Motion, RenderConfig
from .video import sweep_temp_files

INSTALL_HINT = "pip install 'animate-portrait[ray]'"
RETRIES = 2  # tries after the first, for a dead worker or a TRANSIENT error
TRANSIENT = (OSError, RuntimeError)  # torch.cuda.OutOfMemoryError is a RuntimeError
CANCEL_WAIT_S = 15  # how long an interrupted batch waits for its tasks to delete their temp files


def import_ray() -> ModuleType:
    """Ray, or a one-line InputError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(None, f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


class RayExecutor:
    """Renders `batch`'s todo list on a Ray cluster; called by run_batch in place of its own loop.

    The constructor only checks (Ray importable, the head answering); the cluster is joined, or a local
    one started, on the first call, so a --resume with nothing left to do starts nothing.
    """

    def __init__(
        self,
        address: str,
        gpus_per_task: float = 0.25,
        cpus_per_task: int = 1,
        info: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.ray = import_ray()
        self.address = address
        self.gpus_per_task = gpus_per_task
        self.cpus_per_task = cpus_per_task
        self.info = info
        self.started_here = False
        if address != "auto" and not self.ray.is_initialized():
            _check_reachable(address)

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started_here:  # a cluster (or local instance) joined by someone else is left as it was
            self.ray.shutdown()

    def __call__(
        self, config: RenderConfig, driving: Motion, todo: list[tuple[Path, Path]]
    ) -> Iterator[dict]:
        """Yield the lines of `todo` as their tasks end. On Ctrl-C (or any error here) the running tasks are
        cancelled first, each deleting the temp file of the video it was writing, and then the error goes on.
        """
        ray = self.ray
        self._connect()
        config, driving = _absolute(config, driving)
        driving_ref = ray.put(driving)  # once: every task reads the same copy from the object store
        task = ray.remote(_render).options(
            max_retries=RETRIES, retry_exceptions=list(TRANSIENT), **self._resources()
        )
        pending = {
            task.remote(config, driving_ref, portrait.absolute(), output.absolute()): (portrait, output)
            for portrait, output in todo
        }
        try:
            while pending:
                refs = list(pending)
                ray.wait(refs, num_returns=1)  # block until one task ends, then take all that have
                for ref in ray.wait(refs, num_returns=len(refs), timeout=0)[0]:
                    portrait, output = pending.pop(ref)
                    yield self._result(ref, portrait, output)
        except BaseException:
            _cancel(ray, list(pending))
            raise
        finally:
            sweep_temp_files([output for _, output in todo])

    def _connect(self) -> None:
        _raylet_messages_to_stderr(self.ray)
        if self.ray.is_initialized():  # a caller (a notebook, a test) joined a cluster already: use it
            return
        # auto: a running cluster (RAY_ADDRESS, or one started on this machine), else a new local one.
        self.ray.init(
            address=None if self.address == "auto" else self.address,
            include_dashboard=False,
            log_to_driver=False,  # workers' prints would land on our stdout, among the JSON lines
            logging_level=logging.INFO if DEBUG else logging.ERROR,
        )
        self.started_here = True
        found = self.ray.cluster_resources()
        nodes = sum(1 for n in self.ray.nodes() if n.get("Alive"))
        self.info(f"Ray: {nodes} node(s), {found.get('CPU', 0):g} CPUs, {found.get('GPU', 0):g} GPUs")

    def _resources(self) -> dict[str, float]:
        """A GPU share per task where the cluster has GPUs (--ray-gpus 0: never), and --threads CPUs."""
        gpus = self.gpus_per_task if self.ray.cluster_resources().get("GPU", 0) > 0 else 0
        return {"num_cpus": self.cpus_per_task, "num_gpus": gpus}

    def _result(self, ref: object, portrait: Path, output: Path) -> dict:
        """The task's line, with the paths as listed; a failure that outlived its retries as an error line."""
        ray = self.ray
        try:
            line = ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            cause = err.cause
            if not isinstance(cause, PORTRAIT_ERRORS):
                raise cause from err  # a bug stops the batch (exit 3), as it does without --ray
            return _line(portrait, None, "error", 0.0, error=str(cause))
        except ray.exceptions.RayError as err:  # the worker or its node died, RETRIES + 1 times
            return _line(portrait, None, "error", 0.0, error=f"{portrait}: {_first_line(err)}")
        paths = {"source": str(portrait), "output": None if line["output"] is None else str(output)}
        if "error" in line:  # name the portrait as listed, as the other paths do, not as the task saw it
            paths["error"] = line["error"].replace(str(portrait.absolute()), str(portrait))
        return {**line, **paths}


def _raylet_messages_to_stderr(ray: ModuleType) -> None:
    """The driver's Ray prints the raylet's messages ("A worker died or was killed ...") on stdout, even
    with log_to_driver=False (ray/_private/worker.py: listen_error_messages calls print_to_stdstream with
    is_err False). stdout carries the JSON lines, so they go to stderr. Guarded: should a Ray release
    move the function, the messages stay where Ray puts them and nothing breaks."""
    module = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(module, "print_to_stdstream", None)
    if original is None or getattr(original, "to_stderr", False):
        return

    def to_stderr(data: dict, *args: object, **kwargs: object) -> None:
        original({**data, "is_err": True}, *args, **kwargs)

    to_stderr.to_stderr = True  # type: ignore[attr-defined]
    module.print_to_stdstream = to_stderr


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def _check_reachable(address: str) -> None:
    """Fail in a second, not after ray.init's minutes of retries, when no head answers at HOST:PORT."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # ray://… and the like: Ray checks them itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise InputError(
            None,
            f"--ray {address}: no Ray head answers there ({err.strerror or err}); start one with "
            "`ray start --head`, or use --ray auto for a local one",
        ) from None


def _absolute(config: RenderConfig, driving: Motion) -> tuple[RenderConfig, Motion]:
    """Paths that mean the same on every node of a shared filesystem, whatever a worker's working folder."""
    if config.weights is not None:
        config = replace(config, weights=config.weights.absolute())
    if driving.source:  # the driver video, for its audio
        driving = replace(driving, source=str(Path(driving.source).absolute()))
    return config, driving


# --- on the workers ---------------------------------------------------------------------------------
# A Ray worker process runs many tasks of the batch: it builds one Pipeline (renderer and landmark
# detector) for the first and reuses it.

_cached: tuple[RenderConfig, Pipeline] | None = None


def _pipeline(config: RenderConfig) -> Pipeline:
    global _cached
    if _cached is None or _cached[0] != config:
        import ray
        import torch

        # torch's default of all cores per task would oversubscribe a node that runs one task per core.
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(cpus)))
        pipeline = Pipeline(config)
        pipeline.load_renderer()
        _cached = (config, pipeline)
    return _cached[1]


def _render(config: RenderConfig, driving: Motion, portrait: Path, output: Path) -> dict:
    """One portrait, rendered as batch._animate_one renders it (`render_portrait`), except that only an
    InputError becomes the line here: the portrait's other errors go back to Ray, which retries the
    TRANSIENT ones. (_animate_one turns them all into lines, so it cannot be called as it is.)"""
    started = time.perf_counter()
    try:
        result = render_portrait(_pipeline(config), driving, portrait, output)
    except InputError as err:  # the portrait itself is bad: a retry would fail the same way
        return _line(portrait, None, "error", time.perf_counter() - started, error=str(err))
    return ok_line(portrait, output, result, time.perf_counter() - started)


# --- clean-up ---------------------------------------------------------------------------------------


def _cancel(ray: ModuleType, refs: list) -> None:
    """Ctrl-C: a KeyboardInterrupt in each running task unwinds its VideoWriter (ffmpeg stopped, temp file
    deleted); queued ones never start. force=True would kill the workers and leave their temp files."""
    for ref in refs:
        ray.cancel(ref)
    if refs:
        ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
