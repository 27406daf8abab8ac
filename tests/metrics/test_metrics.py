"""Metric maths (FID, KID, IS, precision/recall, density/coverage) on synthetic features, and the extractors."""

import math

import numpy as np
import pytest
import torch

from gankit.errors import UserError
from gankit.metrics.evaluate import compute_metrics, parse_metrics
from gankit.metrics.features import build_extractor, file_extractor
from gankit.metrics.fid import frechet_distance, inception_score, kernel_distance
from gankit.metrics.prdc import density_coverage, knn_radii, precision_recall


def gaussian(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


# ------------------------------------------------------------------------------------------------ FID


def test_fid_of_a_set_with_itself_is_zero():
    x = gaussian(500, 16, 0) @ torch.randn(16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_fid_grows_monotonically_with_added_noise_and_matches_the_gaussian_formula():
    x = gaussian(4000, 8, 0)
    noise = gaussian(4000, 8, 1)
    scales = [0.0, 0.1, 0.3, 1.0, 3.0]
    fids = [frechet_distance(x, x + s * noise) for s in scales]
    assert all(a < b for a, b in zip(fids, fids[1:], strict=False)), fids
    # x ~ N(0, I_8), x + s*e ~ N(0, (1 + s^2) I_8): FID = 8 (sqrt(1 + s^2) - 1)^2 (+ estimation noise)
    for s, fid in zip(scales[3:], fids[3:], strict=True):
        assert fid == pytest.approx(8 * (math.sqrt(1 + s * s) - 1) ** 2, rel=0.1)


def test_fid_of_a_mean_shift_is_the_squared_distance():
    x = gaussian(3000, 4, 0)
    assert frechet_distance(x, x + 2.0) == pytest.approx(4 * 2.0**2, rel=1e-6)


# ------------------------------------------------------------------------------------------------ KID


def test_kid_is_zero_within_its_std_for_two_samples_of_one_distribution():
    kid, std = kernel_distance(gaussian(600, 16, 0), gaussian(600, 16, 1), subsets=20, subset_size=300)
    assert std > 0
    assert abs(kid) < 3 * std + 1e-4
    far, far_std = kernel_distance(gaussian(600, 16, 0), gaussian(600, 16, 1, shift=0.5), subsets=20, subset_size=300)
    assert far > 10 * max(far_std, abs(kid))


# ------------------------------------------------------------------------------------------------- IS


def test_inception_score_is_one_for_uniform_predictions():
    mean, std = inception_score(torch.zeros(200, 10), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("classes", [10, 5])
def test_inception_score_equals_the_class_count_for_confident_balanced_predictions(classes):
    labels = torch.arange(1000) % classes
    logits = torch.nn.functional.one_hot(labels, classes).double() * 200.0  # saturated: softmax 0/1 exactly
    mean, std = inception_score(logits, splits=1)
    assert mean == pytest.approx(classes, rel=1e-6)
    assert std == 0.0
    mean10, _ = inception_score(logits, splits=10)  # random splits are only roughly balanced
    assert classes - 0.6 < mean10 <= classes + 1e-9


# ----------------------------------------------------------------------------------------------- PRDC


def clusters(n: int, seed: int, centres: int = 10, d: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(centres, d, generator=torch.Generator().manual_seed(123), dtype=torch.float64) * 10
    idx = torch.arange(n) % centres
    return means[idx] + torch.randn(n, d, generator=g, dtype=torch.float64)


def test_knn_radius_excludes_the_point_itself():
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    assert knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert knn_radii(x, 3).tolist() == [6.0, 5.0, 3.0, 6.0]


def test_precision_recall_density_coverage_are_one_for_identical_sets():
    x = clusters(600, 0)
    p, r = precision_recall(x, x.clone())
    d, c = density_coverage(x, x.clone())
    assert p == 1.0 and r == 1.0 and c == 1.0
    # Each point lies in its own ball and in those of the k neighbours it is within reach of: (k + 1) / k.
    assert d == pytest.approx(6 / 5, abs=0.01)


def test_two_samples_of_one_distribution_score_high():
    p, r = precision_recall(clusters(800, 0), clusters(800, 1))
    d, c = density_coverage(clusters(800, 0), clusters(800, 1))
    assert p > 0.85 and r > 0.85 and c > 0.85 and 0.8 < d < 1.2


def test_recall_and_coverage_fall_when_the_fakes_collapse():
    real = clusters(600, 0)
    one_mode = real[0] + 0.01 * torch.randn(600, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    p, r = precision_recall(real, one_mode)
    d, c = density_coverage(real, one_mode)
    assert p == 1.0  # every sample looks real...
    assert r < 0.02 and c < 0.02  # ...but one mode of ten is all there is
    two_modes = clusters(3000, 1)[torch.arange(3000) % 10 < 2][:600]  # 2 of the 10 clusters only
    p2, r2 = precision_recall(real, two_modes)
    _, c2 = density_coverage(real, two_modes)
    assert p2 > 0.9 and 0.15 < r2 < 0.25 and 0.15 < c2 < 0.25


def test_precision_and_density_fall_for_samples_off_the_manifold():
    real = clusters(600, 0)
    p, _ = precision_recall(real, clusters(600, 1) + 8.0)
    d, _ = density_coverage(real, clusters(600, 1) + 8.0)
    assert p < 0.2 and d < 0.2


def test_compute_metrics_returns_the_requested_names():
    real, fake = clusters(300, 0), clusters(400, 1)
    logits = torch.zeros(400, 10)
    out = compute_metrics(real, fake, logits, ("fid", "kid", "is", "pr", "dc"), kid_subsets=5)
    assert set(out) == {"fid", "kid", "kid_std", "is", "is_std", "precision", "recall", "density", "coverage"}
    assert out["is"] == pytest.approx(1.0)
    assert set(compute_metrics(real, fake, None, ("fid",))) == {"fid"}
    with pytest.raises(UserError, match="drop is"):
        compute_metrics(real, fake, None, ("is",))


def test_parse_metrics():
    assert parse_metrics("fid, KID,pr") == ("fid", "kid", "pr")
    assert parse_metrics(None) is None
    with pytest.raises(UserError, match="choose from fid,kid,is,pr,dc"):
        parse_metrics("fid,lpips")


# ----------------------------------------------------------------------------------------- extractors


def test_user_torchscript_feature_network(tmp_path):
    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor):
            f = x.flatten(1)[:, :6]
            return f, f[:, :3] * 2

    path = tmp_path / "feat.pt"
    torch.jit.save(torch.jit.script(Net()), str(path))
    ex = build_extractor(str(path), dataset_key="digits", image_size=4)
    feats, logits = ex(torch.ones(5, 1, 4, 4))
    assert feats.shape == (5, 6) and logits.shape == (5, 3) and float(logits[0, 0]) == 2.0
    assert ex.num_features == 6 and ex.num_logits == 3 and len(ex.sha256) == 64
    assert "same file" in ex.note


def test_user_safetensors_classifier_with_sidecar_config(tmp_path):
    from safetensors.torch import save_file

    from gankit.metrics.classifier import SmallClassifier

    model = SmallClassifier(num_classes=4, input_size=8, widths=(4, 8))
    path = tmp_path / "clf.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    with pytest.raises(UserError, match="no feature-network config"):
        file_extractor(path)
    (tmp_path / "clf.safetensors.json").write_text(
        '{"architecture": "gankit-classifier", "num_classes": 4, "input_size": 8, "widths": [4, 8]}'
    )
    ex = file_extractor(path)
    feats, logits = ex(torch.rand(3, 3, 12, 12) * 2 - 1)
    assert feats.shape == (3, 8) and logits.shape == (3, 4)


def test_unknown_features_spec_is_a_user_error():
    with pytest.raises(UserError, match="use inception, digits, or a path"):
        build_extractor("vgg", dataset_key="digits", image_size=16)
    with pytest.raises(UserError, match="no such file"):
        build_extractor("missing.pt", dataset_key="digits", image_size=16)


def torch_fidelity_inception_score(logits: np.ndarray, splits: int, seed: int) -> tuple[float, float, list[float]]:
    """torch-fidelity's ``isc_features_to_metric`` written out in NumPy: permuted rows, splits at N*i//splits,
    float64, ``(np.mean, np.std)`` of the per-split scores (population std)."""
    n = len(logits)
    x = logits[np.random.RandomState(seed).permutation(n)].astype(np.float64)
    log_p = x - x.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        part = slice(i * n // splits, (i + 1) * n // splits)
        q = p[part].mean(0, keepdims=True)
        scores.append(float(np.exp((p[part] * (log_p[part] - np.log(q))).sum(1).mean())))
    return float(np.mean(scores)), float(np.std(scores)), scores


@pytest.mark.parametrize(("n", "splits", "seed"), [(1000, 10, 2020), (103, 10, 0), (50, 3, 7)])
def test_inception_score_matches_torch_fidelity_with_the_population_std(n, splits, seed):
    logits = np.random.default_rng(n).normal(0, 3, (n, 12))
    mean, std = inception_score(torch.from_numpy(logits), splits=splits, seed=seed)
    ref_mean, ref_std, scores = torch_fidelity_inception_score(logits, splits, seed)
    assert mean == pytest.approx(ref_mean, rel=1e-12) and std == pytest.approx(ref_std, rel=1e-9)
    assert std == pytest.approx(np.std(scores, ddof=0), rel=1e-9)
    assert abs(std - np.std(scores, ddof=1)) > 1e-3 * std  # not the sample std (n - 1), 5% apart at 10 splits
