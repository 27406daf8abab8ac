"""Continuing a run (``gankit train --resume RUN``): what may change, the record of it, and the trainer that
continues (:func:`resume_run`, :func:`resume_trainer`).

A checkpoint continues one training process: its weights, optimizer moments, data position and random streams
were made under the run's config. The keys of :data:`RESUMABLE` only bound the run, schedule its outputs, set the
step size or pick where it runs, so they can change between two steps; every other key is refused with its reason
(:func:`check_key`) before anything is read or written. Accepted changes go into ``config.yaml`` and the config of
every later checkpoint, and each is recorded with its step in ``resume_history.json`` (:func:`record_changes`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gankit import log
from gankit.config import TRAIN_FLAGS, DataConfig, RunConfig, TrainingConfig, parse_assignment
from gankit.device import select_device
from gankit.errors import UserError, did_you_mean
from gankit.io import RunDir, atomic_write, load_checkpoint, remove_stale_temporaries, write_json
from gankit.training import distributed
from gankit.training.lock import RunLock
from gankit.training.trainer import Trainer

# key -> why it is safe to change between two steps
RESUMABLE: dict[str, str] = {
    "training.steps": "the total length; training continues to the new total",
    "training.g_lr": "the step size, set on the optimizer at every step (Adam's moments do not depend on it)",
    "training.d_lr": "the step size, set on the optimizer at every step (Adam's moments do not depend on it)",
    "training.log_every": "how often a row of metrics.csv is written",
    "training.sample_every": "how often a sample grid is written",
    "training.checkpoint_every": "how often a checkpoint is written",
    "training.keep_checkpoints": "how many step files are kept (the next checkpoint prunes to it)",
    "training.eval_every": "how often the EMA generator is evaluated",
    "training.eval_num": "how many samples an evaluation draws",
    "training.device": "where the state is loaded; every tensor of a checkpoint moves to it",
    "training.tensorboard": "whether the log is mirrored to TensorBoard",
}

_NEW_RUN = "start a new run (gankit train --preset ... --out NEW) to change it"

# refused keys with a reason of their own; the rest of each section is covered by _SECTION_REASONS / _FIXED
_REFUSED: dict[str, str] = {
    "training.loss": "training.loss changes the objective mid-run (D and G were trained for the old one)",
    "training.gp_weight": "training.gp_weight changes the objective mid-run (D was trained for the old one)",
    "training.drift": "training.drift changes the objective mid-run (D was trained for the old one)",
    "training.batch_size": "training.batch_size changes what one step is: the data position, images_seen and the "
    "balance of D and G the run has reached",
    "training.n_critic": "training.n_critic changes what one step is (D updates per G update) and the data position",
    "training.seed": "training.seed made the initial weights and the data order the checkpoint continues",
    "training.g_betas": "training.g_betas: the optimizer's moments were accumulated with the old betas",
    "training.d_betas": "training.d_betas: the optimizer's moments were accumulated with the old betas",
    "training.lr_decay": "training.lr_decay changes the learning-rate schedule the run has followed so far (set "
    "training.g_lr / training.d_lr instead)",
    "training.ema_decay": "training.ema_decay: the EMA generator was averaged with the old value",
    "training.ema_warmup": "training.ema_warmup: the EMA generator was averaged with the old value",
    "training.amp": "training.amp changes the numerics and the loss-scaler state the checkpoint holds",
    "training.eval_features": "training.eval_features changes the feature network best.pt's FID was measured "
    "with, so the best checkpoint would compare different numbers",
}
_SECTION_REASONS = {
    "model": "model.* keys define the network the checkpoint holds",
    "data": "data.* changes the data the sampler position refers to",
}
_FIXED = "{key} is fixed when a run starts (keys that can change: " + ", ".join(RESUMABLE) + ")"


@dataclasses.dataclass(frozen=True)
class Change:
    """One accepted change of a config key (``key`` as ``section.name``)."""

    key: str
    old: Any
    new: Any


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _full_key(key: str, how: str) -> str:
    """``training.g_lr`` as given; a bare ``g_lr`` is found in the training or data section."""
    if "." in key:
        return key
    for section, cls in (("training", TrainingConfig), ("data", DataConfig)):
        if key in _fields(cls):
            return f"{section}.{key}"
    raise UserError(f"{how}: give its section, e.g. --set training.{key}=... (on resume, training keys can change)")


def check_key(key: str, how: str | None = None) -> str:
    """``key`` (``section.name``) when it may change on resume, else a :class:`UserError` naming it (as ``how``
    named it: ``--set training.loss``, ``--batch-size``) and why not."""
    how = how or key
    if key in RESUMABLE:
        return key
    section, _, name = key.partition(".")
    if section in _SECTION_REASONS:
        if section == "data" and name not in _fields(DataConfig):
            raise UserError(f"{how}: unknown config key {key}{did_you_mean(name, _fields(DataConfig))}")
        raise UserError(f"{how} cannot change when resuming: {_SECTION_REASONS[section]}; {_NEW_RUN}")
    if section == "training":
        names = _fields(TrainingConfig)
        if name not in names:
            raise UserError(f"{how}: unknown config key {key}{did_you_mean(name, names)}; keys that can change on "
                            f"resume: {', '.join(RESUMABLE)}")
        reason = _REFUSED.get(key, _FIXED.format(key=key))
        raise UserError(f"{how} cannot change when resuming: {reason}; {_NEW_RUN}")
    raise UserError(f"{how}: {key!r} is not a config key; give section.key, e.g. training.steps (sections: model, "
                    "data, training)")


def parse_changes(sets: Sequence[str] = (), flags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The changes a resume asks for, as ``{section.key: value}``: ``flags`` are the values of the flags of
    :data:`gankit.config.TRAIN_FLAGS` by argparse name (None: not given), ``sets`` are ``key=value`` texts (read as
    ``--set`` reads them for a new run). Later ones win. Raises :class:`UserError` for any key that cannot change."""
    changes: dict[str, Any] = {}
    for name, (flag, key) in TRAIN_FLAGS.items():
        value = (flags or {}).get(name)
        if value is not None:
            changes[check_key(key, flag)] = value
    for assignment in sets:
        given, value = parse_assignment(assignment)
        how = f"--set {given}"
        changes[check_key(_full_key(given, how), how)] = value
    return changes


