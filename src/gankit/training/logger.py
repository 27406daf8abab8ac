"""Metrics log: ``metrics.csv`` (always), TensorBoard (when installed), and the ``loss.png`` plot."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from gankit.training.checkpoint import atomic_write


class MetricsLogger:
    """Appends one row per log step to ``run_dir/metrics.csv``; mirrors scalars to TensorBoard if possible.

    Columns are fixed when the file is created. On resume, rows past the resumed step are dropped so the
    log matches the restored state.
    """

    def __init__(
        self, run_dir: str | Path, columns: list[str], *, tensorboard: bool = True, resume_step: int | None = None
    ):
        self.path = Path(run_dir) / "metrics.csv"
        self.columns = ["step"] + [c for c in columns if c != "step"]
        if resume_step is not None and self.path.exists():
            self._truncate(resume_step)
        else:
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: the CSV is the log
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def _truncate(self, step: int) -> None:
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        header, body = (rows[0], rows[1:]) if rows else (self.columns, [])
        self.columns = header
        body = [r for r in body if r and int(r[0]) <= step]
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(body)

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

    def write(f) -> None:
        fig.savefig(f, format="png")

    path = atomic_write(out_png, write)
    plt.close(fig)
    return path
