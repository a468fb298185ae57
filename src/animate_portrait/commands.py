"""Commands for developers of the model (prepare, train, evaluate, bench), kept out of cli.py's way.

Each imports its heavy module only when run, so `animate-portrait --help` stays fast.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    for module in ("training.cli", "evaluation", "bench"):
        try:
            mod = __import__(f"animate_portrait.{module}", fromlist=["register"])
        except ImportError:
            continue  # a module still being written; its commands simply don't appear yet
        if hasattr(mod, "register"):
            mod.register(app)
