"""Evaluation during training (``training.eval_every``): metrics of the EMA generator and the best checkpoint."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import torch

from gankit.config import RunConfig
from gankit.errors import UserError
from gankit.io import RunDir, save_checkpoint, write_json
from gankit.metrics.evaluate import Evaluator
from gankit.models.base import Generator

COLUMNS = ("fid", "kid", "is", "precision", "recall", "density", "coverage")


class TrainingEvaluation:
    """Evaluation during training: metrics of the EMA generator every ``eval_every`` steps; ``checkpoints/best.pt``.

    The best FID so far is kept in ``checkpoints/best.json`` (so a resumed run keeps it); ``best.pt`` holds the
    full training state of that step, loadable like any checkpoint. Built when training starts, so a missing
    feature network (e.g. Inception weights offline) stops the run at once, not hours in.
    """

    def __init__(self, cfg: RunConfig, run: RunDir, device: torch.device) -> None:
        t, model = cfg.training, cfg.model
        data = "digits" if cfg.data.dataset == "digits" else cfg.data.path
        if data is None:
            raise UserError("evaluation during training needs data.path; set it or turn off training.eval_every")
        self.evaluator = Evaluator(
            data,
            image_size=model.image_size,
            channels=model.channels,
            dataset=None if cfg.data.dataset == "digits" else cfg.data.dataset,
            labels=cfg.data.labels,
            features=t.eval_features,
            device=device,
        )
        self.num, self.seed = t.eval_num, t.seed
        self.run = run
        self.best_fid = math.inf
        if run.best_json.is_file():
            try:
                self.best_fid = float(json.loads(run.best_json.read_text())["fid"])
            except (ValueError, KeyError, TypeError):  # a damaged best.json: the next evaluation replaces it
                pass

    @staticmethod
    def columns() -> list[str]:
        return [f"eval/{c}" for c in COLUMNS]

    def __call__(self, generator: Generator, step: int, state: Callable[[], dict[str, Any]]) -> dict[str, float]:
        """Score ``generator`` (the EMA generator) at ``step``; when its FID is the best so far, save ``state()``
        (the full training state) as ``best.pt``. Returns the ``eval/*`` values."""
        if generator.image_size != self.evaluator.image_size:
            return {}  # a growing (PGAN) generator is scored once it reaches the target resolution
        values = self.evaluator.evaluate_generator(generator, self.num, self.seed)
        fid = values.get("fid", math.nan)
        if math.isfinite(fid) and fid < self.best_fid:
            self.best_fid = fid
            save_checkpoint(state(), self.run.best_checkpoint)
            write_json(self.run.best_json, {"step": step, **values, "num": self.num,
                                            "features": self.evaluator.extractor.name})
        return {f"eval/{k}": v for k, v in values.items() if k in COLUMNS}
