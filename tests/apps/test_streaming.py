"""Jobs bigger than memory: sample and evaluate never hold all the images at once (counted, never timed)."""

import weakref

import numpy as np
import pytest
import torch
from torch import nn

from gankit.apps.outputs import stream_npz
from gankit.apps.sample import SampleSpec, write_samples
from gankit.metrics.evaluate import Evaluator, open_npz_images
from gankit.metrics.features import FeatureExtractor
from gankit.models.registry import build_generator
from tests.tiny import sagan_config


class AliveCounter:
    """Tracks tensors through weak references: ``peak`` is the most that were alive at once when new ones came."""

    def __init__(self) -> None:
        self.refs: list[weakref.ref] = []
        self.peak = 0

    def add(self, tensor: torch.Tensor) -> torch.Tensor:
        self.refs.append(weakref.ref(tensor))
        self.peak = max(self.peak, sum(r() is not None for r in self.refs))
        return tensor


@pytest.fixture
def counted_generator():
    """A tiny conditional generator whose ``sample`` registers every batch it makes with an AliveCounter."""
    torch.manual_seed(0)
    generator = build_generator(sagan_config()).eval()
    counter = AliveCounter()
    sample = generator.sample
    generator.sample = lambda *args, **kwargs: counter.add(sample(*args, **kwargs))
    return generator, counter


@pytest.mark.parametrize("target", ["samples.npz", "folder/"])
def test_sample_writes_each_batch_before_making_the_next(counted_generator, tmp_path, target):
    generator, counter = counted_generator
    written = write_samples(generator, f"{tmp_path}/{target}", SampleSpec(num=200, batch_size=10), progress=False)
    assert len(counter.refs) == 20
    assert counter.peak <= 2  # the batch being made and, at most, the one just written; never all 20
    if target.endswith(".npz"):
        with np.load(written[0]) as f:
            assert f["images"].shape == (200, 1, 16, 16)
    else:
        assert len(list(written[0].glob("*.png"))) == 200


class FlatFeatures(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :16] + x.mean(dim=(1, 2, 3))[:, None]


@pytest.fixture
def evaluator(tmp_path, monkeypatch):
    import gankit.metrics.evaluate as evaluate

    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "cache"))
    flat = FeatureExtractor(FlatFeatures(), name="flat", num_features=16, num_logits=None, sha256="0" * 64,
                            note="test features")
    monkeypatch.setattr(evaluate, "build_extractor", lambda *args, **kwargs: flat)
    return Evaluator("digits", image_size=16, channels=1, features="flat", metrics=("fid",), batch_size=50)


def test_evaluate_keeps_features_only_for_a_generator(counted_generator, evaluator):
    generator, counter = counted_generator
    values = evaluator.evaluate_generator(generator, num=1000)
    assert len(counter.refs) == 20 and counter.peak <= 2 and values["fid"] > 0


def test_evaluate_reads_an_npz_in_batches(counted_generator, evaluator, tmp_path):
    generator, _ = counted_generator
    images = generator.sample(300, labels=torch.arange(300) % 10, generator=torch.Generator().manual_seed(1))
    path = tmp_path / "s.npz"
    stream_npz(path, [("labels", np.dtype(np.int64), (300,), [np.zeros(300, np.int64)]),
                      ("images", np.dtype(np.float32), (300, 1, 16, 16), images.split(64))])
    npz = open_npz_images(path, limit=250)
    assert (npz.count, npz.shape) == (250, (1, 16, 16))
    counter = AliveCounter()
    chunks = (counter.add(x) for x in npz.chunks(50))
    streamed = evaluator.evaluate_chunks(chunks, npz.count)
    assert len(counter.refs) == 5 and counter.peak <= 2
    assert streamed == evaluator.evaluate_images(images[:250])  # the same numbers as from memory
    np.savez_compressed(tmp_path / "c.npz", images=images.numpy())  # compressed archives stream as well
    assert torch.equal(torch.cat(list(open_npz_images(tmp_path / "c.npz").chunks(128))), images)
