"""The built-in dataset: scikit-learn's 1797 real 8x8 handwritten digits (10 classes), offline."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DIGITS_SPLIT_SEED = 0
NUM_DIGIT_CLASSES = 10


def load_digits_split(split: str = "train", seed: int = DIGITS_SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """8x8 digits as float32 in [0, 16] ``(N, 8, 8)`` and int64 labels ``(N,)``.

    ``split`` is ``train`` (a stratified 2/3 with a fixed seed: 1198 images), ``test`` (the other third: 599,
    kept aside for evaluation) or ``all`` (1797).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float32)
    labels = bunch.target.astype(np.int64)
    if split == "all":
        return images, labels
    if split not in ("train", "test"):
        raise ValueError(f"digits split must be 'train', 'test' or 'all', got {split!r}")
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=1 / 3, stratify=labels, random_state=seed)
    idx = np.sort(idx_train if split == "train" else idx_test)
    return images[idx], labels[idx]


def digits_tensor(
    split: str = "train", size: int = 16, channels: int = 1, seed: int = DIGITS_SPLIT_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits upscaled bilinearly to ``size``: images ``(N, channels, size, size)`` in [-1, 1], labels ``(N,)``."""
    images, labels = load_digits_split(split, seed)
    x = torch.from_numpy(images / 16.0).unsqueeze(1)  # [0, 1], ink is high
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 2 - 1).repeat(1, channels, 1, 1).contiguous()
    return x, torch.from_numpy(labels)
