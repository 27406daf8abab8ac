"""Quality report for digit generators: recognisability, class coverage, memorisation and diversity.

A classifier (RBF SVM) is trained on real labelled images at the generator's size: the built-in digits by
default, or any labelled dataset given with ``--data`` (an MNIST IDX folder, CIFAR-10 batches, a folder with one
sub-folder per class). Held-out real images (the dataset's test split, or a held-out sixth of its training
split when it has none) are scored the same way as the reference. The report gives

- ``accuracy`` / ``min_class_accuracy`` (class-conditional generators only): the share of samples the
  classifier recognises as the label they were generated for, overall and for the worst class;
- ``confidence``: the classifier's mean top-class probability on samples, beside ``real_confidence`` on
  held-out real images. Blurry or ambiguous digits lower it; noise sits near chance;
- ``classes_present``: how many classes the samples are recognised as (all of them for a healthy model), and
  ``min_class_share``: the rarest recognised class's share times the class count (1 = perfectly balanced,
  0 = a class is missing: mode dropping), with ``recognised_class_counts`` per class;
- ``real_test_accuracy``: the classifier on held-out real images (the ceiling to compare with);
- ``nn_ratio``: median distance of each sample to its nearest *training* image divided by the same median for
  held-out real images. Copies of training images drive it towards 0; ~1 means samples are as far from the
  training set as unseen real digits are;
- ``diversity_ratio``: mean within-class pairwise distance of samples over that of held-out real images
  (collapse within a class drives it towards 0). Unconditional samples are grouped by their recognised class.

Run it on a run folder: ``gankit report runs/demo`` (built-in digits) or ``gankit report runs/mnist --data
MNIST_DIR`` (``python -m gankit.metrics.digits`` is the same command, kept for scripts).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gankit.errors import UserError

# An RBF SVM's cost grows quadratically with its training set; 5000 images classify MNIST at ~95%.
MAX_CLASSIFIER_TRAIN = 5000
HELD_OUT_SHARE = 1 / 6


def _flat(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().mean(1).flatten(1).numpy()  # channels averaged: grayscale vectors


def _nn_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    b2 = (b**2).sum(1)[None, :]
    out = []
    for chunk in np.array_split(a, max(1, len(a) // 500)):  # bounded memory on large training sets
        d2 = (chunk**2).sum(1)[:, None] + b2 - 2 * chunk @ b.T
        out.append(np.sqrt(np.maximum(d2.min(1), 0)))
    return np.concatenate(out)


def _within_class_spread(x: np.ndarray, y: np.ndarray) -> float:
    spreads = []
    for c in np.unique(y):
        v = x[y == c]
        if len(v) > 1:
            d2 = (v**2).sum(1)[:, None] + (v**2).sum(1)[None, :] - 2 * v @ v.T
            spreads.append(np.sqrt(np.maximum(d2, 0))[np.triu_indices(len(v), 1)].mean())
    return float(np.mean(spreads)) if spreads else 0.0


def reference_split(
    data: str | None, dataset: str, size: int, channels: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``((train images, labels), (held-out images, labels))`` at the generator's size, images in [-1, 1].

    ``data=None`` is the built-in digits' fixed split. Otherwise the dataset's ``test`` split is the held-out
    set; without one, a fixed sixth of ``train`` is held out.
    """
    from gankit.data import detect_dataset, digits_tensor, has_split, load_dataset

    if data is None:
        return digits_tensor("train", size, channels), digits_tensor("test", size, channels)
    kind = detect_dataset(data) if dataset == "auto" else dataset
    labels = "subdirs" if kind == "folder" else None  # the other formats carry their own labels

    def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, _ = load_dataset(kind, data, split=split, image_size=size, channels=channels, labels=labels)
        if y is None or len(torch.unique(y)) < 2:
            raise UserError(f"{data} has no class labels; the report needs labelled data (one sub-folder per class)")
        return x, y

    train = load("train")
    if has_split(kind, data, "test"):
        test = load("test")
    else:
        perm = torch.randperm(len(train[1]), generator=torch.Generator().manual_seed(0))
        cut = max(1, int(len(perm) * HELD_OUT_SHARE))
        test = (train[0][perm[:cut]], train[1][perm[:cut]])
        train = (train[0][perm[cut:]], train[1][perm[cut:]])
    return train, test


