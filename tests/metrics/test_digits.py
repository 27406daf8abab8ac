import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from gankit.cli import main
from gankit.data import digits_tensor
from gankit.errors import UserError
from gankit.metrics.digits import digits_report
from gankit.models.registry import build_generator
from tests.data_writers import write_mnist
from tests.tiny import dcgan_config


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


class FakeUnconditional(FakeGenerator):
    num_classes = 0

    def sample(self, n, labels=None, generator=None):
        assert labels is None
        return self.pick(n, generator)


def _draw_from(x):
    return lambda n, g: x[torch.randint(len(x), (n,), generator=g)]


def test_unconditional_report_on_held_out_real_digits():
    x, _ = digits_tensor("test", 16, 1)
    report = digits_report(FakeUnconditional(_draw_from(x)), per_class=30)
    assert "accuracy" not in report  # no labels to check against
    assert report["classes_present"] == 10 and report["min_class_share"] > 0.5
    assert abs(report["confidence"] - report["real_confidence"]) < 0.05
    assert 0.7 < report["nn_ratio"] < 1.3 and 0.8 < report["diversity_ratio"] < 1.2


def test_unconditional_report_flags_a_collapsed_generator():
    x, y = digits_tensor("test", 16, 1)
    one_image = x[:1]
    report = digits_report(FakeUnconditional(lambda n, g: one_image.expand(n, -1, -1, -1)), per_class=10)
    assert report["classes_present"] == 1 and report["min_class_share"] == 0.0
    assert sorted(report["recognised_class_counts"])[-1] == report["samples"]
    assert report["diversity_ratio"] < 1e-3


def _mnist_like(folder, n_per_class, seed, prefix):
    """Real digits upscaled to 28x28 uint8 (ink high, like MNIST), written as IDX files."""
    x, y = digits_tensor("all", 28, 1)
    g = torch.Generator().manual_seed(seed)
    idx = torch.cat(
        [
            torch.nonzero(y == c).flatten()[torch.randperm(int((y == c).sum()), generator=g)[:n_per_class]]
            for c in range(10)
        ]
    )
    images = ((x[idx, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    write_mnist(folder, images, y[idx].numpy().astype(np.uint8), prefix=prefix)
    return x[idx], y[idx]


def test_report_against_an_mnist_folder_holds_out_part_of_train_without_t10k(tmp_path):
    x, _ = _mnist_like(tmp_path, 40, 0, "train")
    gen = FakeUnconditional(_draw_from(x))
    gen.image_size = 28
    report = digits_report(gen, per_class=10, data=str(tmp_path))
    assert report["classes_present"] == 10 and report["real_test_accuracy"] > 0.8
    # A sixth of train was held out: drawing from all of train puts ~5/6 of samples on training images.
    assert 0.7 < report["share_closer_than_real_p5"] < 0.95


def test_report_uses_the_test_split_and_checks_class_counts(tmp_path):
    _mnist_like(tmp_path, 30, 0, "train")
    held_x, _ = _mnist_like(tmp_path, 10, 1, "t10k")
    gen = FakeUnconditional(_draw_from(held_x))
    gen.image_size = 28
    report = digits_report(gen, per_class=5, data=str(tmp_path))
    assert report["samples"] == 50 and report["classes_present"] >= 9

    conditional = FakeGenerator(lambda labels, g: held_x[: len(labels)])
    conditional.image_size, conditional.num_classes = 28, 3
    with pytest.raises(UserError, match="3 classes but the reference data has 10"):
        digits_report(conditional, per_class=2, data=str(tmp_path))


def test_cli_reports_json_and_bad_data_in_one_line(tmp_path, capsys):
    cfg = dcgan_config()
    path = build_generator(cfg).save_export(tmp_path / "g.safetensors")
    assert main(["report", str(path), "--per-class", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] == 30 and set(out) >= {"confidence", "nn_ratio", "classes_present"}
    assert main(["report", str(path), "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gankit: error:") and "missing" in err and "\n" not in err


def test_python_dash_m_alias_is_gankit_report(tmp_path, capsys):
    """Scripts that ran ``python -m gankit.metrics.digits RUN`` get the same report as ``gankit report RUN``."""
    cfg = dcgan_config()
    path = build_generator(cfg).save_export(tmp_path / "g.safetensors")
    args = [str(path), "--per-class", "2", "--seed", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the same numerics as this process
    alias = subprocess.run([sys.executable, "-m", "gankit.metrics.digits", *args], capture_output=True, text=True,
                           env=env)
    assert alias.returncode == 0, alias.stderr
    capsys.readouterr()
    assert main(["report", *args]) == 0  # the command itself, in this process
    assert json.loads(alias.stdout) == json.loads(capsys.readouterr().out)
    assert json.loads(alias.stdout)["samples"] == 20
