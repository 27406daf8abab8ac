import numpy as np
import torch

from gankit.data import InfiniteSampler, TensorBatches, digits_tensor, load_digits_split


def test_digits_split_is_stratified_two_thirds_and_disjoint():
    xtr, ytr = load_digits_split("train")
    xte, yte = load_digits_split("test")
    xall, yall = load_digits_split("all")
    assert len(ytr) == 1198 and len(yte) == 599 and len(yall) == 1797
    assert xtr.shape == (1198, 8, 8) and xtr.min() == 0 and xtr.max() == 16
    # stratified: each class keeps ~2/3 of its images
    for c in range(10):
        assert abs((ytr == c).sum() - 2 / 3 * (yall == c).sum()) <= 1
    # disjoint and together the whole set (compare image bytes)
    key = lambda x: {row.tobytes() + bytes([int(l)]) for row, l in zip(x[0], x[1], strict=True)}  # noqa: E731
    assert not key((xtr, ytr)) & key((xte, yte))
    # fixed seed: the same split every time
    assert np.array_equal(load_digits_split("train")[1], ytr)


def test_digits_tensor_upscales_and_maps_to_minus_one_one():
    x, y = digits_tensor("train", size=16, channels=3)
    assert x.shape == (1198, 3, 16, 16) and y.dtype == torch.int64
    assert x.min() == -1 and x.max() <= 1
    assert torch.equal(x[:, 0], x[:, 2])
    # size 8 is the raw data mapped from [0, 16] to [-1, 1]
    x8, _ = digits_tensor("train", size=8)
    raw, _ = load_digits_split("train")
    torch.testing.assert_close(x8[:, 0], torch.from_numpy(raw / 8 - 1).float())
    # the bilinear upscale keeps the picture: pooling it back correlates strongly with the original
    down = torch.nn.functional.avg_pool2d(x[:, :1], 2)
    corr = torch.corrcoef(torch.stack([down.flatten(), x8.flatten()]))[0, 1]
    assert corr > 0.95


def test_infinite_sampler_covers_each_epoch_and_resumes_exactly():
    s = InfiniteSampler(10, seed=3)
    first = s.next_indices(10)
    assert sorted(first.tolist()) == list(range(10))
    s.next_indices(7)
    state = s.state_dict()
    expected = s.next_indices(25)
    t = InfiniteSampler(10, seed=3)
    t.load_state_dict(state)
    assert torch.equal(t.next_indices(25), expected)


def test_sampler_ranks_are_disjoint():
    a = InfiniteSampler(12, seed=0, rank=0, world_size=2).next_indices(6)
    b = InfiniteSampler(12, seed=0, rank=1, world_size=2).next_indices(6)
    assert sorted(a.tolist() + b.tolist()) == list(range(12))


def test_tensor_batches_returns_matching_labels():
    x = torch.arange(20.0).reshape(20, 1, 1, 1)
    y = torch.arange(20)
    batches = TensorBatches(x, y, batch_size=6, seed=0, device=torch.device("cpu"))
    xb, yb = batches.next()
    assert xb.shape == (6, 1, 1, 1) and torch.equal(xb.flatten().long(), yb)
