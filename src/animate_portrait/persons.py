"""Who the neural engine renders: the meta-learned model, a person file, or a fine-tuning on the sources.

    --person FILE         ─► load it, check it against the weights ─► render with ψ′ and its G tensors
    --finetune-steps N    ─► fine-tune on the portrait's sources (cached per person) ─► render with that
    neither               ─► the device's default steps (a GPU fine-tunes, a CPU does not), then as above

The policy lives here, not in the CLI, so that `animate` and `batch` apply the same one; the work itself
is training/renderer_tuning.py's. The two steps are apart on purpose: a bad person file fails at once,
before a long driver analysis, while the fine-tuning runs after the driver is known to be readable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .training.renderer_tuning import Bar
    from .types import SourceFace


@dataclass(frozen=True)
class PersonPolicy:
    """`--finetune-steps` (None: the device's default) and `--person`, for the neural engine."""

    finetune_steps: int | None = None
    person: Path | None = None

    def problem(self, engine: str) -> str | None:
        """Why these options do not go together (None when they do), for a usage error."""
        if (self.finetune_steps or self.person) and engine != "neural":
            return "needs --engine neural"
        if self.finetune_steps and self.person:
            return "give --person or --finetune-steps, not both"
        return None

    def problem_with_faces(self, faces: str) -> str | None:
        """--faces all drives strangers too: one person's tuning must not render them."""
        if faces == "all" and (self.finetune_steps or self.person):
            return "--faces all drives every face alike: it takes no person's tuning"
        return None

    def load(self, pipeline: Pipeline) -> None:
        """Before the driver: render with the person file, if one is given (InputError if it is bad)."""
        if self.person is not None:
            from .training.renderer_tuning import use_person_file

            use_person_file(pipeline.renderer, self.person)

    def steps(self, pipeline: Pipeline) -> int:
        """The fine-tuning steps this run does: none with a person file or another engine."""
        if self.person is not None or pipeline.config.engine != "neural" or pipeline.config.faces == "all":
            return 0
        if self.finetune_steps is not None:
            return self.finetune_steps
        from .training.renderer_tuning import default_steps

        return default_steps(pipeline.device)

    def apply(
        self,
        pipeline: Pipeline,
        sources: Sequence[Path],
        bar: Bar | None = None,
        info: Callable[[str], None] | None = None,
    ) -> list[SourceFace] | None:
        """After the driver: fine-tune on `sources` when asked (or by default). Returns the sources it
        loaded for that (pass them to `Pipeline.animate(loaded=...)`), else None.

        With no fine-tuning and no person file, a renderer that rendered a tuned person before (a batch)
        goes back to the meta-learned model."""
        from .training.renderer_tuning import apply_person, finetune_pipeline

        steps = self.steps(pipeline)
        if steps:
            return finetune_pipeline(pipeline, sources, steps, bar, info)
        if self.person is None and getattr(pipeline.renderer, "person", None) is not None:
            apply_person(pipeline.renderer, None)
        return None
