"""``gankit train``: start a run from a config or continue one, on one process or several (torchrun).

A new run's folder is set up inside :func:`~gankit.training.new_run_dir`, so a setup that fails (bad data, a
model that does not fit it) leaves the folder as it was. One process writes a run folder at a time: rank 0 holds
its lock (:mod:`gankit.training.lock`) from before anything is changed (``--overwrite`` included) to the end of
training. A resume (:func:`gankit.training.resume.resume_run`) may change the keys that module allows. SIGTERM is
handled like Ctrl-C: a checkpoint is saved and the command that resumes is printed.

Elastic restarts: when torchrun (``--max-restarts``) starts the group again after a process died, the same command
runs again. ``gankit train --out RUN`` then continues RUN from its last checkpoint when that checkpoint has the
command's config (:func:`restart`; the rule is :func:`gankit.training.resume.plan_restart`), and ``--resume RUN``
resumes as it would; a run already at its last step ends with status 0.

``--init-from DIR`` starts a new run from a pretrained folder (``gankit import``, ``gankit.save_pretrained``): G
and its EMA from the folder's weights, D from its ``discriminator/`` when there (else D starts fresh, and the
start line says so). The run's model config must be the folder's (a one-line error names the fields that
differ); without --preset and --config the folder's model config is the run's, with the default data and
training settings (``--set`` / flags change them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gankit import interrupts
from gankit.config import RunConfig, apply_set, deep_merge, resolve_config
from gankit.data import DataSource, open_training_data
from gankit.device import select_device
from gankit.errors import ParameterError, UserError
from gankit.hub.layout import PretrainedDir
from gankit.hub.pretrained import model_config_from_pretrained
from gankit.io import SPECTRAL_NORM_FOLDED, RunDir, atomic_write, check_writable
from gankit.models.base import ModelConfig
from gankit.training import Trainer, TrainingInterrupted, distributed, new_run_dir
from gankit.training.lock import RunLock
from gankit.training.resume import (
    RESTART_LOCK_WAIT,
    RunComplete,
    acquire_lock,
    plan_restart,
    resume_run,
    resume_trainer,
)


def default_out(preset: str | None) -> Path:
    """``runs/<preset>-NNN``, the first number not taken."""
    base, stem, n = Path("runs"), preset or "run", 0
    while (base / f"{stem}-{n:03d}").exists():
        n += 1
    return base / f"{stem}-{n:03d}"


@dataclasses.dataclass
class InitWeights:
    """What ``--init-from DIR`` starts a run from: the folder's model config and its G (and D) weights."""

    folder: Path
    model: ModelConfig
    generator: dict[str, Any]
    discriminator: dict[str, Any] | None

    def as_trainer_init(self) -> tuple[dict[str, Any], dict[str, Any] | None, str]:
        return self.generator, self.discriminator, str(self.folder)


def read_init(folder: str | Path) -> InitWeights:
    """The pretrained folder ``folder`` for ``--init-from``; a one-line :class:`ParameterError` when it is none,
    its spectral norm was folded (nothing left to train it with) or its discriminator is of another model."""
    pre = PretrainedDir(folder)
    if not pre.root.is_dir() or not pre.is_pretrained():
        raise ParameterError("init_from", f"{folder} is not a pretrained folder (gankit import, save_pretrained)")
    config, state = pre.read()
    if config.get(SPECTRAL_NORM_FOLDED) is True:
        raise ParameterError("init_from", f"{folder} has spectral norm folded into its weights; training needs a "
                                          "folder written without --fold-sn")  # fmt: skip
    model = model_config_from_pretrained(config, pre.config)
    d_state = None
    if pre.discriminator.root.is_dir():
        d_config, d_state = pre.discriminator.read()
        if model_config_from_pretrained(d_config, pre.discriminator.config) != model:
            raise ParameterError("init_from", f"{folder}: discriminator/ holds another model than the generator")
    return InitWeights(Path(folder), model, state, d_state)


