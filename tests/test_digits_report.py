import torch

from gankit.data import digits_tensor
from gankit.metrics.digits import digits_report


class FakeGenerator:
    """Stands in for a generator: returns images chosen by ``pick(labels, generator)``."""

    image_size, channels, num_classes = 16, 1, 10

    def __init__(self, pick):
        self.pick = pick

    def sample(self, n, labels=None, generator=None):
        return self.pick(labels, generator)


def _from(split):
    x, y = digits_tensor(split, 16, 1)

    def pick(labels, generator):
        out = []
        for c in labels.tolist():
            idx = torch.nonzero(y == c).flatten()
            out.append(x[idx[torch.randint(len(idx), (1,), generator=generator)]])
        return torch.cat(out)

    return pick


def test_report_flags_copies_of_training_images():
    report = digits_report(FakeGenerator(_from("train")), per_class=20)
    assert report["accuracy"] > 0.97 and report["classes_present"] == 10
    assert report["nn_ratio"] < 0.05  # every "sample" is a training image: distance 0
    assert report["share_closer_than_real_p5"] > 0.9


def test_report_on_held_out_real_digits_is_the_healthy_reference():
    report = digits_report(FakeGenerator(_from("test")), per_class=30)
    assert report["accuracy"] > 0.95 and report["classes_present"] == 10
    assert 0.7 < report["nn_ratio"] < 1.3
    assert 0.8 < report["diversity_ratio"] < 1.2


def test_report_on_noise_is_near_chance():
    noise = FakeGenerator(lambda labels, g: torch.rand(len(labels), 1, 16, 16, generator=g) * 2 - 1)
    report = digits_report(noise, per_class=20)
    assert report["accuracy"] < 0.3 and report["nn_ratio"] > 2