def digits_report(
    generator,
    per_class: int = 100,
    seed: int = 0,
    *,
    data: str | None = None,
    dataset: str = "auto",
) -> dict[str, Any]:
    """The report above for ``generator`` (conditional or not) against the built-in digits or ``data``."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    size, channels = generator.image_size, generator.channels
    (train_x, train_y), (test_x, test_y) = reference_split(data, dataset, size, channels)
    train_y_np, test_y_np = train_y.numpy(), test_y.numpy()
    num_classes = int(max(train_y_np.max(), test_y_np.max())) + 1
    conditional = getattr(generator, "num_classes", 0) > 0
    if conditional and generator.num_classes != num_classes:
        raise UserError(
            f"the generator has {generator.num_classes} classes but the reference data has {num_classes}; "
            "give the dataset it was trained on with --data"
        )

    train_f, test_f = _flat(train_x), _flat(test_x)
    if len(train_f) > MAX_CLASSIFIER_TRAIN:
        keep = np.random.default_rng(0).choice(len(train_f), MAX_CLASSIFIER_TRAIN, replace=False)
        clf_f, clf_y = train_f[keep], train_y_np[keep]
    else:
        clf_f, clf_y = train_f, train_y_np
    # Calibrated (Platt) probabilities give a confidence; ensemble=False keeps one SVM fitted on all of clf_f.
    clf = CalibratedClassifierCV(SVC(gamma="scale", C=10), ensemble=False).fit(clf_f, clf_y)

    n = per_class * num_classes
    labels = torch.arange(num_classes).repeat_interleave(per_class) if conditional else None
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if conditional:
            fakes = torch.cat([generator.sample(len(c), labels=c, generator=g) for c in labels.split(500)])
        else:
            fakes = torch.cat([generator.sample(min(500, n - i), generator=g) for i in range(0, n, 500)])
    fake_f = _flat(fakes)
    fake_prob, real_prob = clf.predict_proba(fake_f), clf.predict_proba(test_f)
    pred = clf.classes_[fake_prob.argmax(1)]
    real_pred = clf.classes_[real_prob.argmax(1)]
    counts = np.bincount(pred, minlength=num_classes)
    fake_nn, real_nn = _nn_dist(fake_f, train_f), _nn_dist(test_f, train_f)
    report: dict[str, Any] = {}
    if conditional:
        y = labels.numpy()
        report["accuracy"] = float((pred == y).mean())
        report["min_class_accuracy"] = float(min((pred[y == c] == c).mean() for c in range(num_classes)))
        spread = _within_class_spread(fake_f, y) / _within_class_spread(test_f, test_y_np)
    else:
        spread = _within_class_spread(fake_f, pred) / _within_class_spread(test_f, real_pred)
    report.update(
        {
            "confidence": float(fake_prob.max(1).mean()),
            "real_confidence": float(real_prob.max(1).mean()),
            "classes_present": int((counts > 0).sum()),
            "min_class_share": float(counts.min() / n * num_classes),
            "recognised_class_counts": [int(c) for c in counts],
            "real_test_accuracy": float((real_pred == test_y_np).mean()),
            "nn_ratio": float(np.median(fake_nn) / np.median(real_nn)),
            "nn_fake_median": float(np.median(fake_nn)),
            "nn_real_median": float(np.median(real_nn)),
            "share_closer_than_real_p5": float((fake_nn < np.percentile(real_nn, 5)).mean()),
            "diversity_ratio": spread,
            "samples": int(n),
        }
    )
    return report


if __name__ == "__main__":  # `python -m gankit.metrics.digits RUN ...`, kept for scripts: it is `gankit report RUN ...`
    import runpy
    import sys

    sys.argv = ["gankit", "report", *sys.argv[1:]]
    runpy.run_module("gankit", run_name="__main__", alter_sys=True)
