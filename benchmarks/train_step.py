"""One SAGAN-64 training iteration (1 hinge D step + 1 G step): gankit against the reference formulation.

The reference is a plain re-implementation, in this file, of the network and training step as the source
material's port writes them: a spectral-norm wrapper that runs its power iteration in Python on every forward,
self-attention that builds the full ``N x N`` map with ``bmm`` + ``softmax``, and a D step whose fake images
are *not* detached (its backward runs through G too). gankit runs its real ``Trainer.train_step`` on the
``sagan-celeba64`` configuration: fused attention, parametrized spectral norm, detached fakes, EMA update.

Each (implementation, batch size) is measured in its own subprocess so peak memory is its own: on CUDA the
allocator's peak; on CPU the growth of the process's peak resident set over the models' baseline.

    python benchmarks/train_step.py                 # batch 16 and 64 on the current device
    python benchmarks/train_step.py --batch-sizes 64 --iters 3 --device cpu
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------------------------- reference network


def _l2normalize(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return v / (v.norm() + eps)


class RefSpectralNorm(nn.Module):
    """Wrapper-style spectral norm: ``u``, ``v`` held as non-trainable parameters, one power iteration on
    every forward (also in eval), the weight recomputed and handed to the wrapped layer's functional form."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        w = module.weight.data
        height = w.shape[0]
        width = w[0].numel()
        self.u = nn.Parameter(_l2normalize(w.new_empty(height).normal_()), requires_grad=False)
        self.v = nn.Parameter(_l2normalize(w.new_empty(width).normal_()), requires_grad=False)
        self.w_bar = nn.Parameter(w.clone())
        del module._parameters["weight"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_mat = self.w_bar.view(self.w_bar.shape[0], -1)
        with torch.no_grad():
            self.v.data = _l2normalize(w_mat.t() @ self.u.data)
            self.u.data = _l2normalize(w_mat @ self.v.data)
        sigma = self.u.dot(w_mat @ self.v)
        w = self.w_bar / sigma
        m = self.module
        if isinstance(m, nn.ConvTranspose2d):
            return F.conv_transpose2d(x, w, m.bias, m.stride, m.padding)
        return F.conv2d(x, w, m.bias, m.stride, m.padding)


class RefSelfAttn(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(c, c // 8, 1)
        self.key_conv = nn.Conv2d(c, c // 8, 1)
        self.value_conv = nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query_conv(x).view(b, -1, h * w).permute(0, 2, 1)
        k = self.key_conv(x).view(b, -1, h * w)
        attention = torch.softmax(torch.bmm(q, k), dim=-1)  # (B, N, N) materialised
        v = self.value_conv(x).view(b, -1, h * w)
        out = torch.bmm(v, attention.permute(0, 2, 1)).view(b, c, h, w)
        return self.gamma * out + x


class RefGenerator(nn.Module):
    def __init__(self, z_dim: int = 128, conv_dim: int = 64) -> None:
        super().__init__()
        c = conv_dim * 8
        self.l1 = nn.Sequential(RefSpectralNorm(nn.ConvTranspose2d(z_dim, c, 4)), nn.BatchNorm2d(c), nn.ReLU())
        self.l2 = nn.Sequential(
            RefSpectralNorm(nn.ConvTranspose2d(c, c // 2, 4, 2, 1)), nn.BatchNorm2d(c // 2), nn.ReLU()
        )
        self.l3 = nn.Sequential(
            RefSpectralNorm(nn.ConvTranspose2d(c // 2, c // 4, 4, 2, 1)), nn.BatchNorm2d(c // 4), nn.ReLU()
        )
        self.attn1 = RefSelfAttn(c // 4)
        self.l4 = nn.Sequential(
            RefSpectralNorm(nn.ConvTranspose2d(c // 4, c // 8, 4, 2, 1)), nn.BatchNorm2d(c // 8), nn.ReLU()
        )
        self.attn2 = RefSelfAttn(c // 8)
        self.last = nn.Sequential(nn.ConvTranspose2d(c // 8, 3, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.l3(self.l2(self.l1(z.view(z.shape[0], -1, 1, 1))))
        h = self.attn2(self.l4(self.attn1(h)))
        return self.last(h)


class RefDiscriminator(nn.Module):
    def __init__(self, conv_dim: int = 64) -> None:
        super().__init__()
        c = conv_dim

        def block(i: int, o: int) -> nn.Module:
            return nn.Sequential(RefSpectralNorm(nn.Conv2d(i, o, 4, 2, 1)), nn.LeakyReLU(0.1))

        self.l1, self.l2, self.l3 = block(3, c), block(c, 2 * c), block(2 * c, 4 * c)
        self.attn1 = RefSelfAttn(4 * c)
        self.l4 = block(4 * c, 8 * c)
        self.attn2 = RefSelfAttn(8 * c)
        self.last = nn.Conv2d(8 * c, 1, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attn1(self.l3(self.l2(self.l1(x))))
        return self.last(self.attn2(self.l4(h))).squeeze()


def reference_iteration(batch: int, device: torch.device):
    G, D = RefGenerator().to(device), RefDiscriminator().to(device)
    opt_g = torch.optim.Adam(filter(lambda p: p.requires_grad, G.parameters()), 1e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(filter(lambda p: p.requires_grad, D.parameters()), 4e-4, betas=(0.0, 0.9))
    real = torch.rand(batch, 3, 64, 64, device=device) * 2 - 1

    def step() -> None:
        d_real = D(real)
        fake = G(torch.randn(batch, 128, device=device))  # not detached: D's backward runs through G
        d_fake = D(fake)
        d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        opt_d.zero_grad()
        opt_g.zero_grad()
        d_loss.backward()
        opt_d.step()
        fake = G(torch.randn(batch, 128, device=device))
        g_loss = -D(fake).mean()
        opt_d.zero_grad()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()

    return step


def gankit_iteration(batch: int, device: torch.device, amp: str = "off"):
    from gankit.apps.bench import synthetic_trainer

    trainer = synthetic_trainer("sagan-celeba64", batch_size=batch, device=str(device), sets=[f"training.amp={amp}"])
    return trainer.gan.train_step


IMPLS = {  # name -> the iteration it times
    "reference": reference_iteration,
    "gankit": gankit_iteration,
    "gankit-bf16": lambda batch, device: gankit_iteration(batch, device, "bf16"),
}


# ------------------------------------------------------------------------------------- measurement


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(impl: str, batch: int, iters: int, device_name: str) -> dict:
    device = torch.device(device_name)
    torch.manual_seed(0)
    step = IMPLS[impl](batch, device)
    step()  # warm-up (allocator, kernels)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    elapsed = time.perf_counter() - t0
    if device.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:  # ru_maxrss is in KiB on Linux; the warm-up already touched the same buffers, so take the max
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_mb = max(peak_mb, base_rss / 1024)
    return {
        "impl": impl,
        "batch": batch,
        "iters": iters,
        "img_per_s": batch * iters / elapsed,
        "ms_per_iter": 1000 * elapsed / iters,
        "peak_mb": peak_mb,
        "device": device_name,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--iters", type=int, default=3, help="timed iterations after one warm-up")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS),
                        help="what to time (gankit-bf16: training.amp=bf16, where the device has bf16)")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args.iters, args.device)))
        return 0
    print(
        f"SAGAN-64 training iteration (1 D + 1 G step), device {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.iters} timed iterations each"
    )
    print(f"{'batch':>5} {'impl':>11} {'img/s':>8} {'ms/iter':>9} {'peak MB':>9}")
    for batch in args.batch_sizes:
        results = {}
        for impl in ["reference", *[i for i in args.impls if i != "reference"]]:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    impl,
                    str(batch),
                    "--iters",
                    str(args.iters),
                    "--device",
                    args.device,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[impl] = r
            print(f"{batch:>5} {impl:>11} {r['img_per_s']:>8.1f} {r['ms_per_iter']:>9.0f} {r['peak_mb']:>9.0f}")
        ref = results["reference"]
        for impl, ours in results.items():
            if impl != "reference":
                print(f"{batch:>5} {'ratio':>11} {ours['img_per_s'] / ref['img_per_s']:>7.2f}x {'':>9} "
                      f"{ours['peak_mb'] / ref['peak_mb']:>8.2f}x  ({impl} / reference; speed higher is better, "
                      "memory lower)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
