"""Errors the CLI turns into one-line messages and exit codes."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input from the user (exit code 1). The message names the file and the problem."""

    def __init__(self, path: Path | str | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class NoFaceError(InputError):
    """No face where one is needed (a portrait, or every frame of a driver)."""
