"""``gankit train``: start a run from a config or continue one, on one process or several (torchrun).

A new run's folder is set up inside :func:`~gankit.training.new_run_dir`, so a setup that fails (bad data, a
model that does not fit it) leaves the folder as it was. One process writes a run folder at a time: rank 0 holds
its lock (:mod:`gankit.training.lock`) from before anything is changed (``--overwrite`` included) to the end of
training. A resume (:func:`gankit.training.resume.resume_run`) may change the keys that module allows. SIGTERM is
handled like Ctrl-C: a checkpoint is saved and the command that resumes is printed.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gankit import interrupts
from gankit.config import resolve_config
from gankit.data import open_training_data
from gankit.device import select_device
from gankit.io import check_writable
from gankit.training import Trainer, TrainingInterrupted, distributed, new_run_dir
from gankit.training.lock import RunLock
from gankit.training.resume import resume_run


def default_out(preset: str | None) -> Path:
    """``runs/<preset>-NNN``, the first number not taken."""
    base, stem, n = Path("runs"), preset or "run", 0
    while (base / f"{stem}-{n:03d}").exists():
        n += 1
    return base / f"{stem}-{n:03d}"


def start(
    *,
    preset: str | None,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    held: contextlib.ExitStack | None = None,
) -> Trainer:
    """A trainer for a new run (config resolved from the preset, the file, flag ``overrides`` and ``sets``).

    Rank 0 alone creates (or refuses) the run folder, under its lock; the other ranks wait for it. Should the
    setup fail, the folder goes back to how it was: an ``overwrite``'n run is not lost to a typo. The lock is
    released when ``held`` closes (without ``held``: when the lock object is garbage-collected).
    """
    cfg = resolve_config(preset, config_file, overrides, sets)
    folder = Path(out) if out else default_out(cfg.preset)
    check_writable(folder)  # before any work
    # the data is opened (and checked) before the run folder is made: a bad --data leaves the disk as it was
    source = open_training_data(cfg.data, cfg.model, progress=progress if distributed.current().is_main else False)
    setup: contextlib.AbstractContextManager = contextlib.nullcontext()
    if distributed.current().is_main:
        lock = RunLock(folder)
        setup = new_run_dir(folder, overwrite=overwrite, lock=lock)
        if held is not None:
            held.callback(lock.release)
    with setup:
        distributed.barrier()
        return Trainer(cfg, folder, progress=progress, source=source)


def fit(trainer: Trainer, say: Callable[..., None]) -> int:
    """Train to the end; exit status 0, or 130 / 143 after Ctrl-C / SIGTERM (checkpoint saved, the command that
    resumes said). SIGTERM interrupts like Ctrl-C (the command line's :func:`gankit.interrupts.sigterm_as_interrupt`;
    installed here too for callers of this function)."""
    with interrupts.sigterm_as_interrupt():
        try:
            trainer.fit()
        except TrainingInterrupted as exc:
            say(f"gankit: {exc}", file=sys.stderr)
            return exc.status
    say(
        f"gankit: done at step {trainer.step}. Run folder {trainer.run_dir}: samples/, metrics.csv, loss.png, "
        f"checkpoints/last.pt, generator.safetensors"
    )
    return 0


def train(
    *,
    resume: str | None = None,
    flags: dict[str, Any] | None = None,
    device: str | None = None,
    progress: bool | None = None,
    **new_run: Any,
) -> int:
    """Train a new run (``new_run``: the arguments of :func:`start`) or continue ``resume`` (with ``flags`` and
    ``new_run["sets"]`` as :func:`resume_run` takes them); every rank of a torchrun launch runs this. Returns the
    exit status. Rank 0 holds the run folder's lock until training ends."""
    try:
        if distributed.launched_by_torchrun():
            distributed.init_distributed(select_device(device or "auto"))
        say = print if distributed.current().is_main else (lambda *a, **k: None)
        with contextlib.ExitStack() as held:
            if resume:
                trainer = resume_run(resume, sets=new_run.get("sets"), flags=flags, progress=progress, held=held)
                say(f"gankit: resuming {resume} at step {trainer.step} of {trainer.cfg.training.steps}",
                    file=sys.stderr)
            else:
                trainer = start(progress=progress, held=held, **new_run)
                cfg = trainer.cfg
                say(f"gankit: training {cfg.preset or cfg.model.family} on {trainer.device} for "
                    f"{cfg.training.steps} steps into {trainer.run_dir}", file=sys.stderr)
            return fit(trainer, say)
    finally:
        distributed.cleanup()  # destroy_process_group on every exit path
