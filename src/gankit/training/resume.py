"""Continuing a run (``gankit train --resume RUN``): what may change, the record of it, and the trainer that
continues (:func:`resume_run`, :func:`resume_trainer`).

A checkpoint continues one training process: its weights, optimizer moments, data position and random streams
were made under the run's config. The keys of :data:`RESUMABLE` only bound the run, schedule its outputs, set the
step size or pick where it runs, so they can change between two steps; every other key is refused with its reason
(:func:`check_key`) before anything is read or written. Accepted changes go into ``config.yaml`` and the config of
every later checkpoint, and each is recorded with its step in ``resume_history.json`` (:func:`record_changes`).

``config.yaml`` is what the run was trained with, not an input: a resume refuses a hand-edited one
(:func:`check_config_file`) rather than ignore the edit and overwrite it. After a torchrun restart, ``gankit train
--out RUN`` continues RUN when its checkpoint has the command's config (:func:`plan_restart`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from gankit import log
from gankit.config import TRAIN_FLAGS, DataConfig, RunConfig, TrainingConfig, parse_assignment, yaml_load
from gankit.data import DataSource
from gankit.device import select_device
from gankit.errors import UserError, did_you_mean
from gankit.io import RunDir, atomic_write, load_checkpoint, remove_stale_temporaries, write_json
from gankit.training import distributed
from gankit.training.lock import RunLock, RunLocked
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


class RunComplete(UserError):
    """The run is already at (or past) the step total a resume asks for."""

    def __init__(self, step: int, steps: int) -> None:
        self.step, self.steps = step, steps
        super().__init__(f"the run is already at step {step} of {steps}; pass --steps TOTAL larger than that")


# ------------------------------------------------------------------------------------------ comparing configs

_UNSET = object()  # a key one of two configs lacks


def normalized(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config dict as :class:`RunConfig` reads it back (defaults filled in, tuples as lists): two configs that
    differ only in how they were written compare equal. A :class:`UserError` if it is no valid config."""
    if not isinstance(config, Mapping):
        raise UserError(f"a config is a mapping of sections, not {type(config).__name__}")
    return RunConfig.from_dict(copy.deepcopy(dict(config))).to_dict()


def _flat(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{"preset": ..., "model.z_dim": ..., "training.g_lr": ...}``, in the config's order."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            out[key] = value
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as config values: 2 and 2.0 are (YAML may write either), True and 1 are not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def differences(
    a: Mapping[str, Any], b: Mapping[str, Any], *, sections: Sequence[str] | None = None, skip: Sequence[str] = ()
) -> Iterator[tuple[str, Any, Any]]:
    """``(key, value in a, value in b)`` for every ``section.key`` (or top-level key) where two normalized configs
    differ, in ``a``'s order; a key one of them lacks has the value :data:`_UNSET`. ``sections``: only these
    sections; ``skip``: keys left out."""
    fa, fb = _flat(a), _flat(b)
    for key in [*fa, *(k for k in fb if k not in fa)]:
        if key in skip or (sections is not None and key.split(".")[0] not in sections):
            continue
        va, vb = fa.get(key, _UNSET), fb.get(key, _UNSET)
        if not _same(va, vb):
            yield key, va, vb


def show(value: Any) -> str:
    """A config value as ``--set`` reads it: ``0.0002``, ``null``, ``true``, ``[0.0, 0.9]``, ``hinge``."""
    if value is _UNSET:
        return "(not set)"
    return value if isinstance(value, str) else json.dumps(value)


def check_config_file(run: RunDir, state: Mapping[str, Any]) -> None:
    """Refuse (one line, before anything is written) when ``config.yaml`` says something else than the config of
    the checkpoint ``state``: a resume continues the checkpoint's config and rewrites the file, so a hand edit would
    be silently lost. Formatting does not count (both are compared as read back by :class:`RunConfig`), nor does a
    change a resume made at the checkpoint's step (in ``resume_history.json``) whose first checkpoint was never
    written. No ``config.yaml``: nothing to check (the resume writes it again)."""
    path = run.config
    if not path.is_file():
        return
    step = int(state["step"])
    way_out = ("to resume as the checkpoint was, restore config.yaml or delete it (the resume writes it again from "
               "the checkpoint)")
    try:
        edited = normalized(yaml_load(path.read_text()))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, UserError, TypeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is not a config gankit can read ({reason}); a resume continues the config of "
                        f"checkpoints/last.pt (step {step}) and changes settings only with --set key=value; "
                        f"{way_out}") from None
    found = list(differences(edited, normalized(state["config"])))
    if not found:
        return
    recorded = {}  # what a resume at this step set, before it was killed ahead of its first checkpoint
    for entry in read_history(run) if run.resume_history.is_file() else []:
        if isinstance(entry, dict) and entry.get("step") == step:
            recorded.setdefault(entry.get("key"), []).append(entry.get("new"))
    for key, there, saved in found:
        if any(_same(there, value) for value in recorded.get(key, [])):
            continue
        how = (f"--set {key}={show(there)}" if key in RESUMABLE else
               f"--set key=value ({key} itself cannot change on resume; start a new run to change it)")
        raise UserError(
            f"{path} was edited: {key} is {show(there)} there but {show(saved)} in checkpoints/last.pt (step {step}); "
            f"a resume never reads config.yaml (it continues the checkpoint's config and rewrites the file), so "
            f"change a setting with {how}; {way_out}"
        )