def apply_changes(config: Mapping[str, Any], changes: Mapping[str, Any]) -> tuple[dict[str, Any], list[Change]]:
    """``(the config dict with the changes, the changes that differ from it)``; every key is checked against
    :data:`RESUMABLE`. Keys an older config lacks take their defaults first, so ``old`` is the value in force."""
    out = RunConfig.from_dict(copy.deepcopy(dict(config))).to_dict()
    changed: list[Change] = []
    for key, value in changes.items():
        section, name = check_key(key).split(".")
        old = out[section].get(name)
        if value != old or type(value) is not type(old):
            out[section][name] = value
            changed.append(Change(key, old, value))
    return out, changed


def check_resumable(run: RunDir) -> None:
    """A one-line :class:`UserError` unless ``run`` holds ``checkpoints/last.pt``."""
    if not run.last_checkpoint.is_file():
        raise UserError(f"--resume {run.root}: no checkpoints/last.pt there; is it a gankit run folder?")


@dataclasses.dataclass(frozen=True)
class ResumePlan:
    """What a resume continues from: the checkpoint's ``state`` (read from the file identified by ``source``),
    the config with the changes, and the changes."""

    state: dict[str, Any]
    config: RunConfig
    changes: list[Change]
    source: tuple[int, int, int]  # (device, inode, mtime) of last.pt: a rename by another writer changes it

    @property
    def step(self) -> int:
        return int(self.state["step"])

    def is_current(self, run: RunDir) -> bool:
        """False when ``last.pt`` was replaced since it was read."""
        return _identity(run) == self.source


def _identity(run: RunDir) -> tuple[int, int, int]:
    st = run.last_checkpoint.stat()
    return st.st_dev, st.st_ino, st.st_mtime_ns


def plan_resume(run: RunDir, changes: Mapping[str, Any]) -> ResumePlan:
    """Read ``last.pt`` and check everything a resume with ``changes`` could refuse (keys, values, the step,
    the device), reading and writing nothing else."""
    check_resumable(run)
    source = _identity(run)
    state = load_checkpoint(run.last_checkpoint)
    data, changed = apply_changes(state["config"], changes)
    cfg = RunConfig.from_dict(data)
    step = int(state["step"])
    if cfg.training.steps <= step:
        raise UserError(
            f"the run is already at step {step} of {cfg.training.steps}; pass --steps TOTAL larger than that"
        )
    select_device(cfg.training.device)
    return ResumePlan(state, cfg, changed, source)


