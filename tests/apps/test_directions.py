"""Latent directions: SeFa recovers a planted factorisation in order, GANSpace PCA at the first layer agrees with it,
every family's first layer is the map SeFa reads, the file round trip and its model check, and ``gankit
directions`` / ``gankit interpolate --direction`` end to end (bad input: one line, exit 2, nothing written)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import gankit
from gankit.apps.directions import (
    Directions,
    find_directions,
    first_layer_name,
    fix_signs,
    layer_activations,
    measure_effect,
    parse_direction,
    parse_strength,
    pca_directions,
    sefa,
    whitened,
)
from gankit.cli import main
from gankit.errors import UserError
from gankit.models import build_generator
from tests.tiny import TINY_SETS, VARIANTS, family_config, grown


def planted(z_dim: int = 12, features: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``A = U diag(s) V^T`` with well separated singular values ``s`` = 10, 8, 6, ...: ``(A, V^T, s)``."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(features, z_dim, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(z_dim, z_dim, generator=g, dtype=torch.float64))
    s = 10.0 - 0.75 * torch.arange(z_dim, dtype=torch.float64)
    return u @ torch.diag(s) @ v.T, v.T, s


def test_sefa_recovers_a_planted_factorisation_in_order():
    a, vt, s = planted()
    vectors, values = sefa(a, 5)
    assert vectors.shape == (5, 12) and values.shape == (5,)
    torch.testing.assert_close(values.double(), s[:5], rtol=1e-6, atol=1e-6)
    cos = (vectors.double() * vt[:5]).sum(1)  # the same vectors, in order, up to sign
    torch.testing.assert_close(cos.abs(), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-6)
    # the fixed sign convention: each vector's largest entry is positive, whatever sign the SVD picked
    assert (vectors.gather(1, vectors.abs().argmax(1, keepdim=True)) > 0).all()
    torch.testing.assert_close(sefa(-a, 5)[0], vectors)
    torch.testing.assert_close(fix_signs(-vectors), vectors)
    assert torch.equal(sefa(a, 100)[0], sefa(a, 12)[0])  # at most z_dim directions
    # genforce's variant normalises the rows of A first: other vectors for a non-uniform A
    assert not torch.allclose(sefa(a, 3, normalize=True)[0], vectors[:3], atol=1e-3)


def test_pca_at_the_first_layer_agrees_with_unnormalised_sefa():
    a, _, _ = planted()
    bias = torch.randn(40, dtype=torch.float64)
    z = torch.randn(2000, 12, generator=torch.Generator().manual_seed(1))
    raw, _ = pca_directions(lambda batch: batch.double() @ a.T + bias, z, 6)
    vectors, variance = pca_directions(lambda batch: batch.double() @ a.T + bias, whitened(z), 6)
    reference, s = sefa(a, 6)
    cos = (vectors * reference).sum(1)
    assert (cos > 0.999999).all(), cos  # whitened latents: SeFa's vectors exactly, signs by the same convention
    assert ((raw * reference).sum(1).abs() > 0.95).all()  # raw N(0, I) samples: only to about 1 / sqrt(N)
    torch.testing.assert_close(whitened(z).T @ whitened(z) / 1999, torch.eye(12), rtol=0, atol=1e-5)
    full = (torch.linalg.svdvals(a) ** 2).sum()  # the first 6 components' share of all 12
    torch.testing.assert_close(variance, (s.double() ** 2 / full).float(), rtol=0.1, atol=0)
    assert (variance[:-1] > variance[1:]).all()


@pytest.mark.parametrize("family,k", VARIANTS)
def test_latent_weight_is_the_map_of_the_first_layer(family, k):
    torch.manual_seed(0)
    G = grown(build_generator(family_config(family, num_classes=k))).eval()
    layer = G.get_submodule(first_layer_name(G))
    A = G.latent_weight()
    assert A.shape[1] == G.z_dim
    used = A.abs().sum(0) > 0  # BigGAN: the first linear takes the first chunk of z, the blocks the rest

    def first(z: torch.Tensor) -> torch.Tensor:  # the module itself, called on the latent as G gives it
        x = z[:, used]
        if not isinstance(layer, torch.nn.ConvTranspose2d) and layer.weight.shape[1] > x.shape[1]:
            x = torch.cat([x, torch.zeros(len(x), layer.weight.shape[1] - x.shape[1])], 1)  # PGAN's class inputs
        with torch.no_grad():
            return layer(x[:, :, None, None] if isinstance(layer, torch.nn.ConvTranspose2d) else x).flatten(1)

    z, dz = torch.randn(3, G.z_dim), torch.randn(3, G.z_dim)
    torch.testing.assert_close(first(z + dz) - first(z), dz @ A.T, rtol=1e-4, atol=1e-5)
    # the PCA's view of the first layer is that map
    torch.testing.assert_close(layer_activations(G, first_layer_name(G), None)(dz), dz @ A.T)


def test_find_directions_ranks_by_effect_and_round_trips(tmp_path):
    torch.manual_seed(0)
    G = build_generator(family_config("sagan", num_classes=3)).eval()
    found = find_directions(G, "sefa", num=5)
    assert len(found) == 5 and found.method == "sefa" and found.metric == "pixel"
    assert (found.effect[:-1] >= found.effect[1:]).all()  # descending effect
    torch.testing.assert_close(found.effect, measure_effect(G, found.vectors))
    torch.testing.assert_close(found.vectors.norm(dim=1), torch.ones(5))
    vectors, values = sefa(G.latent_weight(), G.z_dim)  # SeFa's components, the strongest 5 of 4 x 5 candidates
    torch.testing.assert_close(found.vectors, vectors[found.component])
    torch.testing.assert_close(found.values, values[found.component])
    candidates = measure_effect(G, vectors[: min(20, G.z_dim)])
    torch.testing.assert_close(found.effect, candidates.sort(descending=True).values[:5])
    assert measure_effect(G, torch.zeros(1, G.z_dim)).item() == 0.0
    found.save(tmp_path / "d.safetensors")
    back = Directions.load(tmp_path / "d.safetensors")
    assert torch.equal(back.vectors, found.vectors) and back.layer == found.layer == first_layer_name(G)
    back.check_model(G)
    other = build_generator(family_config("sagan", num_classes=3)).eval()  # other weights
    with pytest.raises(UserError, match="made for another model"):
        back.check_model(other)
    pca = find_directions(G, "pca", num=3, layer="blocks.0" if hasattr(G, "blocks") else None, samples=300)
    assert pca.vectors.shape == (3, G.z_dim) and pca.method == "pca"
    assert torch.isfinite(pca.values).all() and pca.values.sum() <= 1.0 + 1e-6


def test_direction_and_strength_specs():
    assert parse_direction("d.safetensors:3") == ("d.safetensors", 3)
    assert parse_direction("d.safetensors") == ("d.safetensors", 0)
    assert parse_direction("C:/x/d.safetensors") == ("C:/x/d.safetensors", 0)
    assert parse_strength("-3..3") == (-3.0, 3.0) and parse_strength("2") == (-2.0, 2.0)
    assert parse_strength("-1.5..0.5") == (-1.5, 0.5)
    for bad in ("a..b", "1..1", "nan", "0", "-1e9..1"):
        with pytest.raises(UserError):
            parse_strength(bad)
    with pytest.raises(UserError, match="must be >= 0"):
        parse_direction("d.safetensors:-1")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("directions")
    runs = []
    for seed in (0, 1):
        out = root / f"run{seed}"
        assert main(["train", "--preset", "sagan-digits", "--out", str(out), "--steps", "2", "--seed", str(seed),
                     "--device", "cpu", "--no-progress", *TINY_SETS]) == 0
        runs.append(out)
    return runs


def test_directions_and_edit_strip_commands(two_runs, tmp_path, capsys):
    run, other = two_runs
    dirs = tmp_path / "dirs.safetensors"
    assert main(["directions", "--checkpoint", str(run), "--method", "sefa", "--num", "4", "--out", str(dirs)]) == 0
    found = Directions.load(dirs)
    G = gankit.load_generator(run)
    found.check_model(G)
    assert len(found) == 4 and "sefa" in capsys.readouterr().out
    strip = tmp_path / "edit.npz"
    assert main(["interpolate", "--checkpoint", str(run), "--direction", f"{dirs}:1", "--strength", "-3..3",
                 "--steps", "5", "--rows", "2", "--class-id", "4", "--out", str(strip)]) == 0
    import numpy as np

    data = np.load(strip)
    images, latents = torch.from_numpy(data["images"]), torch.from_numpy(data["latents"])
    assert images.shape == (2, 5, 1, 16, 16) and latents.shape == (2, 5, G.z_dim)
    steps = latents - latents[:, 2:3]  # the middle column is the unedited latent, the rest moved along vector 1
    torch.testing.assert_close(steps[0], torch.linspace(-3, 3, 5)[:, None] * found.vectors[1], atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(images[1, 4], G(latents[1, 4:5], torch.tensor([4]))[0].float())
    assert not torch.allclose(images[0, 0], images[0, 4])  # the edit changes the image


def test_direction_bad_inputs_are_one_line(two_runs, tmp_path, capsys):
    run, other = two_runs
    dirs = tmp_path / "dirs.safetensors"
    assert main(["directions", "--checkpoint", str(run), "--method", "pca", "--num", "3", "--out", str(dirs)]) == 0
    capsys.readouterr()
    cases = [
        (["interpolate", "--checkpoint", str(other), "--direction", str(dirs), "--out", str(tmp_path / "a.png")],
         "made for another model"),
        (["interpolate", "--checkpoint", str(run), "--direction", f"{dirs}:7", "--out", str(tmp_path / "b.png")],
         "direction 7 is out of range"),
        (["interpolate", "--checkpoint", str(run), "--direction", str(dirs), "--strength", "x",
          "--out", str(tmp_path / "c.png")], "expected A..B"),
        (["interpolate", "--checkpoint", str(run), "--direction", str(tmp_path / "none.safetensors"),
          "--out", str(tmp_path / "d.png")], "does not exist"),
        (["directions", "--checkpoint", str(run), "--method", "sefa", "--layer", "blocks.0",
          "--out", str(tmp_path / "e.safetensors")], "for 'blocks.0' use --method pca"),
        (["directions", "--checkpoint", str(run), "--method", "pca", "--layer", "nope",
          "--out", str(tmp_path / "f.safetensors")], "'nope' is no module"),
        (["directions", "--checkpoint", str(run), "--method", "sefa", "--out", str(tmp_path / "g.png")],
         "must end in .safetensors"),
        (["directions", "--checkpoint", str(run), "--method", "sefa", "--out", str(dirs)], "exists"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert Path(dirs).stat().st_size > 0
