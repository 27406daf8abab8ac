"""Evaluating generators against real data: FID, KID, IS, precision/recall, density/coverage (a library:
``gankit evaluate`` is :mod:`gankit.apps.evaluate`, evaluation during training :mod:`gankit.training.evaluation`).

One pass of the feature network over ``num`` generated images (balanced over classes for conditional
models), made or read a batch at a time: only their features are kept, so memory does not grow with the
images' size (an ``.npz`` of images is read from the archive in batches too). The real reference features come
from the cache after the first run. The reference set is the data
the generator was trained on (for the built-in digits: the training split). When the data has a held-out
split (the digits' test third), real held-out images are scored the same way, as the value a perfect
generator would get with this protocol.

Python: ``Evaluator("digits", image_size=16, channels=1).evaluate_generator(G, num=10000)``.
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from gankit.errors import UserError
from gankit.log import progress as progress_bar
from gankit.metrics.cache import cached_features, key_digest
from gankit.metrics.features import FeatureExtractor, build_extractor
from gankit.metrics.prdc import DC_K, PR_K, density_coverage, precision_recall
from gankit.version import __version__

METRICS = ("fid", "kid", "is", "pr", "dc")
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
IS_SPLITS = 10
# the fewest images (generated, and real) each metric can be estimated from: a covariance needs 2, the k-NN
# radii of precision/recall and density/coverage k + 1 (the Inception score uses fewer splits when it has fewer
# images than IS_SPLITS, down to one)
MIN_IMAGES = {"fid": 2, "kid": 2, "is": 2, "pr": PR_K + 1, "dc": DC_K + 1}
MAX_REFERENCE = 50_000
PROTOCOL_NOTE = (
    "numbers from different protocols (feature network, reference set, sample counts, image size) do not compare"
)

Loader = Callable[[], tuple[torch.Tensor, torch.Tensor | None]]


def parse_metrics(text: str | None) -> tuple[str, ...] | None:
    """``"fid,kid"`` -> ``("fid", "kid")``; None means every metric the feature network supports."""
    if text is None:
        return None
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise UserError(f"--metrics {text!r}: choose from {','.join(METRICS)} (comma separated)")
    return names


# ---------------------------------------------------------------------------------------------- data


@dataclasses.dataclass
class RealData:
    """The real data of an evaluation: where it comes from and how to load its splits lazily."""

    key: str  # stable identity for caches: "digits" or "<kind>-<digest of the path>"
    description: str
    stamp: str  # changes when the data on disk changes (modification time)
    reference: Loader  # what generated images are compared with (the training data)
    heldout: Loader | None = None  # unseen real images of the same distribution, when there are any
    heldout_split: str | None = None


def load_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    try:
        with np.load(path) as f:
            images = torch.from_numpy(np.asarray(f["images"], dtype=np.float32))
            labels = torch.from_numpy(np.asarray(f["labels"], dtype=np.int64)) if "labels" in f else None
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path} is not an .npz with an 'images' array (as gankit sample writes): {exc}") from None
    if images.dim() != 4:
        raise UserError(f"{path}: 'images' must be (N, C, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    if labels is not None and (labels < 0).any():
        labels = None
    return images, labels


@dataclasses.dataclass(frozen=True)
class NpzImages:
    """The ``images`` array of an ``.npz`` (``count`` images of ``shape`` (C, H, W)), read in batches."""

    path: Path
    count: int
    shape: tuple[int, int, int]

    def chunks(self, batch_size: int) -> Iterator[torch.Tensor]:
        """float32 ``(b, C, H, W)`` batches of the first ``count`` images, read from the archive one at a time (a
        compressed archive is decompressed as it is read; a Fortran-ordered array, rare, is read whole). Each batch
        is checked (:func:`check_image_values`) before it is used."""
        with zipfile.ZipFile(self.path) as archive, archive.open("images.npy") as member:
            shape, fortran, dtype = _npy_header(member, self.path)
            if fortran:
                rows = np.load(member)
                for start in range(0, self.count, batch_size):
                    chunk = np.ascontiguousarray(rows[start : start + batch_size], np.float32)
                    yield torch.from_numpy(check_image_values(chunk, self.path, start))
                return
            row_bytes = math.prod(shape[1:]) * dtype.itemsize
            for start in range(0, self.count, batch_size):
                n = min(batch_size, self.count - start)
                chunk = np.frombuffer(member.read(n * row_bytes), dtype=dtype).reshape(n, *shape[1:])
                yield torch.from_numpy(check_image_values(chunk.astype(np.float32), self.path, start))


# Images are scored in [-1, 1]; values a little beyond are clamped like a generator's (a Progressive GAN without a
# final tanh has raw outputs), values beyond this are another scale (uint8 0..255, ...), never clamped silently.
IMAGE_VALUE_LIMIT = 2.0


def check_image_values(images: np.ndarray, path: Path, start: int = 0) -> np.ndarray:
    """``images`` (float32, ``(b, C, H, W)``, the ``start``-th image first) unchanged, or a one-line
    :class:`UserError` naming the first image with a NaN / infinite value or a value beyond
    :data:`IMAGE_VALUE_LIMIT`, and how to convert."""
    bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
    if bad.any():
        raise UserError(f"{path}: image {start + int(np.argmax(bad))} holds NaN or infinite values; evaluate needs "
                        "finite images (drop or regenerate them)")
    lo, hi = float(images.min(initial=0.0)), float(images.max(initial=0.0))
    if lo < -IMAGE_VALUE_LIMIT or hi > IMAGE_VALUE_LIMIT:
        raise UserError(f"{path}: image values go from {lo:g} to {hi:g}, but evaluate takes float images in [-1, 1]; "
                        "convert uint8 images with x.astype(np.float32) / 127.5 - 1 ([0, 1] images: 2 * x - 1)")
    return images


def _npy_header(member, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise UserError(f"{path}: 'images' is an .npy of version {version}; save it with np.savez (version 1 or 2)")
    return read(member)


def open_npz_images(path: str | Path, limit: int | None = None) -> NpzImages:
    """The ``images`` of an ``.npz`` as :class:`gankit sample <gankit.apps.sample>` writes it (``(N, C, H, W)`` in
    [-1, 1]), at most ``limit`` of them; only the header is read here."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive, archive.open("images.npy") as member:
            shape, _, dtype = _npy_header(member, path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is not an .npz with an 'images' array (as gankit sample writes): {exc}") from None
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise UserError(f"{path}: 'images' must be (N, C, H, W) in [-1, 1] with C 1 or 3, got shape {tuple(shape)}")
    if dtype.kind != "f":
        raise UserError(f"{path}: 'images' are {dtype} but evaluate takes float images in [-1, 1]; convert with "
                        "x.astype(np.float32) / 127.5 - 1 (for uint8 0..255)")
    count = shape[0] if limit is None else min(shape[0], limit)
    return NpzImages(path, count, (shape[1], shape[2], shape[3]))


def real_data(
    data: str, *, image_size: int, channels: int, dataset: str | None = None, labels: str | None = None
) -> RealData:
    """``data`` is ``digits`` or a path (image folder, MNIST / CIFAR-10 files, a gankit cache, or an ``.npz``).

    Real images are loaded lazily, at ``image_size`` with ``channels``, in [-1, 1].
    """
    from gankit.data import load_dataset

    if data == "digits" or (data is None and dataset == "digits"):
        from gankit.data.digits import digits_tensor

        return RealData(
            key="digits",
            description="built-in digits (scikit-learn), training split",
            stamp="sklearn",
            reference=lambda: digits_tensor("train", image_size, channels),
            heldout=lambda: digits_tensor("test", image_size, channels),
            heldout_split="test",
        )
    path = Path(data).expanduser()
    if not path.exists():
        raise UserError(f"--data {data!r} does not exist; give digits or a dataset path")
    resolved = path.resolve()
    stamp = str(resolved.stat().st_mtime_ns)
    if resolved.suffix == ".npz":
        npz_images, npz_labels = load_npz(resolved)
        if tuple(npz_images.shape[1:]) != (channels, image_size, image_size):
            raise UserError(
                f"--data {resolved} holds {tuple(npz_images.shape[1:])} images; the generator makes "
                f"{(channels, image_size, image_size)}"
            )
        key = f"npz-{key_digest({'p': str(resolved)})}"
        return RealData(key, str(resolved), stamp, lambda: (npz_images, npz_labels))
    from gankit.data import detect_dataset, has_split

    kind = dataset if dataset not in (None, "auto") else detect_dataset(resolved)
    if kind == "folder" and labels is None:
        from gankit.data.folder import has_class_folders

        # Class sub-folders: the same images, now with labels, so --features digits can train its classifier.
        labels = "subdirs" if has_class_folders(resolved) else "none"
    loaded: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def reference() -> tuple[torch.Tensor, torch.Tensor | None]:
        if "train" not in loaded:
            images, y, _ = load_dataset(
                kind, str(resolved), split="train", image_size=image_size, channels=channels, labels=labels
            )
            loaded["train"] = (images, y)
        return loaded["train"]

    heldout = None
    if kind in ("mnist", "cifar10") and has_split(kind, resolved, "test"):  # their test files are held out

        def heldout() -> tuple[torch.Tensor, torch.Tensor | None]:
            images, y, _ = load_dataset(kind, str(resolved), split="test", image_size=image_size, channels=channels)
            return images, y

    key = f"{kind}-{key_digest({'p': str(resolved)})}"
    return RealData(key, f"{kind} at {resolved}", stamp, reference, heldout, heldout_split="test" if heldout else None)


# ------------------------------------------------------------------------------------------- metrics


def _subsample(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    if len(x) <= n:
        return x
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx.sort().values]


def check_image_count(metric: str, count: int, what: str = "generated") -> None:
    """A one-line :class:`UserError` when ``count`` images are too few for ``metric`` (:data:`MIN_IMAGES`)."""
    need = MIN_IMAGES[metric]
    if count < need:
        raise UserError(f"{metric} needs at least {need} {what} images, got {count}; give more images (--num) or "
                        f"leave {metric} out (--metrics)")


def compute_metrics(
    real: torch.Tensor,
    fake: torch.Tensor,
    fake_logits: torch.Tensor | None,
    metrics: tuple[str, ...],
    *,
    seed: int = 0,
    kid_subsets: int = KID_SUBSETS,
) -> dict[str, float]:
    """The requested metrics of generated features ``fake (M, d)`` (and logits ``(M, k)``) against ``real (N, d)``.

    FID on all features; KID over ``kid_subsets`` subsets; IS from the logits; precision/recall and
    density/coverage on equally many real and generated features (the larger set subsampled with ``seed``).
    """
    from gankit.metrics.fid import frechet_distance, inception_score, kernel_distance

    for name in metrics:
        for what, count in (("generated", len(fake)), ("real", len(real))):
            check_image_count(name, count, what)
    out: dict[str, float] = {}
    if "fid" in metrics:
        out["fid"] = frechet_distance(real, fake)
    if "kid" in metrics:
        out["kid"], out["kid_std"] = kernel_distance(
            real, fake, subsets=kid_subsets, subset_size=KID_SUBSET_SIZE, seed=seed
        )
    if "is" in metrics:
        if fake_logits is None:
            raise UserError("the Inception score needs a feature network with logits; drop is from --metrics")
        out["is"], out["is_std"] = inception_score(fake_logits, splits=IS_SPLITS, seed=seed)
    if "pr" in metrics or "dc" in metrics:
        n = min(len(real), len(fake))
        r, f = _subsample(real, n, seed), _subsample(fake, n, seed + 1)
        if "pr" in metrics:
            out["precision"], out["recall"] = precision_recall(r, f, PR_K)
        if "dc" in metrics:
            out["density"], out["coverage"] = density_coverage(r, f, DC_K)
    return out


# ----------------------------------------------------------------------------------------- evaluator


def _batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    yield from images.split(batch_size)


class Evaluator:
    """Holds the feature network and the real features of one dataset; scores generators and image sets.

    Args:
        data: ``digits`` or a dataset path (see :func:`real_data`).
        image_size, channels: the generator's output size, at which real images are loaded.
        features: ``auto`` (the classifier for digits, Inception otherwise), ``inception``, ``digits`` or a file.
        metrics: names from :data:`METRICS`; None means all the feature network supports.
    """

    def __init__(
        self,
        data: str,
        *,
        image_size: int,
        channels: int,
        dataset: str | None = None,
        labels: str | None = None,
        features: str = "auto",
        metrics: tuple[str, ...] | None = None,
        inception_weights: str | None = None,
        device: torch.device | str = "cpu",
        batch_size: int = 250,
        use_cache: bool = True,
        progress: bool | None = False,
    ) -> None:
        self.image_size, self.channels = image_size, channels
        self.device = torch.device(device)
        self.batch_size, self.use_cache, self.progress = batch_size, use_cache, progress
        self.data = real_data(data, image_size=image_size, channels=channels, dataset=dataset, labels=labels)
        self.extractor: FeatureExtractor = build_extractor(
            features,
            dataset_key=self.data.key,
            image_size=image_size,
            train_data=self.data.reference,
            heldout_data=self.data.heldout,
            inception_weights=inception_weights,
            device=self.device,
        )
        self.metrics = metrics
        self._real: dict[str, tuple[torch.Tensor, bool]] = {}
        self._real_logits: dict[str, torch.Tensor] = {}

    def check_generated_count(self, count: int) -> None:
        """Refuse, before any image is made, a number of generated images too small for a requested metric."""
        for name in self._metrics_for(bool(self.extractor.num_logits)):
            check_image_count(name, count)

    def _metrics_for(self, has_logits: bool) -> tuple[str, ...]:
        if self.metrics is not None:
            if "is" in self.metrics and not has_logits:
                raise UserError(
                    f"{self.extractor.name} gives no logits for the Inception score; drop is from --metrics"
                )
            return self.metrics
        return tuple(m for m in METRICS if m != "is" or has_logits)

    @torch.no_grad()
    def _extract(
        self, chunks: Iterator[torch.Tensor], total: int, desc: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats, logits = [], []
        with progress_bar(total, desc=desc, unit="img", enabled=self.progress) as bar:
            for x in chunks:
                f, lg = self.extractor(x.to(self.device))
                feats.append(f.double().cpu())
                if lg is not None:
                    logits.append(lg.double().cpu())
                bar.update(len(x))
        return torch.cat(feats), (torch.cat(logits) if logits else None)

    def real_features(self, split: str = "reference") -> tuple[torch.Tensor, bool]:
        """``(features (N, d) float64, came from the cache)`` of the reference or held-out real images."""
        if split in self._real:
            return self._real[split]
        loader = self.data.reference if split == "reference" else self.data.heldout
        if loader is None:
            raise ValueError(f"{self.data.description} has no {split} split")

        def compute() -> dict[str, torch.Tensor]:
            images, _ = loader()
            images = _subsample(images, MAX_REFERENCE, 0)
            f, lg = self._extract(_batches(images, self.batch_size), len(images), f"real {split}")
            return {"features": f} if lg is None else {"features": f, "logits": lg}

        key = {
            "dataset": self.data.key,
            "stamp": self.data.stamp,
            "split": split,
            "size": self.image_size,
            "channels": self.channels,
            "features": self.extractor.name,
            "sha256": self.extractor.sha256,
            "max": MAX_REFERENCE,
            "gankit": __version__,
            "format": 2,  # features and logits
        }
        tensors, hit = cached_features(key, compute, use_cache=self.use_cache)
        self._real[split] = (tensors["features"].double(), hit)
        if "logits" in tensors:
            self._real_logits[split] = tensors["logits"].double()
        return self._real[split]

    def score_features(self, fake: torch.Tensor, logits: torch.Tensor | None, seed: int = 0) -> dict[str, float]:
        real, _ = self.real_features("reference")
        return compute_metrics(real, fake, logits, self._metrics_for(logits is not None), seed=seed)

    def evaluate_images(self, images: torch.Tensor, seed: int = 0, desc: str = "images") -> dict[str, float]:
        """Metrics of an image set ``(N, C, H, W)`` in [-1, 1] against the reference."""
        return self.evaluate_chunks(_batches(images, self.batch_size), len(images), seed, desc)

    def evaluate_chunks(
        self, chunks: Iterator[torch.Tensor], total: int, seed: int = 0, desc: str = "images"
    ) -> dict[str, float]:
        """Metrics of ``total`` images given in batches ``(b, C, H, W)`` in [-1, 1] (only features are kept)."""
        f, lg = self._extract(chunks, total, desc)
        return self.score_features(f, lg, seed)

    def generated_features(
        self, generator, num: int, seed: int = 0, truncation: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features of ``num`` samples of ``generator`` (labels cycle through the classes when conditional)."""
        k = generator.num_classes
        g = torch.Generator().manual_seed(seed)

        def chunks() -> Iterator[torch.Tensor]:
            for start in range(0, num, self.batch_size):
                n = min(self.batch_size, num - start)
                labels = (torch.arange(start, start + n) % k) if k else None
                images = generator.sample(n, labels=labels, generator=g, truncation=truncation)
                if images.shape[1:] != (self.channels, self.image_size, self.image_size):
                    raise UserError(
                        f"the generator makes {tuple(images.shape[1:])} images but the evaluation expects "
                        f"{(self.channels, self.image_size, self.image_size)}"
                    )
                yield images

        return self._extract(chunks(), num, "generated")

    def evaluate_generator(self, generator, num: int = 10_000, seed: int = 0) -> dict[str, float]:
        """Metrics of ``num`` samples of an eval-mode ``generator`` against the reference."""
        if num < 2:
            raise UserError(f"--num must be >= 2 to estimate the metrics, got {num}")
        f, lg = self.generated_features(generator, num, seed)
        return self.score_features(f, lg, seed)

    def heldout_metrics(self, seed: int = 0) -> tuple[dict[str, float], int] | None:
        """Metrics of the real held-out split against the reference (None without one)."""
        if self.data.heldout is None:
            return None
        feats, _ = self.real_features("heldout")
        real, _ = self.real_features("reference")
        logits = self._real_logits.get("heldout")
        return compute_metrics(real, feats, logits, self._metrics_for(logits is not None), seed=seed), len(feats)


__all__ = [
    "METRICS",
    "Evaluator",
    "NpzImages",
    "RealData",
    "compute_metrics",
    "load_npz",
    "open_npz_images",
    "parse_metrics",
    "real_data",
]
