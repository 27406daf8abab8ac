"""Equal work against PyTorch-StudioGAN: one training iteration of gankit and of a StudioGAN checkout, timed in
one process, interleaved.

The peer is a checkout of POSTECH-CVLab/PyTorch-StudioGAN that the user points at (``--studiogan-dir``); its
``src/models/resnet.py`` and ``src/utils/ops.py`` are imported from there at run time and nothing of it is copied
into gankit. Its G and D are built with the constructor arguments its config gives: the defaults of its
``src/config.py`` (``load_base_cfgs``, read with ``ast``, not imported) overlaid with the YAML of the mode:

- ``--size 32`` (default): ``src/configs/CIFAR10/SNGAN.yaml`` (ResNet G with conditional BN, projection D with
  spectral norm, hinge, 5 D steps per G step) against gankit's ``sngan-cifar10-proj`` preset with the options
  that make it StudioGAN's network (``bn_eps 1e-4``, ``sn_eps 1e-6``, ``out_norm_conditional false``,
  ``d_shortcut_relu true``: equal shapes, parameters and FLOPs, the first two and the last not changing the cost).
- ``--size 64``: ``src/configs/Baby_ImageNet/SAGAN.yaml`` (the same resnet.py with StudioGAN's SAGAN attention
  after G block 3 and D block 1, SN in G too, 100 classes, 1 D step) against gankit's SN-GAN family with
  ``resnet_layout studiogan`` and the BigGAN attention block at the same places: the convolution shapes of
  StudioGAN's SAGAN-64 (gankit's ``sagan-celeba64`` preset is a different, DCGAN-style network).

Import of the peer: ``models.resnet`` imports ``utils.ops`` (torch and numpy only) and ``utils.misc``, whose
import chain pulls in torchvision, seaborn, matplotlib and most of StudioGAN. resnet.py uses one name of it,
``misc.dummy_context_mgr``, so the benchmark puts a stub module ``utils.misc`` holding only that name (a
null context) into ``sys.modules`` while it imports; the peer's ``utils``, ``models`` and ``utils.misc`` names are
taken out of ``sys.modules`` again afterwards.

The iteration (both sides): ``n_critic`` D steps (G's fakes made under ``no_grad``, hinge loss on real and fake
logits, Adam step), then one G step (hinge G loss, D frozen, Adam step); Adam with gankit's learning rates and
betas for both, random "real" images and labels (fixed seed). Variants:

- ``gankit``: gankit's own ``GANStep.train_step`` (what ``gankit train`` runs): channels_last (gankit's default),
  ``training.amp=bf16`` for bf16, one D pass over reals and fakes together, plus its EMA update of G and its
  finite-gradient checks.
- ``peer``: StudioGAN's modules as shipped (NCHW) in this file's step, written as StudioGAN's ``worker.py`` does
  it: two D passes (reals, then fakes), no EMA (``apply_g_ema`` is off in these configs).
- ``peer-cl``: the same with its modules and inputs in channels_last.
- ``gankit-bare`` (not run unless asked for): gankit's G and D (channels_last) in this file's step, so that the
  modules can be compared apart from gankit's step.

bf16 is ``torch.autocast(device, torch.bfloat16)`` around the G and D forward passes (losses in float32), the way
gankit's trainer applies ``training.amp=bf16``.

Measurement: for each precision, every variant is built in this process, runs one iteration under
``torch.utils.flop_counter.FlopCounterMode`` (forward + backward FLOPs of the iteration; gankit's attention in its
reference formulation so that fused kernels are counted as the same work) and ``--warmup`` more, then ``--rounds``
rounds each time one iteration of every variant, the order rotating by one per round. Reported per variant: the
median seconds per iteration, img/s = real images D consumes per iteration (``n_critic x batch``: 320 at batch
64 in the 32 px mode) per second, GFLOP/s = FLOPs of one iteration / median seconds (FLOPs of the network as
defined: counted with gankit's folded resampling convolutions in their two-step form, ``two_step_resampling``, so
the same work on both sides; gankit evaluates fewer, printed in the equal-work table), and peak memory, measured in
a subprocess per variant and precision (CPU: growth of the process's peak RSS over its RSS after building models
and data, during 2 iterations, the kernel's peak mark ``VmHWM`` reset after the build through
``/proc/self/clear_refs``, else ``ru_maxrss``; CUDA: the allocator's peak over the same baseline). The paired
ratio of a variant is the median over rounds of (its seconds / gankit's seconds) in the same round: above 1,
gankit is that much faster. Before timing it prints the parameter counts and forward FLOPs of G and D of both
sides (one batch, fp32), which should agree.

    python benchmarks/peer_step.py --studiogan-dir ~/src/PyTorch-StudioGAN
    python benchmarks/peer_step.py --studiogan-dir ../PyTorch-StudioGAN --rounds 1 --warmup 0 --batch 8
    python benchmarks/peer_step.py --studiogan-dir ../PyTorch-StudioGAN --size 64 --json peer64.json
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import gc
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

VARIANTS = ("gankit", "peer", "peer-cl", "gankit-bare")
DEFAULT_VARIANTS = ("gankit", "peer", "peer-cl")
DTYPES = {"fp32": None, "bf16": torch.bfloat16}
MODES = {  # --size -> the peer's YAML (relative to the checkout) and the gankit preset the config starts from
    32: {"peer_yaml": "src/configs/CIFAR10/SNGAN.yaml", "preset": "sngan-cifar10-proj"},
    64: {"peer_yaml": "src/configs/Baby_ImageNet/SAGAN.yaml", "preset": "sngan-cifar10-proj"},
}
MEMORY_ITERS = 2


class PeerError(Exception):
    """The StudioGAN checkout cannot be used (one line for the user)."""


# ------------------------------------------------------------------------------------------------ the peer


def _load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PeerError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def import_peer(root: Path) -> types.ModuleType:
    """StudioGAN's ``models.resnet`` module, imported from ``root/src`` (see the module doc for the stub)."""
    src = root / "src"
    for rel in ("models/resnet.py", "utils/ops.py", "config.py"):
        if not (src / rel).is_file():
            raise PeerError(f"--studiogan-dir {root}: no src/{rel} there; give a PyTorch-StudioGAN checkout's root")
    names = ("utils", "utils.ops", "utils.misc", "models", "models.resnet")
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    try:
        packages = {}
        for pkg in ("utils", "models"):
            packages[pkg] = types.ModuleType(pkg)
            packages[pkg].__path__ = [str(src / pkg)]
            sys.modules[pkg] = packages[pkg]
        misc = types.ModuleType("utils.misc")
        misc.dummy_context_mgr = contextlib.nullcontext  # the one name resnet.py uses
        sys.modules["utils.misc"] = packages["utils"].misc = misc
        packages["utils"].ops = _load_file("utils.ops", src / "utils" / "ops.py")
        resnet = _load_file("models.resnet", src / "models" / "resnet.py")
    except ImportError as e:
        raise PeerError(f"importing StudioGAN's models/resnet.py from {src}: {e}") from e
    finally:
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
    return resnet