def check_resumable(run: RunDir) -> None:
    """A one-line :class:`UserError` unless ``run`` holds ``checkpoints/last.pt``; a run folder without one (it
    stopped before its first checkpoint, e.g. on a full disk) is told how to start again."""
    if run.last_checkpoint.is_file():
        return
    if run.config.is_file():
        raise UserError(f"--resume {run.root}: the run stopped before writing its first checkpoint, so there is "
                        f"nothing to resume; start it again: gankit train --config {run.config} --out {run.root} "
                        "--overwrite")
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
    """Read ``last.pt`` and check everything a resume with ``changes`` could refuse (keys, values, the step
    (:class:`RunComplete`), the device, a hand-edited ``config.yaml``), reading ``config.yaml`` and
    ``resume_history.json`` besides and writing nothing."""
    check_resumable(run)
    source = _identity(run)
    state = load_checkpoint(run.last_checkpoint)
    data, changed = apply_changes(state["config"], changes)
    cfg = RunConfig.from_dict(data)
    check_config_file(run, state)
    step = int(state["step"])
    if cfg.training.steps <= step:
        raise RunComplete(step, cfg.training.steps)
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


# how long rank 0 of a restarted torchrun group waits for the run folder's lock (see acquire_lock)
RESTART_LOCK_WAIT = 30.0


