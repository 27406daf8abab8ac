"""Quality report for generators of the built-in digits: class accuracy, coverage and memorisation.

A classifier (RBF SVM) is trained on the real training split at the generator's size. The report gives

- ``accuracy``: the share of class-conditional samples the classifier recognises as their label;
- ``classes_present``: how many classes the samples are recognised as (all 10 for a healthy model);
- ``real_test_accuracy``: the same classifier on the held-out real third (the ceiling to compare with);
- ``nn_ratio``: median distance of each sample to its nearest *training* image divided by the same median
  for held-out real images. Copies of training images drive it towards 0; ~1 means samples are as far from
  the training set as unseen real digits are;
- ``diversity_ratio``: mean within-class pairwise distance of samples over that of real held-out images
  (collapse within a class drives it towards 0).

Run it on a run folder: ``python -m gankit.metrics.digits runs/demo``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from gankit.data.digits import NUM_DIGIT_CLASSES, digits_tensor


def _flat(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().mean(1).flatten(1).numpy()  # channels averaged: grayscale vectors


def _nn_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(d2.min(1), 0))


def _within_class_spread(x: np.ndarray, y: np.ndarray) -> float:
    spreads = []
    for c in np.unique(y):
        v = x[y == c]
        if len(v) > 1:
            d2 = (v**2).sum(1)[:, None] + (v**2).sum(1)[None, :] - 2 * v @ v.T
            spreads.append(np.sqrt(np.maximum(d2, 0))[np.triu_indices(len(v), 1)].mean())
    return float(np.mean(spreads))


def digits_report(generator, per_class: int = 100, seed: int = 0) -> dict[str, float]:
    from sklearn.svm import SVC

    size, channels = generator.image_size, generator.channels
    train_x, train_y = digits_tensor("train", size, channels)
    test_x, test_y = digits_tensor("test", size, channels)
    train_f, test_f = _flat(train_x), _flat(test_x)
    clf = SVC(gamma="scale", C=10).fit(train_f, train_y.numpy())

    labels = torch.arange(NUM_DIGIT_CLASSES).repeat_interleave(per_class)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        fakes = torch.cat([generator.sample(len(c), labels=c, generator=g) for c in labels.split(500)])
    fake_f = _flat(fakes)
    pred = clf.predict(fake_f)
    test_y_np = test_y.numpy()
    fake_nn = _nn_dist(fake_f, train_f)
    real_nn = _nn_dist(test_f, train_f)
    return {
        "accuracy": float((pred == labels.numpy()).mean()),
        "classes_present": int(len(np.unique(pred))),
        "min_class_accuracy": float(min((pred[labels.numpy() == c] == c).mean() for c in range(NUM_DIGIT_CLASSES))),
        "real_test_accuracy": float((clf.predict(test_f) == test_y_np).mean()),
        "nn_ratio": float(np.median(fake_nn) / np.median(real_nn)),
        "nn_fake_median": float(np.median(fake_nn)),
        "nn_real_median": float(np.median(real_nn)),
        "share_closer_than_real_p5": float((fake_nn < np.percentile(real_nn, 5)).mean()),
        "diversity_ratio": _within_class_spread(fake_f, labels.numpy()) / _within_class_spread(test_f, test_y_np),
        "samples": int(len(labels)),
    }


def main(argv: list[str] | None = None) -> int:
    from gankit.api import load_generator

    parser = argparse.ArgumentParser(prog="python -m gankit.metrics.digits", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="run folder, checkpoint or export of a conditional digits generator")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ema", action="store_true")
    args = parser.parse_args(argv)
    report = digits_report(load_generator(args.checkpoint, ema=not args.no_ema), args.per_class, args.seed)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