def peer_config(root: Path, yaml_rel: str) -> dict[str, dict[str, Any]]:
    """StudioGAN's config of one run: the literal defaults assigned in ``Configurations.load_base_cfgs`` of its
    ``src/config.py`` (``self.SECTION.key = value``), overlaid with the run's YAML."""
    import yaml

    tree = ast.parse((root / "src" / "config.py").read_text())
    base = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "load_base_cfgs"), None)
    if base is None:
        raise PeerError(f"--studiogan-dir {root}: src/config.py has no load_base_cfgs; is it PyTorch-StudioGAN?")
    cfg: dict[str, dict[str, Any]] = {}
    for node in ast.walk(base):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        t = node.targets[0]
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Attribute) and \
                isinstance(t.value.value, ast.Name) and t.value.value.id == "self":
            try:
                cfg.setdefault(t.value.attr, {})[t.attr] = ast.literal_eval(node.value)
            except ValueError:
                continue
    path = root / yaml_rel
    if not path.is_file():
        raise PeerError(f"--studiogan-dir {root}: no {yaml_rel} there")
    for section, values in (yaml.safe_load(path.read_text()) or {}).items():
        cfg.setdefault(section, {}).update(values or {})
    if cfg["MODEL"].get("backbone") != "resnet":
        raise PeerError(f"{yaml_rel}: backbone {cfg['MODEL'].get('backbone')!r}; this benchmark needs resnet")
    return cfg


