"""Latent walks: lerp / slerp maths, seeded walks, and ``gankit interpolate``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import gankit
from gankit.apps.interpolate import latent_walks, lerp, slerp, walk_positions
from gankit.cli import main as cli_main
from gankit.errors import UserError
from tests.compat.test_pgan_zoo import build_zoo_file


def test_lerp_and_slerp_values():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    t = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(lerp(a, b, t)[0], torch.tensor([[1.0, 0.0], [0.5, 1.0], [0.0, 2.0]]))
    s = slerp(a, b, t)[0]  # 90 degrees apart: sin(w/2) / sin(w) = 1 / sqrt(2) on each
    torch.testing.assert_close(s, torch.tensor([[1.0, 0.0], [1 / math.sqrt(2), math.sqrt(2)], [0.0, 2.0]]))
    u = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    v = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    v = v / v.norm(dim=1, keepdim=True) * u.norm(dim=1, keepdim=True)  # equal norms: slerp keeps the norm
    walk = slerp(u, v, torch.linspace(0, 1, 7))
    torch.testing.assert_close(walk.norm(dim=2), u.norm(dim=1, keepdim=True).expand(3, 7))
    torch.testing.assert_close(walk[:, 0], u)
    torch.testing.assert_close(walk[:, -1], v)
    assert (lerp(u, v, torch.tensor([0.5])).norm(dim=2) < walk[:, 3:4].norm(dim=2)).all()  # lerp cuts inside
    torch.testing.assert_close(slerp(u, 2 * u, t), lerp(u, 2 * u, t))  # parallel: falls back to lerp
    assert walk_positions(4, endpoint=False).tolist() == [0.0, 0.25, 0.5, 0.75]  # the tutorial's [0, 1)


@pytest.fixture(scope="module")
def zoo_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("walk")
    plain = build_zoo_file(root / "faces.pth", depths=(8, 8), noise_dim=6)
    cond = build_zoo_file(root / "dtd.pth", depths=(8, 8), noise_dim=6, classes=["a", "b", "c", "d"])
    return plain, cond


def test_latent_walks_are_seeded_and_fixed_per_row(zoo_files):
    plain, cond = zoo_files
    G = gankit.load_generator(plain)
    walk = latent_walks(G, rows=3, steps=5, mode="slerp", seed=7)
    assert walk.images.shape == (3, 5, 3, 8, 8) and walk.latents.shape == (3, 5, 6)
    ends = G.sample_latents(6, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(walk.latents[:, 0], ends[0::2])
    torch.testing.assert_close(walk.latents[:, -1], ends[1::2])
    torch.testing.assert_close(walk.images[1, 2], G(walk.latents[1, 2:3])[0])
    again = latent_walks(G, rows=3, steps=5, mode="slerp", seed=7)
    assert torch.equal(again.images, walk.images) and walk.labels.tolist() == [-1, -1, -1]
    Gc = gankit.load_generator(cond)
    walk = latent_walks(Gc, rows=2, steps=3, class_id=2)
    assert walk.labels.tolist() == [2, 2]
    torch.testing.assert_close(walk.images[0, 1], Gc(walk.latents[0, 1:2], torch.tensor([2]))[0])
    with pytest.raises(UserError, match="class_id is not for this generator: it is unconditional"):
        latent_walks(G, class_id=1)
    with pytest.raises(UserError, match="out of range"):
        latent_walks(Gc, class_id=4)


def test_cli_interpolate_writes_strip_and_raw_npz(zoo_files, tmp_path):
    plain, cond = zoo_files
    out = tmp_path / "walk"
    args = ["interpolate", "--checkpoint", str(plain), "--steps", "6", "--rows", "2", "--seed", "3"]
    assert cli_main([*args, "--mode", "slerp", "--device", "cpu", "--out", str(out)]) == 0
    data = np.load(tmp_path / "walk.npz")
    assert data["images"].shape == (2, 6, 3, 8, 8) and data["labels"].tolist() == [-1, -1]
    assert np.abs(data["images"]).max() > 1.0  # raw outputs: never clamped
    expected = latent_walks(gankit.load_generator(plain), rows=2, steps=6, mode="slerp", seed=3)
    np.testing.assert_allclose(data["images"], expected.images.numpy(), atol=1e-6)
    np.testing.assert_allclose(data["positions"], np.linspace(0, 1, 6))
    strip = Image.open(tmp_path / "walk.png")
    assert strip.width > strip.height > 0  # 6 columns, 2 rows
    assert cli_main([*args, "--out", str(tmp_path / "c.png"), "--class-id", "0"]) == 2  # unconditional
    cond_args = ["interpolate", "--checkpoint", str(cond), "--class-id", "3", "--out", str(tmp_path / "c.npz")]
    assert cli_main(cond_args) == 0
    assert np.load(tmp_path / "c.npz")["labels"].tolist() == [3, 3, 3, 3]
    assert cli_main(["interpolate", "--checkpoint", str(cond), "--steps", "1", "--out", str(tmp_path / "x.png")]) == 2