def acquire_lock(lock: RunLock, wait: float = 0.0) -> RunLock:
    """Take ``lock``, waiting up to ``wait`` seconds while another process holds it (then :class:`RunLocked`).

    A killed process's ``flock`` goes with its last open file, and torchrun stops the whole group before it starts
    the next one; but data-loading workers forked while the lock was held share its file, and a worker notices its
    parent's death only at its next check (seconds): a restarted group waits for them rather than fail."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return lock.acquire()
        except RunLocked:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def resume_trainer(
    run_dir: str | Path,
    *,
    steps: int | None = None,
    progress: bool | None = None,
    changes: dict[str, Any] | None = None,
    lock: RunLock | None = None,
    lock_wait: float = 0.0,
    source: DataSource | None = None,
) -> Trainer:
    """A trainer that continues the run in ``run_dir`` from ``checkpoints/last.pt``.

    ``changes`` (``{"training.g_lr": 5e-5}``) may set the keys of :data:`RESUMABLE` (any other key is a one-line
    error); ``steps`` is ``training.steps``. Everything is checked before ``lock`` (taken on rank 0, waiting up to
    ``lock_wait`` seconds for another holder, and left held for the caller) is acquired, and the lock before
    anything is written. Accepted changes go into ``config.yaml``, the config of later checkpoints and
    ``resume_history.json`` (with the step); temporaries of killed writes are removed. ``source``: the run's data,
    opened already by the caller.
    """
    run = RunDir(run_dir)
    wanted = dict(changes or {})
    if steps is not None:
        wanted["training.steps"] = steps
    plan = plan_resume(run, wanted)
    main = distributed.current().is_main
    if lock is not None and main:
        acquire_lock(lock, lock_wait)
        if not plan.is_current(run):  # another process finished writing between the read and the lock
            plan = plan_resume(run, wanted)
    trainer = Trainer(plan.config, run.root, progress=progress, state=plan.state, source=source)
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
    lock_wait: float = 0.0,
) -> Trainer:
    """``gankit train --resume``: a trainer that continues ``run_dir`` with the changes of ``sets``
    (``key=value``) and ``flags`` (see :func:`parse_changes`). Every change is checked before rank 0 takes the
    folder's lock (released when ``held`` closes; ``lock_wait``: see :func:`acquire_lock`), and the lock before
    anything is written."""
    changes = parse_changes(sets or [], flags)
    lock = RunLock(run_dir)
    if held is not None:
        held.callback(lock.release)
    return resume_trainer(run_dir, progress=progress, changes=changes, lock=lock, lock_wait=lock_wait)


def _set_up_only(run: RunDir) -> bool:
    """Whether ``run`` holds no more than a new run's setup writes before its ``config.yaml``: the lock,
    ``classes.json`` and the empty ``checkpoints/`` and ``samples/``."""
    if not run.root.is_dir():
        return False
    for entry in run.root.iterdir():
        if entry.name in (RunDir.CHECKPOINTS, RunDir.SAMPLES) and entry.is_dir() and not any(entry.iterdir()):
            continue
        if entry.name not in (RunDir.LOCK, RunDir.CLASSES) or not entry.is_file():
            return False
    return True


@dataclasses.dataclass(frozen=True)
class RestartPlan:
    """What a torchrun restart of ``gankit train --out RUN`` does: continue RUN (``resume``, with ``changes``) or
    start a new run there (``overwrite``: over the one there)."""

    resume: bool
    overwrite: bool = False
    changes: dict[str, Any] = dataclasses.field(default_factory=dict)


def plan_restart(run_dir: str | Path, cfg: RunConfig, *, overwrite: bool = False) -> RestartPlan:
    """After a torchrun restart, what ``gankit train --out run_dir`` with the config ``cfg`` (its data section as
    the trainer records it: the detected dataset, the absolute path) does, reading only ``last.pt`` or
    ``config.yaml``:

    - ``checkpoints/last.pt`` there with the same model, data and training sections: resume it. The keys of
      :data:`RESUMABLE` are what a resume may have changed, so they are not compared: the command's values are
      the resume's changes (recorded as any resume's are; the same values change nothing).
    - no checkpoint but a ``config.yaml`` of the same config: the killed attempt had saved nothing to continue,
      so the run starts again over it.
    - another config: a one-line :class:`UserError` naming the first differing key (with ``overwrite``, a new
      run over it, as asked).
    - no run there, or only what a setup writes before ``config.yaml`` (``classes.json``, empty folders): a new
      run.
    """
    run = RunDir(run_dir)
    if run.last_checkpoint.is_file():
        saved, where = load_checkpoint(run.last_checkpoint)["config"], "checkpoints/last.pt"
    elif run.config.is_file():
        try:
            saved, where = yaml_load(run.config.read_text()), "config.yaml"
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UserError(f"{run.config} is not readable YAML ({exc}); choose another --out") from None
    else:  # a folder the killed attempt set up without writing its config yet is started over
        return RestartPlan(resume=False, overwrite=overwrite or _set_up_only(run))
    ours = cfg.to_dict()
    for key, mine, theirs in differences(ours, normalized(saved), sections=("model", "data", "training"),
                                         skip=tuple(RESUMABLE)):
        if overwrite:
            return RestartPlan(resume=False, overwrite=True)
        raise UserError(
            f"--out {run.root} holds a run whose config differs from this command's at {key} ({show(theirs)} in its "
            f"{where}, {show(mine)} here); after a torchrun restart a run is continued only with the config it was "
            "started with: choose another --out (or add --overwrite to start over)"
        )
    if not run.last_checkpoint.is_file():
        return RestartPlan(resume=False, overwrite=True)
    changes = {key: ours["training"][key.split(".", 1)[1]] for key in RESUMABLE}
    return RestartPlan(resume=True, changes=changes)


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
    "differences",
    "normalized",
    "parse_changes",
    "plan_restart",
    "plan_resume",
    "read_history",
    "record_changes",
    "resume_run",
    "resume_trainer",
]
