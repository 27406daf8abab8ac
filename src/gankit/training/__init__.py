"""Training: the step (:mod:`~gankit.training.step`), the loop (:mod:`~gankit.training.trainer`), checkpoints and
outputs, resuming, growth, EMA, logging, evaluation during training and run folders."""

from gankit.training.ema import EMA
from gankit.training.run import new_run_dir, prepare_run_dir
from gankit.training.trainer import Trainer, TrainingDiverged, TrainingInterrupted

__all__ = ["EMA", "Trainer", "TrainingDiverged", "TrainingInterrupted", "new_run_dir", "prepare_run_dir"]
