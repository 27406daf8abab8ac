"""The training log: its columns and averaging window (:class:`LogWindow`), ``metrics.csv`` plus TensorBoard
(:class:`MetricsLogger`), and the ``loss.png`` plot.

``metrics.csv`` is the one file gankit appends to instead of rewriting atomically: it is a log, one row per
``log_every`` steps, and rewriting it whole at every row would cost quadratic time over a long run. A torn last
row (a crash mid-append) is dropped when the run resumes, which rewrites the file atomically.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import torch

from gankit.io import atomic_write
from gankit.nn import SelfAttention2d


def attention_gammas(prefix: str, model: torch.nn.Module) -> dict[str, float]:
    """``{"gamma/G/attention.16": value}`` for each self-attention block (users watch gamma grow)."""
    return {
        f"gamma/{prefix}/{name}": float(m.gamma.detach())
        for name, m in model.named_modules()
        if isinstance(m, SelfAttention2d)
    }


class LogWindow:
    """The steps since the last log row: sums of the per-step statistics (kept as tensors, so the hot loop never
    waits for the device), the step count, and the training time and images that give img/s.

    Time spent outside training (evaluations) is excluded with :meth:`pause`.
    """

    def __init__(self, images_seen: int) -> None:
        self.restart(images_seen)

    def restart(self, images_seen: int) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.t0 = time.perf_counter()
        self.images0 = images_seen

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for key, value in stats.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def pause(self, seconds: float) -> None:
        self.t0 += seconds

    def means(self, images_seen: int) -> dict[str, float]:
        """Means over the window (``skipped`` as a count), ``img_per_s`` and ``kimg``."""
        values = {key: float(value) / self.count for key, value in self.sums.items()}
        values["skipped"] = float(self.sums["skipped"])
        elapsed = time.perf_counter() - self.t0
        values["img_per_s"] = (images_seen - self.images0) / max(elapsed, 1e-9)
        values["kimg"] = images_seen / 1000
        return values


def log_columns(*, penalty: bool, gammas: list[str], extra: list[str]) -> list[str]:
    """The columns of ``metrics.csv`` after ``step``, in order: losses and D outputs, the gradient penalty when
    there is one, guard and speed, learning rates, attention gammas, then ``extra`` (growth, evaluation, ...)."""
    columns = ["kimg", "d_loss", "g_loss", "d_real", "d_fake", *(["gp"] if penalty else [])]
    return [*columns, "skipped", "img_per_s", "g_lr", "d_lr", *gammas, *extra]


class MetricsLogger:
    """Appends one row per log step to ``metrics.csv``; mirrors scalars to TensorBoard when it is installed.

    Columns are fixed when the file is created. On resume, rows past the resumed step (and a torn last row) are
    dropped so the log matches the restored state.
    """

    def __init__(
        self,
        path: str | Path,
        columns: list[str],
        *,
        tensorboard_dir: str | Path | None = None,
        resume_step: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.columns = ["step"] + [c for c in columns if c != "step"]
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        else:
            atomic_write(self.path, _csv_text([self.columns]))
        self.writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: the CSV is the log
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(tensorboard_dir))

    def _truncate(self, step: int) -> None:
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        header, body = (rows[0], rows[1:]) if rows else (self.columns, [])
        self.columns = header
        body = [r for r in body if len(r) == len(header) and r[0].isdigit() and int(r[0]) <= step]
        atomic_write(self.path, _csv_text([header, *body]))

    def log(self, step: int, values: dict[str, float]) -> None:
        row = [step] + [_fmt(values.get(c)) for c in self.columns[1:]]
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(row)
        if self.writer is not None:
            for key, value in values.items():
                if value is not None and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _csv_text(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.6g}"


def read_metrics(path: str | Path) -> dict[str, list[float]]:
    """Columns of a ``metrics.csv`` as float lists (empty cells become NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    header = rows[0]
    cols: dict[str, list[float]] = {h: [] for h in header}
    for r in rows[1:]:
        for h, v in zip(header, r, strict=False):
            cols[h].append(float(v) if v else math.nan)
    return cols


def plot_losses(metrics_csv: str | Path, out_png: str | Path, title: str = "") -> Path | None:
    """D and G loss curves against the step, written atomically to ``out_png`` (None if nothing logged)."""
    cols = read_metrics(metrics_csv)
    if not cols.get("step"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, label in (("d_loss", "D loss"), ("g_loss", "G loss")):
        if key in cols:
            ax.plot(cols["step"], cols[key], label=label, linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    last = int(cols["step"][-1])
    ax.set_title(f"{title}  (step {last})" if title else f"losses (step {last})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = atomic_write(out_png, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return path
