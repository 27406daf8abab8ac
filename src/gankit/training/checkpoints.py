"""What rank 0 writes into a run folder besides the log: checkpoints (step files rotated, ``last.pt`` a hard link
to the newest), the export of the EMA generator, the sample grids and the loss plot (:class:`RunWriter`).

Every file goes through :func:`gankit.io.atomic_write`, so a crash leaves the previous file whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gankit.config import RunConfig
from gankit.images import save_grid
from gankit.io import RunDir, save_checkpoint
from gankit.models.base import Generator
from gankit.training.logger import plot_losses

GRID_COLUMNS = 10  # a conditional model's grid: one row per class, this many samples each
MAX_GRID_ROWS = 16
UNCONDITIONAL_GRID = (64, 8)  # samples, columns


class SampleGrid:
    """The fixed latent batch of a run's sample grids: one row per class (at most :data:`MAX_GRID_ROWS`) of a
    conditional model, else 64 samples; drawn from ``training.seed + 2``, so every grid of a run (and of its
    resumes) shows the same latents. Rows are labelled with ``class_names`` (the data's classes, as in the run's
    ``classes.json``) when there is one per class, else with the class ids."""

    def __init__(
        self, generator: Generator, seed: int, device: torch.device, class_names: list[str] | None = None
    ) -> None:
        g = torch.Generator().manual_seed(seed + 2)
        if generator.num_classes:
            rows = min(generator.num_classes, MAX_GRID_ROWS)
            self.y: torch.Tensor | None = torch.arange(rows).repeat_interleave(GRID_COLUMNS).to(device)
            names = class_names if class_names is not None and len(class_names) == generator.num_classes else None
            self.row_labels: list[str] | None = [str(names[c]) if names else str(c) for c in range(rows)]
            self.columns = GRID_COLUMNS
        else:
            self.y, self.row_labels = None, None
            self.columns = UNCONDITIONAL_GRID[1]
        n = len(self.y) if self.y is not None else UNCONDITIONAL_GRID[0]
        self.z = generator.sample_latents(n, generator=g)

    @torch.no_grad()
    def save(self, generator: Generator, path: Path, step: int) -> Path:
        """``generator``'s images of the fixed batch as a labelled PNG grid at ``path``."""
        images = generator(self.z, self.y)
        return save_grid(images, path, self.columns, row_labels=self.row_labels, title=f"step {step}")


class RunWriter:
    """Rank 0's writes into the run folder ``run`` for the run config ``cfg``."""

    def __init__(
        self, run: RunDir, cfg: RunConfig, generator: Generator, device: torch.device,
        class_names: list[str] | None = None,
    ) -> None:
        self.run = run
        self.keep = cfg.training.keep_checkpoints
        self.title = cfg.preset or cfg.model.family
        self.grid = SampleGrid(generator, cfg.training.seed, device, class_names)

    def save_samples(self, generator: Generator, step: int) -> Path:
        """The sample grid of ``generator`` (the EMA generator) at ``step``: ``samples/step_XXXXXXX.png``."""
        return self.grid.save(generator, self.run.sample_grid(step), step)

    def save_checkpoint(self, state: dict[str, Any], step: int, export: Generator) -> Path:
        """Write ``checkpoints/step_XXXXXXX.pt``, point ``last.pt`` at it, keep the newest ``keep_checkpoints``
        step files (0: keep none but ``last.pt``), and write ``export`` as ``generator.safetensors``."""
        path = save_checkpoint(state, self.run.step_checkpoint(step))
        last = self.run.last_checkpoint
        link = last.with_name(".last.pt.link")
        link.unlink(missing_ok=True)
        try:  # last.pt is a hard link to the newest step file: one write, then an atomic rename
            link.hardlink_to(path)
            link.replace(last)
        except OSError:  # a file system without hard links: a second write
            save_checkpoint(state, last)
        steps = self.run.step_checkpoints()
        for old in steps[: max(0, len(steps) - self.keep)] if self.keep else steps:
            old.unlink(missing_ok=True)
        export.save_export(self.run.generator)
        return last

    def plot_losses(self) -> Path | None:
        """``loss.png`` from ``metrics.csv``."""
        return plot_losses(self.run.metrics, self.run.loss_plot, self.title)


__all__ = ["GRID_COLUMNS", "MAX_GRID_ROWS", "RunWriter", "SampleGrid"]