def model_differences(run: ModelConfig, folder: ModelConfig) -> list[str]:
    """``model.KEY: run VALUE, folder VALUE`` for each field where the two configs differ."""
    a, b = run.to_dict(), folder.to_dict()
    keys = sorted(set(a) | set(b))
    return [f"model.{k}: run {a.get(k)!r}, folder {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def run_config(
    preset: str | None,
    config_file: str | None,
    overrides: dict[str, Any] | None,
    sets: list[str] | None,
    init: InitWeights | None = None,
) -> RunConfig:
    """The new run's config; with ``init``, its model must be the folder's (the folder's is the base when neither
    a preset nor a config file is given)."""
    if init is None:
        return resolve_config(preset, config_file, overrides, sets)
    if preset is None and config_file is None:
        data: dict[str, Any] = {"model": init.model.to_dict()}
        if overrides:
            data = deep_merge(data, overrides)
        for assignment in sets or []:
            data = apply_set(data, assignment)
        cfg = RunConfig.from_dict(data)
    else:
        cfg = resolve_config(preset, config_file, overrides, sets)
    differ = model_differences(cfg.model, init.model)
    if differ:
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise UserError(f"--init-from {init.folder}: the run's model config differs from the folder's ("
                        f"{'; '.join(differ[:3])}{more}); leave out --preset / --config to use the folder's")
    return cfg


def resolve(
    preset: str | None,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    *,
    out: str | Path | None = None,
    progress: bool | None = None,
    init: InitWeights | None = None,
) -> tuple[RunConfig, Path, DataSource]:
    """A new run's config (from the preset, the file, flag ``overrides`` and ``sets``), its folder (``out``, else
    :func:`default_out`), checked writable, and its data, opened and checked: all before the run folder is made, so
    a bad --data leaves the disk as it was."""
    cfg = run_config(preset, config_file, overrides, sets, init)
    folder = Path(out) if out else default_out(cfg.preset or (f"{cfg.model.family}-init" if init else None))
    check_writable(folder)  # before any work
    select_device(cfg.training.device)  # a device that is not there is refused before the run folder is made
    source = open_training_data(cfg.data, cfg.model, progress=progress if distributed.current().is_main else False)
    return cfg, folder, source


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
    init_from: str | Path | None = None,
) -> Trainer:
    """A trainer for a new run (config resolved from the preset, the file, flag ``overrides`` and ``sets``;
    ``init_from``: a pretrained folder whose weights it starts from).

    Rank 0 alone creates (or refuses) the run folder, under its lock; the other ranks wait for it. Should the
    setup fail, the folder goes back to how it was: an ``overwrite``'n run is not lost to a typo. The lock is
    released when ``held`` closes (without ``held``: when the lock object is garbage-collected).
    """
    init = read_init(init_from) if init_from is not None else None
    cfg, folder, source = resolve(preset, config_file, overrides, sets, out=out, progress=progress, init=init)
    return new_run_trainer(cfg, folder, source, overwrite=overwrite, progress=progress, held=held, init=init)


def new_run_trainer(
    cfg: RunConfig,
    folder: Path,
    source: DataSource,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    held: contextlib.ExitStack | None = None,
    lock_wait: float = 0.0,
    init: InitWeights | None = None,
) -> Trainer:
    """:func:`start` once :func:`resolve` is done; ``lock_wait``: how long rank 0 waits for the folder's lock
    (:func:`gankit.training.resume.acquire_lock`)."""
    setup: contextlib.AbstractContextManager = contextlib.nullcontext()
    if distributed.current().is_main:
        lock = RunLock(folder)
        if lock_wait and folder.is_dir():
            acquire_lock(lock, lock_wait)  # taken before the checks: new_run_dir keeps it (or releases it on failure)
        setup = new_run_dir(folder, overwrite=overwrite, lock=lock)
        if held is not None:
            held.callback(lock.release)
    with setup:
        distributed.barrier()
        return Trainer(cfg, folder, progress=progress, source=source,
                       init=init.as_trainer_init() if init is not None else None)


def as_recorded(cfg: RunConfig, source: DataSource) -> RunConfig:
    """``cfg`` as its trainer records it in ``config.yaml`` and checkpoints: the detected dataset and the absolute
    path in place of ``auto`` / a relative path (as :class:`~gankit.training.Trainer` does when it opens the data)."""
    if source.path is None:
        return cfg
    data = dataclasses.replace(cfg.data, dataset=source.kind, path=str(Path(source.path).resolve()))
    return dataclasses.replace(cfg, data=data)


