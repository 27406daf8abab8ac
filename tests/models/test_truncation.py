"""The truncation trick: ``Generator.sample_latents(n, generator, truncation=T)`` (BigGAN's truncated normal,
rescaled to unit variance), the one function the CLI, ``G.sample``, interpolate and the explorer draw with."""

import math

import numpy as np
import pytest
import torch

from gankit.apps.explore.core import Explorer, Sample
from gankit.apps.interpolate import latent_walks
from gankit.apps.sample import SampleSpec, sample_chunks
from gankit.cli import main
from gankit.errors import ParameterError
from gankit.images import to_uint8
from gankit.models.base import check_truncation, truncated_normal, truncated_normal_std
from tests.tiny import lively_sagan


@pytest.fixture(scope="module")
def G():
    return lively_sagan()  # z_dim 16, 10 classes


def latents(G, n: int, truncation: float | None, seed: int = 0) -> torch.Tensor:
    return G.sample_latents(n, torch.Generator().manual_seed(seed), truncation)


# ------------------------------------------------------------------------------------------ known values


@pytest.mark.parametrize(("t", "std"), [
    (1e-3, 0.00057735023069960838),
    (0.05, 0.028862702379192564),
    (0.5, 0.28388229004432752),
    (1.0, 0.53956009375489697),
    (2.0, 0.87962566103423975),
    (10.0, 1.0),
])  # fmt: skip
def test_truncated_normal_std_matches_the_closed_form(t, std):
    # reference values: sqrt(1 - 2 T phi(T) / erf(T / sqrt 2)) with mpmath at 40 digits
    assert truncated_normal_std(t) == pytest.approx(std, rel=1e-9)


def test_truncated_normal_keeps_inside_values_and_moves_the_tail_to_its_quantile():
    z = torch.tensor([0.3, -0.7, 1.0, 1.5, -2.0, 5.0], dtype=torch.float64)
    # inside: z / std(1); outside: sqrt(2) erfinv(sign(z) erfc(|z|/sqrt2) / erfc(1/sqrt2) erf(1/sqrt2)) / std(1),
    # computed with mpmath
    expected = [0.556008503, -1.297353174, 1.853361677, 0.6828894964, -0.2279642651, 2.865122561e-6]
    np.testing.assert_allclose(truncated_normal(z, 1.0).numpy(), expected, rtol=1e-8)
    # continuous at the threshold: a value just past T lands just inside it
    just_past = truncated_normal(torch.tensor([1.0 + 1e-9], dtype=torch.float64), 1.0)
    assert just_past.item() * truncated_normal_std(1.0) == pytest.approx(1.0, abs=1e-6)
    assert truncated_normal(z.float(), 1.0).dtype == torch.float32


# ------------------------------------------------------------------------------------------ the distribution


@pytest.mark.parametrize("t", [0.05, 0.5, 1.0, 2.0])
def test_latents_are_unit_variance_truncated_normal(G, t):
    z = latents(G, 4000, t).double()
    std = truncated_normal_std(t)
    assert z.abs().max() <= t / std * (1 + 1e-6)  # every coordinate within [-T, T] before the rescale
    assert (z.pow(2).sum(1).mean() / G.z_dim).item() == pytest.approx(1.0, abs=0.02)  # E|z|^2 = z_dim
    assert z.norm(dim=1).mean().item() == pytest.approx(math.sqrt(G.z_dim), rel=0.02)  # the prior's norm
    assert z.mean().abs() < 0.01
    # Kolmogorov-Smirnov against N(0, 1) restricted to [-T, T]: 64000 values, 1% critical value 1.63 / sqrt(n)
    x = (z.flatten() * std).sort().values
    cdf = (1 + torch.special.erf(x / math.sqrt(2)) / math.erf(t / math.sqrt(2))) / 2
    empirical = torch.arange(1, len(x) + 1, dtype=torch.float64) / len(x)
    assert (cdf - empirical).abs().max() < 1.63 / math.sqrt(len(x))


def test_the_old_definition_shrank_the_norm_and_the_new_keeps_it(G):
    plain = latents(G, 2000, None).norm(dim=1).mean().item()
    new = latents(G, 2000, 0.5).norm(dim=1).mean().item()
    old = new * truncated_normal_std(0.5)  # BigGAN's truncated normal without the rescale
    assert new == pytest.approx(plain, rel=0.02) and old < 0.3 * plain