def build_peer(resnet: types.ModuleType, cfg: dict[str, dict[str, Any]]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """StudioGAN's G and D with the arguments its ``models/model.py`` passes, the layer makers picked as its
    ``Configurations.define_modules`` picks them."""
    ops = resnet.ops
    m, data = types.SimpleNamespace(**cfg["MODEL"]), cfg["DATA"]
    acts = {"ReLU": lambda: torch.nn.ReLU(inplace=True),
            "Leaky_ReLU": lambda: torch.nn.LeakyReLU(negative_slope=0.1, inplace=True)}
    if m.g_act_fn not in acts or m.d_act_fn not in acts:
        raise PeerError(f"activation {m.g_act_fn}/{m.d_act_fn}: this benchmark knows ReLU and Leaky_ReLU")
    modules = types.SimpleNamespace(
        g_conv2d=ops.snconv2d if m.apply_g_sn else ops.conv2d,
        g_linear=ops.snlinear if m.apply_g_sn else ops.linear,
        g_embedding=ops.sn_embedding if m.apply_g_sn else ops.embedding,
        d_conv2d=ops.snconv2d if m.apply_d_sn else ops.conv2d,
        d_linear=ops.snlinear if m.apply_d_sn else ops.linear,
        d_embedding=ops.sn_embedding if m.apply_d_sn else ops.embedding,
        g_bn=ops.ConditionalBatchNorm2d if m.g_cond_mtd == "cBN" else ops.batchnorm_2d,
        d_bn=ops.batchnorm_2d,
        g_act_fn=acts[m.g_act_fn](),
        d_act_fn=acts[m.d_act_fn](),
    )
    G = resnet.Generator(
        z_dim=m.z_dim, g_shared_dim=m.g_shared_dim, img_size=data["img_size"], g_conv_dim=m.g_conv_dim,
        apply_attn=m.apply_attn, attn_g_loc=m.attn_g_loc, g_cond_mtd=m.g_cond_mtd, num_classes=data["num_classes"],
        g_init=m.g_init, g_depth=m.g_depth, mixed_precision=False, MODULES=modules, MODEL=m,
    )  # fmt: skip
    D = resnet.Discriminator(
        img_size=data["img_size"], d_conv_dim=m.d_conv_dim, apply_d_sn=m.apply_d_sn, apply_attn=m.apply_attn,
        attn_d_loc=m.attn_d_loc, d_cond_mtd=m.d_cond_mtd, aux_cls_type=m.aux_cls_type, d_embed_dim=m.d_embed_dim,
        num_classes=data["num_classes"], normalize_d_embed=m.normalize_d_embed, d_init=m.d_init, d_depth=m.d_depth,
        mixed_precision=False, MODULES=modules, MODEL=m,
    )  # fmt: skip
    return G, D


# ------------------------------------------------------------------------------------------------ gankit's side


def gankit_sets(size: int, peer: dict[str, dict[str, Any]]) -> list[str]:
    """``--set``s that turn the mode's gankit preset into StudioGAN's network of ``peer``."""
    sets = ["model.bn_eps=1e-4", "model.sn_eps=1e-6", "model.out_norm_conditional=false", "model.d_shortcut_relu=true"]
    if size == 32:
        return sets  # the preset's widths, 256 / 128, are StudioGAN's 4 x 64 / 2 x 64 at 32 px
    m, data, opt = peer["MODEL"], peer["DATA"], peer["OPTIMIZATION"]
    g_attn = list(m["attn_g_loc"]) if m["apply_attn"] else []
    d_attn = list(m["attn_d_loc"]) if m["apply_attn"] else []
    g_sn = "true" if m["apply_g_sn"] else "false"
    return [
        *sets, f"model.image_size={data['img_size']}", "model.resnet_layout=studiogan",
        f"model.g_conv_dim={m['g_conv_dim']}", f"model.d_conv_dim={m['d_conv_dim']}", f"model.z_dim={m['z_dim']}",
        f"model.num_classes={data['num_classes']}", f"model.g_spectral_norm={g_sn}",
        f"model.g_last_spectral_norm={g_sn}", f"model.g_attention_blocks={g_attn}",
        f"model.d_attention_blocks={d_attn}", f"training.n_critic={opt['d_updates_per_step']}",
        f"training.g_lr={opt['g_lr']}", f"training.d_lr={opt['d_lr']}",
        f"training.g_betas=[{opt['beta1']}, {opt['beta2']}]", f"training.d_betas=[{opt['beta1']}, {opt['beta2']}]",
    ]  # fmt: skip


def gankit_trainer(args: argparse.Namespace, peer: dict[str, dict[str, Any]], dtype: str):
    from gankit.apps.bench import synthetic_trainer

    amp = "bf16" if DTYPES[dtype] is not None else "off"
    sets = [*gankit_sets(args.size, peer), f"training.amp={amp}"]
    return synthetic_trainer(MODES[args.size]["preset"], batch_size=args.batch, device=args.device, sets=sets)


# ------------------------------------------------------------------------------------------------ the step


def hinge_step(
    G: torch.nn.Module,
    D: torch.nn.Module,
    d_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    batch: int,
    z_dim: int,
    num_classes: int,
    image_size: int,
    training: Any,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    device: torch.device,
    seed: int = 0,
) -> Callable[[], None]:
    """This file's iteration around ``G(z, y)`` and ``d_logits(x, y)`` (StudioGAN's ``worker.py`` order: two D
    passes per D step, G's fakes without a graph), with Adam at ``training``'s rates and betas."""
    opt_g = torch.optim.Adam(G.parameters(), lr=training.g_lr, betas=tuple(map(float, training.g_betas)))
    opt_d = torch.optim.Adam(D.parameters(), lr=training.d_lr, betas=tuple(map(float, training.d_betas)))
    n_critic = training.n_critic
    gen = torch.Generator().manual_seed(seed)
    reals = torch.rand(n_critic, batch, 3, image_size, image_size, generator=gen) * 2 - 1
    real_labels = torch.randint(num_classes, (n_critic, batch), generator=gen)
    reals, real_labels = reals.to(device), real_labels.to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    reals = [r.contiguous(memory_format=fmt) for r in reals]
    noise = torch.Generator(device=device).manual_seed(seed + 1)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)

    def latents() -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(batch, z_dim, device=device, generator=noise)
        return z, torch.randint(num_classes, (batch,), device=device, generator=noise)

    def step() -> None:
        for i in range(n_critic):
            z, y = latents()
            with torch.no_grad(), autocast():
                fake = G(z, y)
            with autocast():
                real_logits = d_logits(reals[i], real_labels[i]).float()
                fake_logits = d_logits(fake, y).float()
            loss = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_d.step()
        z, y = latents()
        D.requires_grad_(False)
        try:
            with autocast():
                g_loss = -d_logits(G(z, y), y).float().mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
        finally:
            D.requires_grad_(True)

    return step