def restart(
    say: Callable[..., None],
    *,
    preset: str | None,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    out: str | Path,
    overwrite: bool = False,
    progress: bool | None = None,
    held: contextlib.ExitStack | None = None,
    init_from: str | Path | None = None,
) -> Trainer:
    """The trainer of ``gankit train --out RUN`` after a torchrun restart: RUN's run continued from its last
    checkpoint when it was made with this command's config, else what
    :func:`~gankit.training.resume.plan_restart` says (a new run; a one-line refusal naming the first key that
    differs). Rank 0 decides for all ranks; it waits up to ``RESTART_LOCK_WAIT`` seconds for the folder's lock.
    Raises :class:`~gankit.training.resume.RunComplete` when the run is already at its last step."""
    init = read_init(init_from) if init_from is not None else None
    cfg, folder, source = resolve(preset, config_file, overrides, sets, out=out, progress=progress, init=init)
    recorded = as_recorded(cfg, source)
    plan = distributed.decided_by_main(lambda: plan_restart(folder, recorded, overwrite=overwrite))
    attempt = distributed.restart_count()
    if not plan.resume:
        trainer = new_run_trainer(cfg, folder, source, overwrite=plan.overwrite, progress=progress, held=held,
                                  lock_wait=RESTART_LOCK_WAIT, init=init)
        say(f"gankit: torchrun restart {attempt}: no checkpoint in {folder} to continue; training "
            f"{cfg.preset or cfg.model.family} on {trainer.device} for {cfg.training.steps} steps from the start",
            file=sys.stderr)
        return trainer
    lock = RunLock(folder)
    if held is not None:
        held.callback(lock.release)
    trainer = resume_trainer(folder, progress=progress, changes=plan.changes, lock=lock,
                             lock_wait=RESTART_LOCK_WAIT, source=source)
    say(f"gankit: torchrun restart {attempt}: resumed {folder} at step {trainer.step} of "
        f"{trainer.cfg.training.steps} from its last checkpoint (its config is this command's)", file=sys.stderr)
    return trainer


def _ours(out: str | Path) -> bool:
    """Whether ``out`` is being trained by this torchrun job (an earlier attempt of it took the folder): only
    then may a restart continue it. Any other folder is treated as the first attempt treats it (refused, or
    replaced with ``--overwrite``)."""
    job, marker = distributed.elastic_job(), RunDir(out).job
    try:
        return job is not None and marker.is_file() and marker.read_text().strip() == job
    except OSError:
        return False


def _mark_job(run: RunDir) -> None:
    """Record (rank 0) that this torchrun job trains ``run``, so that its restarts may continue it."""
    job = distributed.elastic_job()
    if job is not None and distributed.current().is_main:
        atomic_write(run.job, job + "\n")


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
        attempt = distributed.restart_count()  # > 0: torchrun started this group again after a failure
        with contextlib.ExitStack() as held:
            try:
                if resume:
                    trainer = resume_run(resume, sets=new_run.get("sets"), flags=flags, progress=progress, held=held,
                                         lock_wait=RESTART_LOCK_WAIT if attempt else 0.0)
                    say(f"gankit: resuming {resume} at step {trainer.step} of {trainer.cfg.training.steps}",
                        file=sys.stderr)
                elif attempt and new_run.get("out") and distributed.decided_by_main(lambda: _ours(new_run["out"])):
                    trainer = restart(say, progress=progress, held=held, **new_run)
                else:
                    trainer = start(progress=progress, held=held, **new_run)
                    cfg = trainer.cfg
                    say(f"gankit: training {cfg.preset or cfg.model.family} on {trainer.device} for "
                        f"{cfg.training.steps} steps into {trainer.run_dir}", file=sys.stderr)
                    if new_run.get("init_from") is not None:
                        init_d = (Path(new_run["init_from"]) / PretrainedDir.DISCRIMINATOR).is_dir()
                        d = "and D from its discriminator/" if init_d else "(it has no discriminator/: D starts fresh)"
                        say(f"gankit: G and its EMA start from {new_run['init_from']} {d}", file=sys.stderr)
                _mark_job(trainer.run)
            except RunComplete as exc:
                if not attempt:
                    raise
                # the last attempt ended after its final checkpoint (a process died on its way out)
                say(f"gankit: torchrun restart {attempt}: {resume or new_run.get('out')} is already at step "
                    f"{exc.step} of {exc.steps}; nothing left to train", file=sys.stderr)
                return 0
            return fit(trainer, say)
    finally:
        distributed.cleanup()  # destroy_process_group on every exit path