def test_latents_are_deterministic_and_large_t_is_the_plain_normal(G):
    torch.testing.assert_close(latents(G, 8, 0.5, seed=3), latents(G, 8, 0.5, seed=3), rtol=0, atol=0)
    assert not torch.equal(latents(G, 8, 0.5, seed=3), latents(G, 8, 0.5, seed=4))
    plain = latents(G, 500, None)
    for t in (7.0, 10.0, 1e6):
        assert torch.equal(latents(G, 500, t), plain)
    # the same draws: coordinates within T are the untruncated ones (rescaled), and they move with T continuously
    inside = plain.abs() <= 2.0
    torch.testing.assert_close(latents(G, 500, 2.0)[inside], plain[inside] / truncated_normal_std(2.0))
    for dt in (1e-4, 1e-6):
        assert (latents(G, 500, 2.0 + dt) - latents(G, 500, 2.0)).abs().max() < 50 * dt + 1e-6


def test_truncation_draws_the_random_numbers_of_no_truncation(G):
    # labels drawn next from the same generator (G.sample, the explorer's class=random) do not change with T,
    # and latents drawn in batches equal those drawn at once (gankit sample's batching)
    def labels_after(t):
        g = torch.Generator().manual_seed(5)
        G.sample_latents(6, g, t)
        return torch.randint(10, (6,), generator=g)

    assert torch.equal(labels_after(0.5), labels_after(None))
    g = torch.Generator().manual_seed(5)
    parts = torch.cat([G.sample_latents(3, g, 0.5), G.sample_latents(5, g, 0.5)])
    assert torch.equal(parts, latents(G, 8, 0.5, seed=5))


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, float("nan"), float("inf"), -float("inf"), "0.5", True, [1.0]])
def test_bad_truncation_is_refused(G, bad):
    with pytest.raises(ParameterError, match="truncation must be a number > 0"):
        check_truncation(bad)
    with pytest.raises(ParameterError, match="truncation"):
        G.sample_latents(2, truncation=bad)
    with pytest.raises(ParameterError, match="truncation"):
        G.sample(2, labels=1, truncation=bad)


# ------------------------------------------------------------------------------------------ one function


def test_every_path_draws_the_same_latents(G, monkeypatch):
    seed, n, t, cls = 7, 5, 0.5, 3
    drawn = []
    original = G.sample_latents

    def spy(*args, **kwargs):
        z = original(*args, **kwargs)
        drawn.append(z.clone())
        return z

    monkeypatch.setattr(G, "sample_latents", spy)
    expected = latents(G, n, t, seed)
    list(sample_chunks(G, SampleSpec(n, cls, False, seed, t)))  # gankit sample
    z_explorer, y_explorer = Explorer(G).latents(Sample(seed, n, cls, t))  # the explorer
    G.sample(n, labels=cls, generator=torch.Generator().manual_seed(seed), truncation=t)  # G.sample
    walk = latent_walks(G, rows=2, steps=3, seed=seed, class_id=cls, truncation=t)  # gankit interpolate
    assert len(drawn) == 5
    for z in drawn[1:4]:
        assert torch.equal(z, expected)
    assert torch.equal(z_explorer, expected) and torch.equal(y_explorer, torch.full((n,), cls))
    ends = latents(G, 4, t, seed)
    torch.testing.assert_close(walk.latents[:, 0], ends[0::2])
    torch.testing.assert_close(walk.latents[:, -1], ends[1::2])


def test_cli_sample_and_explorer_give_the_same_images(G, tmp_path):
    export = G.save_export(tmp_path / "g.safetensors")
    out = tmp_path / "cli.npz"
    argv = ["sample", "--checkpoint", str(export), "--num", "6", "--class-id", "4", "--seed", "9",
            "--truncation", "0.5", "--device", "cpu", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    cli_images = torch.from_numpy(np.load(out)["images"])
    ex = Explorer(G)
    z, y = ex.latents(Sample(9, 6, 4, 0.5))
    np.testing.assert_array_equal(to_uint8(cli_images), ex.generate(z, y))


# ------------------------------------------------------------------------------------------ the images


def _calibrated_sagan():
    """A tiny SAGAN whose eval-mode batch-norm statistics were collected on N(0, I) latents, as training does."""
    G = lively_sagan()
    G.train()
    for m in G.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # the exact average of the batches below
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            G(torch.randn(256, G.z_dim, generator=g), torch.arange(256) % 10)
    return G.eval()


def test_truncated_samples_are_not_collapsed():
    G = _calibrated_sagan()
    y = torch.full((200,), 3)  # one class: the spread left is what the latents make

    def spread(z):
        with torch.no_grad():
            return G(z, y).std(0).mean().item()  # per-pixel std over the samples

    plain = spread(latents(G, 200, None))
    z = latents(G, 200, 0.5)
    new, old = spread(z), spread(z * truncated_normal_std(0.5))
    assert plain > 0.2
    assert new > 0.9 * plain  # measured 1.00x
    assert old < 0.5 * plain  # the old definition, the same latents unscaled: measured 0.34x
    images = G.sample(200, labels=3, generator=torch.Generator().manual_seed(0), truncation=0.5)
    assert images.std(0).mean() > 0.9 * plain
