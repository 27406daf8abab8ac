"""What may change when a run is resumed (``gankit train --resume RUN --set key=value``), and the record of it.

A checkpoint continues one training process: its weights, optimizer moments, data position and random streams
were made under the run's config. The keys of :data:`RESUMABLE` only bound the run, schedule its outputs, set the
step size or pick where it runs, so they can change between two steps; every other key is refused with its reason
(:func:`check_key`) before anything is read or written. Accepted changes go into ``config.yaml`` and the config of
every later checkpoint, and each is recorded with its step in ``resume_history.json`` (:func:`record_changes`).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gankit.config import DataConfig, RunConfig, TrainingConfig, apply_set
from gankit.device import select_device
from gankit.errors import UserError, did_you_mean
from gankit.io import RunDir, load_checkpoint, write_json

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


def parse_changes(sets: Sequence[str] = (), flags: Mapping[str, tuple[str, Any]] | None = None) -> dict[str, Any]:
    """The changes a resume asks for, as ``{section.key: value}``: ``flags`` maps a config key to ``(the flag
    that set it, its value)`` (None: not given), ``sets`` are ``key=value`` texts (values parsed as YAML, as
    ``--set`` does for a new run). Later ones win. Raises :class:`UserError` for any key that cannot change."""
    changes: dict[str, Any] = {}
    for key, (flag, value) in (flags or {}).items():
        if value is not None:
            changes[check_key(key, flag)] = value
    for assignment in sets:
        if "=" not in assignment:
            raise UserError(f"--set {assignment!r}: expected key=value, e.g. --set training.g_lr=2e-4")
        given, raw = assignment.split("=", 1)
        how = f"--set {given.strip()}"
        key = check_key(_full_key(given.strip(), how), how)
        section, name = key.split(".")
        changes[key] = apply_set({}, f"{key}={raw}")[section][name]
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


__all__ = [
    "RESUMABLE",
    "Change",
    "ResumePlan",
    "apply_changes",
    "check_key",
    "check_resumable",
    "describe",
    "parse_changes",
    "plan_resume",
    "read_history",
    "record_changes",
]