def read_history(run: RunDir) -> list[dict[str, Any]]:
    """The entries of ``resume_history.json`` (``[]`` when there is none)."""
    path = run.resume_history
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc}); repair or remove it, then resume again") from None
    if not isinstance(entries, list):
        raise UserError(f"{path} should hold a list of changes; repair or remove it, then resume again")
    return entries


def record_changes(run: RunDir, step: int, changes: Sequence[Change]) -> None:
    """Append ``changes`` made at ``step`` to ``resume_history.json`` (rewritten atomically; nothing when empty)."""
    if not changes:
        return
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entries = [{"step": step, "key": c.key, "old": c.old, "new": c.new, "time": now} for c in changes]
    write_json(run.resume_history, [*read_history(run), *entries])


def describe(changes: Sequence[Change]) -> str:
    """``training.g_lr 0.0001 -> 5e-05, training.steps 100 -> 200``."""
    return ", ".join(f"{c.key} {c.old!r} -> {c.new!r}" for c in changes)


def resume_trainer(
    run_dir: str | Path,
    *,
    steps: int | None = None,
    progress: bool | None = None,
    changes: dict[str, Any] | None = None,
    lock: RunLock | None = None,
) -> Trainer:
    """A trainer that continues the run in ``run_dir`` from ``checkpoints/last.pt``.

    ``changes`` (``{"training.g_lr": 5e-5}``) may set the keys of :data:`RESUMABLE` (any other key is a one-line
    error); ``steps`` is ``training.steps``. Everything is checked before ``lock`` (taken on rank 0 and left held
    for the caller) is acquired, and the lock before anything is written. Accepted changes go into
    ``config.yaml``, the config of later checkpoints and ``resume_history.json`` (with the step); temporaries of
    killed writes are removed.
    """
    run = RunDir(run_dir)
    wanted = dict(changes or {})
    if steps is not None:
        wanted["training.steps"] = steps
    plan = plan_resume(run, wanted)
    main = distributed.current().is_main
    if lock is not None and main:
        lock.acquire()
        if not plan.is_current(run):  # another process finished writing between the read and the lock
            plan = plan_resume(run, wanted)
    trainer = Trainer(plan.config, run.root, progress=progress, state=plan.state)
    if main:
        for folder in run.written_folders():  # left by a write that was killed midway
            remove_stale_temporaries(folder)
        changed = list(plan.changes)
        processes = int(plan.state.get("world_size", 1))
        if processes != trainer.dist.world_size:  # the data position was rescaled to the new shards
            changed.append(Change("processes", processes, trainer.dist.world_size))
        record_changes(run, plan.step, changed)
        atomic_write(run.config, trainer.cfg.to_yaml())
        if changed:
            log.info(f"changed on resume at step {plan.step}: {describe(changed)} (recorded in "
                     f"{run.resume_history.name})")
    return trainer


def resume_run(
    run_dir: str | Path,
    *,
    sets: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    progress: bool | None = None,
    held: contextlib.ExitStack | None = None,
) -> Trainer:
    """``gankit train --resume``: a trainer that continues ``run_dir`` with the changes of ``sets``
    (``key=value``) and ``flags`` (see :func:`parse_changes`). Every change is checked before rank 0 takes the
    folder's lock (released when ``held`` closes), and the lock before anything is written."""
    changes = parse_changes(sets or [], flags)
    lock = RunLock(run_dir)
    if held is not None:
        held.callback(lock.release)
    return resume_trainer(run_dir, progress=progress, changes=changes, lock=lock)


def check_resume_flags(
    *, preset: str | None, config_file: str | None, out: str | None = None, overwrite: bool = False,
    print_config: bool = False,
) -> None:
    """Refuse the flags of a new run that have no meaning for ``--resume`` (one line, before anything is read)."""
    if preset or config_file:
        raise UserError("--resume continues a run with its own config; drop --preset / --config (change single "
                        "settings with --set key=value)")
    if out:
        raise UserError("--resume RUN continues the run in RUN; drop --out")
    if overwrite:
        raise UserError("--overwrite starts a run over; it has no meaning with --resume (drop one of them)")
    if print_config:
        raise UserError(f"--print-config shows a new run's config; a run's own is RUN/{RunDir.CONFIG}")


__all__ = [
    "RESUMABLE",
    "Change",
    "ResumePlan",
    "apply_changes",
    "check_key",
    "check_resume_flags",
    "check_resumable",
    "describe",
    "parse_changes",
    "plan_resume",
    "read_history",
    "record_changes",
    "resume_run",
    "resume_trainer",
]
