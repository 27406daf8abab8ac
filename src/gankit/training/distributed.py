"""Data-parallel training on ``torch.distributed`` (launched by ``torchrun``).

Each process (rank) draws its own shard of the data and its own latents; after every backward the gradients
are averaged across ranks with one flattened ``all_reduce`` per network, and buffers (batch-norm statistics,
spectral-norm vectors) are broadcast from rank 0, so all ranks hold identical G and D after every step.
Gradient all-reduce (as NVlabs' StyleGAN2-ADA / StyleGAN3 training loops do) rather than wrapping G and D in
``DistributedDataParallel``: a GAN step runs D several times before one backward (real, fake, the gradient
penalty's double backward) and freezes D during G's step, all of which DDP's reducer does not support.

A torchrun restart (``--max-restarts``) starts every process again; :func:`restart_count` says which attempt this
is, and :func:`init_distributed` keeps the attempts' process groups apart (see :func:`_attempt_store`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from gankit import interrupts, log
from gankit.errors import ParameterError, UserError

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def elastic_job() -> str | None:
    """This torchrun job's identity, the same in every attempt of it and different for any other job: its
    rendezvous id and the pid of its torchrun agent (the workers' parent). None without torchrun."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    return None if run_id is None else f"{run_id}:{os.getppid()}"


def restart_count() -> int:
    """How many times torchrun has restarted this group of processes (0: the first attempt, or no torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment (NCCL on CUDA, gloo otherwise)."""
    if not launched_by_torchrun():
        return DistInfo()
    if not dist.is_initialized():
        # torch.optim imports torch._dynamo on first use; imported after the process group exists, dynamo keeps a
        # reference to it, so destroy_process_group could not destroy it (see cleanup). Import it first.
        import torch._dynamo  # noqa: F401

        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":  # one GPU per process before any collective (NCCL uses the current device)
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        store = _attempt_store()
        if store is None:
            dist.init_process_group(backend=backend)
        else:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _attempt_store() -> dist.Store | None:
    """The store of torchrun's agent with keys of this attempt only, or None: the group is set up from the
    environment as torch does it.

    Since torch 2.4 torchrun's c10d rendezvous lets the processes share its agent's store, and the agent keeps that
    store from one restart to the next: the addresses the killed attempt's processes published are still there, and
    a process of the next attempt may read its peer's old address before the peer has written its new one. Gloo then
    connects to a closed port (``Connection refused``, another restart) or waits for a peer that never comes (a
    hang; torch issue 135712). With all processes on one machine, one agent starts them all and
    ``TORCHELASTIC_RESTART_COUNT`` is the same in every one of them, so each attempt gets keys of its own. On several
    machines each agent counts its own restarts, so the counts can differ: torch's own setup is kept, and a restart
    needs ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` in torchrun's environment (a new store for every attempt)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "MASTER_ADDR" not in os.environ:
        return None
    if os.environ.get("LOCAL_WORLD_SIZE") != os.environ.get("WORLD_SIZE"):  # several machines
        if restart_count() and int(os.environ.get("RANK", "0")) == 0:
            log.warn("torchrun restarted the processes of a run on several machines with its store shared between "
                     "attempts; if they fail to connect, launch torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1")
        return None
    from torch.distributed.constants import default_pg_timeout

    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), int(os.environ["WORLD_SIZE"]),
                          is_master=False, timeout=default_pg_timeout)
    return dist.PrefixStore(f"gankit/attempt_{restart_count()}", store)


def current() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def cleanup() -> None:
    """Leave the process group, and return only once its gloo threads have finished: called on every exit path
    of a distributed run.

    The process group's destructor joins gloo's worker threads while the interpreter is alive. Had anything kept
    the group alive past ``destroy_process_group`` (``torch._dynamo`` imported after the group was created does),
    its threads would live into interpreter shutdown (see :func:`_wait_for_backend_threads`)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        _wait_for_backend_threads()


def _wait_for_backend_threads(timeout: float = 5.0) -> None:
    """Wait (with the GIL released) until gloo's threads have exited.

    ``destroy_process_group`` can return while a gloo worker thread still releases the last collective's work
    object. Releasing it drops that work's tensors, and a tensor whose Python object is already gone needs the GIL
    to free that object. If the process reaches interpreter shutdown first, the thread cannot get the GIL, CPython
    ends it with ``pthread_exit`` inside a C++ destructor, and the process aborts with ``terminate called without
    an active exception`` (exit code -6): the flaky failure of two-process runs, most often on the rank that finishes
    first. Sleeping here hands the GIL to those threads until the process group's destructor has joined them.
    Linux names the threads in ``/proc/self/task``; elsewhere there is nothing to read and nothing is waited for.
    """
    tasks = Path("/proc/self/task")
    deadline = time.monotonic() + timeout
    while tasks.is_dir() and time.monotonic() < deadline:
        names = []
        for task in tasks.iterdir():
            try:
                names.append((task / "comm").read_text())
            except OSError:  # the thread ended while being listed
                continue
        if not any(name.startswith(("pt_gloo", "gloo_")) for name in names):
            return
        time.sleep(0.005)


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def decided_by_main(decide: Callable[[], T]) -> T:
    """``decide()`` run by rank 0 alone; every rank returns its result, or raises its :class:`UserError` (with the
    same message), so all ranks take the same way. One process: ``decide()``."""
    info = current()
    if not info.enabled:
        return decide()
    box: list[Any] = [None]
    error: UserError | None = None
    if info.is_main:
        try:
            box[0] = ("value", decide())
        except UserError as exc:
            error = exc
            box[0] = ("error", exc.as_flag() if isinstance(exc, ParameterError) else str(exc))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if error is not None:
        raise error
    if kind == "error":
        raise UserError(value)
    return value


def average_gradients(params: list[nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks (one collective for all of them)."""
    world = current().world_size
    grads = [p.grad for p in params if p.grad is not None]
    if world == 1 or not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world
    for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        g.copy_(synced)


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` ``(B, ...)`` concatenated in rank order ``(world * B, ...)``; ``t`` itself on one process."""
    world = current().world_size
    if world == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def all_ranks_true(flag: bool, device: torch.device) -> bool:
    """True only if ``flag`` holds on every rank (so every rank makes the same skip decision)."""
    if not current().enabled:
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() == 0.0)


def broadcast_state(module: nn.Module, *, buffers_only: bool = False) -> None:
    """Copy rank 0's parameters (unless ``buffers_only``) and buffers to every rank."""
    if not current().enabled:
        return
    tensors = list(module.buffers()) if buffers_only else [*module.parameters(), *module.buffers()]
    for t in tensors:
        dist.broadcast(t.data, src=0)


def rescale_data_position(data: Any, old_world: int, new_world: int) -> Any:
    """A data stream's saved state for ``new_world`` processes when it was saved by ``old_world``: the sampler
    index counts images of one rank's shard, so the same point of the epoch (index x old world size images) is
    split over the new ranks. Unchanged when the world size is, or when the state has no sampler index."""
    sampler = data.get("sampler") if isinstance(data, dict) else None
    if old_world == new_world or not isinstance(sampler, dict) or "index" not in sampler:
        return data
    index = int(sampler["index"]) * old_world // new_world
    return {**data, "sampler": {**sampler, "index": index}}


def launch(nproc: int, argv: list[str]) -> int:
    """Re-run ``gankit <argv>`` under torchrun with ``nproc`` processes on this node; returns its exit code."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "gankit", *argv]
    child = subprocess.Popen(cmd)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: torchrun passes it on to the ranks (they save a
            # checkpoint); wait for them instead of leaving them running without a parent
            child.send_signal(signal.SIGTERM if isinstance(exc, interrupts.Terminated) else signal.SIGINT)