def build_variant(variant: str, args: argparse.Namespace, peer: dict[str, dict[str, Any]], resnet: types.ModuleType,
                  dtype: str) -> Callable[[], None]:  # fmt: skip
    """A no-argument callable running one iteration of ``variant`` in precision ``dtype``."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    trainer = gankit_trainer(args, peer, dtype)  # gankit's config: the rates, betas and n_critic of both sides
    if variant == "gankit":
        return trainer.gan.train_step
    t, data = trainer.cfg.training, peer["DATA"]
    common = dict(batch=args.batch, z_dim=peer["MODEL"]["z_dim"], num_classes=data["num_classes"],
                  image_size=data["img_size"], training=t, amp_dtype=DTYPES[dtype], device=device)  # fmt: skip
    if variant == "gankit-bare":
        G, D = trainer.gan.G, trainer.gan.D
        return hinge_step(G, D, D, channels_last=t.channels_last, **common)
    del trainer
    torch.manual_seed(0)
    G, D = build_peer(resnet, peer)
    G, D = G.to(device).train(), D.to(device).train()
    channels_last = variant == "peer-cl"
    if channels_last:
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    return hinge_step(G, D, lambda x, y: D(x, y)["adv_output"], channels_last=channels_last, **common)


# ------------------------------------------------------------------------------------------------ equal work


def _forward_counts(G: torch.nn.Module, D: torch.nn.Module, d_logits, batch: int, z_dim: int, classes: int) -> dict:
    from gankit.nn.attention import reference_attention
    from gankit.nn.resample import two_step_resampling

    gen = torch.Generator().manual_seed(0)
    z, y = torch.randn(batch, z_dim, generator=gen), torch.randint(classes, (batch,), generator=gen)
    with torch.no_grad(), reference_attention():
        with two_step_resampling(), FlopCounterMode(display=False) as g_count:
            x = G(z, y)
        with two_step_resampling(), FlopCounterMode(display=False) as d_count:
            d_logits(x, y)
        # what gankit evaluates: its folded resampling convolutions do less arithmetic for the same function
        with FlopCounterMode(display=False) as g_run:
            G(z, y)
        with FlopCounterMode(display=False) as d_run:
            d_logits(x, y)
    # StudioGAN's conditional BN computes its class gain and bias as one_hot(y) @ W (2 matmuls the counter sees);
    # gankit looks them up in a table (no FLOPs): the one expected difference
    cbn_matmuls = sum(4 * batch * m.gain.in_features * m.gain.out_features for m in G.modules()
                      if type(m).__name__ == "ConditionalBatchNorm2d" and isinstance(m.gain, torch.nn.Linear))
    return {
        "cbn_onehot_flops": cbn_matmuls,
        "g_params": sum(p.numel() for p in G.parameters()),
        "d_params": sum(p.numel() for p in D.parameters()),
        "g_forward_flops": g_count.get_total_flops(),
        "d_forward_flops": d_count.get_total_flops(),
        "g_forward_flops_run": g_run.get_total_flops(),
        "d_forward_flops_run": d_run.get_total_flops(),
    }


def equal_work(args: argparse.Namespace, peer: dict[str, dict[str, Any]], resnet: types.ModuleType) -> dict:
    """Parameters and forward FLOPs (one batch, fp32, NCHW, train mode) of G and D on both sides."""
    z_dim, classes = peer["MODEL"]["z_dim"], peer["DATA"]["num_classes"]
    torch.manual_seed(0)
    gan = gankit_trainer(argparse.Namespace(**{**vars(args), "device": "cpu"}), peer, "fp32").gan
    G, D = gan.G.to(memory_format=torch.contiguous_format), gan.D.to(memory_format=torch.contiguous_format)
    ours = _forward_counts(G, D, D, args.batch, z_dim, classes)
    del gan, G, D
    torch.manual_seed(0)
    G, D = build_peer(resnet, peer)
    theirs = _forward_counts(G.train(), D.train(), lambda x, y: D(x, y)["adv_output"], args.batch, z_dim, classes)
    return {"gankit": ours, "peer": theirs}


def count_iteration_flops(step: Callable[[], None]) -> int:
    from gankit.nn.attention import reference_attention
    from gankit.nn.resample import two_step_resampling

    with reference_attention(), two_step_resampling(), FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


# ------------------------------------------------------------------------------------------------ measurement


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kib(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status`` (KiB), None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def child_memory(args: argparse.Namespace, variant: str, dtype: str) -> dict:
    """Peak memory of ``variant``'s iteration in this (fresh) process: growth over the built state (models,
    optimizers, data). On the CPU the peak-RSS mark is reset after building (building gankit's trainer and the
    imports leave a higher mark than a small batch's iteration reaches); without ``/proc/self/clear_refs``
    the growth of ``ru_maxrss`` is used, which then reads 0 when the build's mark is not passed."""
    device = torch.device(args.device)
    resnet = import_peer(args.studiogan_dir)
    step = build_variant(variant, args, load_peer_config(args), resnet, dtype)
    gc.collect()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    hwm = _reset_peak_rss()
    base_rss = _status_kib("VmRSS") if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    for _ in range(MEMORY_ITERS):
        step()
    _sync(device)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        top = _status_kib("VmHWM") if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = (top - base_rss) / 1024  # type: ignore[operator]
    return {"variant": variant, "dtype": dtype, "peak_mb": peak, "method": "VmHWM" if hwm else "ru_maxrss"}


def measure_memory(args: argparse.Namespace, variant: str, dtype: str) -> float:
    cmd = [sys.executable, __file__, "--studiogan-dir", str(args.studiogan_dir), "--size", str(args.size),
           "--batch", str(args.batch), "--device", args.device, "--child", variant, dtype]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"memory subprocess for {variant} {dtype} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def time_variants(args: argparse.Namespace, peer: dict, resnet: types.ModuleType, dtype: str) -> dict[str, dict]:
    """FLOPs and interleaved timings of every variant in precision ``dtype``."""
    device = torch.device(args.device)
    steps = {v: build_variant(v, args, peer, resnet, dtype) for v in args.variants}
    flops = {v: count_iteration_flops(step) for v, step in steps.items()}  # also the first warm-up iteration
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    _sync(device)
    times: dict[str, list[float]] = {v: [] for v in args.variants}
    n = len(args.variants)
    for r in range(args.rounds):
        order = [args.variants[(r + i) % n] for i in range(n)]
        for v in order:
            t0 = time.perf_counter()
            steps[v]()
            _sync(device)
            times[v].append(time.perf_counter() - t0)
    del steps
    gc.collect()
    images = args.batch * gankit_n_critic(args, peer)
    results = {}
    for v in args.variants:
        seconds = statistics.median(times[v])
        ratios = [tv / tg for tv, tg in zip(times[v], times["gankit"], strict=True)] if "gankit" in times else []
        results[v] = {
            "seconds": seconds,
            "times": times[v],
            "img_per_s": images / seconds,
            "flops_per_iter": flops[v],
            "gflop_per_s": flops[v] / seconds / 1e9,
            "gankit_speedup": statistics.median(ratios) if ratios else None,
        }
    return results


def gankit_n_critic(args: argparse.Namespace, peer: dict[str, dict[str, Any]]) -> int:
    """D steps per iteration, both sides: gankit's config (the preset's, or the peer's at 64 px)."""
    from gankit.config import resolve_config

    return int(resolve_config(MODES[args.size]["preset"], sets=gankit_sets(args.size, peer)).training.n_critic)


def load_peer_config(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return peer_config(args.studiogan_dir, MODES[args.size]["peer_yaml"])


def _rel(a: float, b: float) -> str:
    return f"{abs(a - b) / max(abs(b), 1):.2e}"


def print_equal_work(work: dict) -> None:
    ours, theirs = work["gankit"], work["peer"]
    print("\n| quantity | gankit | StudioGAN | relative difference |\n|---|---|---|---|")
    for key, label in (("g_params", "G parameters"), ("d_params", "D parameters"),
                       ("g_forward_flops", "G forward FLOPs"), ("d_forward_flops", "D forward FLOPs")):  # fmt: skip
        print(f"| {label} | {ours[key]:,} | {theirs[key]:,} | {_rel(ours[key], theirs[key])} |")
    onehot = theirs["cbn_onehot_flops"]
    if onehot:
        g_rest = theirs["g_forward_flops"] - onehot
        print(f"| G forward FLOPs without StudioGAN's one-hot cBN matmuls ({onehot:,}) | {ours['g_forward_flops']:,} | "
              f"{g_rest:,} | {_rel(ours['g_forward_flops'], g_rest)} |")
    for key, label in (("g_forward_flops", "G"), ("d_forward_flops", "D")):
        print(f"| {label} forward FLOPs evaluated (gankit folds the resampling into its 3x3 convolutions) | "
              f"{ours[key + '_run']:,} | {theirs[key + '_run']:,} | {ours[key + '_run'] / theirs[key + '_run']:.3f}x |")


def print_table(all_results: dict[str, dict[str, dict]]) -> None:
    print("\n| precision | variant | ms/iter | img/s | GFLOP/iter | GFLOP/s | peak MB | gankit speed-up (paired) "
          "| memory gankit / variant |\n|---|---|---|---|---|---|---|---|---|")
    for dtype, results in all_results.items():
        g_mem = results.get("gankit", {}).get("peak_mb")
        for v, r in results.items():
            mem = r.get("peak_mb")
            speed = "-" if v == "gankit" or r["gankit_speedup"] is None else f"{r['gankit_speedup']:.2f}x"
            mem_ratio = f"{g_mem / mem:.2f}x" if v != "gankit" and g_mem and mem else "-"
            mem_s = f"{mem:.0f}" if mem is not None else "-"
            print(f"| {dtype} | {v} | {1000 * r['seconds']:.0f} | {r['img_per_s']:.1f} | "
                  f"{r['flops_per_iter'] / 1e9:.1f} | {r['gflop_per_s']:.1f} | {mem_s} | {speed} | {mem_ratio} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studiogan-dir", type=Path, required=True, help="root of a PyTorch-StudioGAN checkout")
    parser.add_argument("--size", type=int, choices=sorted(MODES), default=32,
                        help="32: CIFAR10 SNGAN; 64: Baby_ImageNet SAGAN (see the module doc)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per variant, after the FLOP count")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(DEFAULT_VARIANTS))
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the results here")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.studiogan_dir = args.studiogan_dir.expanduser().resolve()
    try:
        if args.child:
            print(json.dumps(child_memory(args, *args.child)))
            return 0
        resnet = import_peer(args.studiogan_dir)
        peer = load_peer_config(args)
    except PeerError as e:
        print(f"peer_step.py: error: {e}", file=sys.stderr)
        return 2
    n_critic = gankit_n_critic(args, peer)
    if int(peer["OPTIMIZATION"]["d_updates_per_step"]) != n_critic:
        print(f"note: StudioGAN's config has {peer['OPTIMIZATION']['d_updates_per_step']} D steps per G step; "
              f"both sides run gankit's {n_critic}")
    args.variants = list(dict.fromkeys(args.variants))
    commit = _git_commit(args.studiogan_dir)
    print(f"gankit vs StudioGAN ({args.studiogan_dir}{', commit ' + commit if commit else ''}), "
          f"{MODES[args.size]['peer_yaml']} vs gankit {MODES[args.size]['preset']} (+ the StudioGAN options), "
          f"batch {args.batch}, device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds after {args.warmup} warm-up iterations")
    print(f"StudioGAN's own optimizer: lr g {peer['OPTIMIZATION']['g_lr']} d {peer['OPTIMIZATION']['d_lr']}, betas "
          f"({peer['OPTIMIZATION']['beta1']}, {peer['OPTIMIZATION']['beta2']}); both sides here run gankit's")
    work = equal_work(args, peer, resnet)
    print_equal_work(work)
    all_results: dict[str, dict[str, dict]] = {}
    for dtype in args.dtypes:
        all_results[dtype] = time_variants(args, peer, resnet, dtype)
        if not args.no_memory:
            for v in args.variants:
                all_results[dtype][v]["peak_mb"] = measure_memory(args, v, dtype)
    print(f"\nimg/s: real images D consumes per iteration ({n_critic} x {args.batch}) per second; GFLOP/s: the "
          "iteration's forward + backward FLOPs / median time; speed-up: median over rounds of (variant's time / "
          "gankit's time) in the same round; peak MB: growth of peak RSS (CPU) over 2 iterations, own process")
    print_table(all_results)
    if args.json:
        args.json.write_text(json.dumps({
            "studiogan_dir": str(args.studiogan_dir), "commit": commit, "size": args.size, "batch": args.batch,
            "device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "rounds": args.rounds, "warmup": args.warmup, "n_critic": n_critic, "equal_work": work,
            "results": all_results,
        }, indent=2))  # fmt: skip
    return 0


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


if __name__ == "__main__":
    raise SystemExit(main())
