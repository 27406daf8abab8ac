"""The README's pictures of projection and directions, made from a trained run through the command line only:

- ``projection.png``: held-out real digits (never trained on) projected in each mode; one row per digit:
  target | z | features | finetune;
- ``directions.png``: the projection of the first digit edited along the three strongest SeFa directions (one
  row per direction, strength -3..3).

    .venv/bin/python docs/projection_figures.py runs/demo --out docs/images
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gankit.data import digits_tensor
from gankit.images import save_grid


def gankit(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "gankit", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--out", default="docs/images")
    ap.add_argument("--digits", type=int, default=4)
    ap.add_argument("--steps", default="200")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    images, _ = digits_tensor("test", size=16)
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(3))[: args.digits]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        files = []
        for i, k in enumerate(pick.tolist()):
            array = ((images[k, 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
            Image.fromarray(array).save(tmp_path / f"digit{i}.png")
            files.append(str(tmp_path / f"digit{i}.png"))
        columns = [images[pick]]
        for mode in ("z", "features", "finetune"):
            gankit("project", "--checkpoint", args.run, *files, "--out", str(tmp_path / mode), "--mode", mode,
                   "--steps", args.steps, "--no-progress")
            gankit("sample", "--checkpoint", args.run, "--latents", str(tmp_path / f"{mode}.safetensors"),
                   "--out", str(tmp_path / f"{mode}.npz"))
            columns.append(torch.from_numpy(np.load(tmp_path / f"{mode}.npz")["images"]))
        grid = torch.stack(columns, dim=1).flatten(0, 1)  # rows: target | z | features | finetune
        save_grid(grid, out / "projection.png", 4)
        gankit("directions", "--checkpoint", args.run, "--method", "sefa", "--num", "10",
               "--out", str(tmp_path / "dirs.safetensors"))
        rows = []
        for k in range(3):
            gankit("interpolate", "--checkpoint", args.run, "--latents", str(tmp_path / "z.safetensors"),
                   "--direction", f"{tmp_path / 'dirs.safetensors'}:{k}", "--strength", "-3..3", "--steps", "7",
                   "--out", str(tmp_path / f"edit{k}.npz"))
            rows.append(torch.from_numpy(np.load(tmp_path / f"edit{k}.npz")["images"][0]))
        save_grid(torch.cat(rows), out / "directions.png", 7)
    print(f"wrote {out / 'projection.png'} and {out / 'directions.png'}")


if __name__ == "__main__":
    main()
