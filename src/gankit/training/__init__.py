"""Training: the loop, EMA, checkpoints, logging and run folders."""

from gankit.training.checkpoint import load_checkpoint, read_generator_export, save_checkpoint, save_generator
from gankit.training.ema import EMA
from gankit.training.run import new_run_dir, prepare_run_dir, select_device
from gankit.training.trainer import Trainer, TrainingInterrupted

__all__ = [
    "EMA",
    "Trainer",
    "TrainingInterrupted",
    "load_checkpoint",
    "new_run_dir",
    "prepare_run_dir",
    "read_generator_export",
    "save_checkpoint",
    "save_generator",
    "select_device",
]
