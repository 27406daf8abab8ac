"""``gankit evaluate`` end to end on the digits, the classifier cache, the stats cache and evaluation in training."""

import csv
import json

import numpy as np
import pytest
import torch

from gankit.cli import main
from gankit.io import load_checkpoint
from gankit.metrics import classifier
from gankit.metrics.inception import file_sha256
from gankit.models.registry import build_generator
from gankit.training import Trainer, prepare_run_dir
from tests.tiny import sagan_config, sagan_digits_run


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # One cache for this module (the classifier trains once), never the user's; a short classifier schedule.
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "gankit-cache"))
    monkeypatch.setattr(classifier, "TRAIN_STEPS", 120)


@pytest.fixture(scope="module")
def untrained_export(tmp_path_factory) -> str:
    cfg = sagan_config()
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("eval") / "untrained.safetensors"
    build_generator(cfg).save_export(path)
    return str(path)


def evaluate(*args: str) -> int:
    return main(["evaluate", "--no-progress", *args])


def test_evaluate_digits_writes_json_and_ranks_real_heldout_data_above_an_untrained_generator(
    untrained_export, tmp_path, capsys
):
    out = tmp_path / "m.json"
    assert evaluate("--checkpoint", untrained_export, "--data", "digits", "--num", "300", "--out", str(out)) == 0
    r = json.loads(out.read_text())
    assert r["gankit_version"] and r["num_generated"] == 300 and r["reference"]["num"] == 1198
    assert r["reference"]["from_cache"] is False
    f = r["features"]
    assert f["name"] == "digits-classifier" and f["num_features"] == 64 and f["num_logits"] == 10
    assert f["weights_sha256"] == file_sha256(f["weights"])
    assert "comparable only with gankit evaluations" in r["comparability"]
    assert "do not compare" in r["comparability"]
    m, real = r["metrics"], r["heldout"]["metrics"]
    assert set(m) == {"fid", "kid", "kid_std", "is", "is_std", "precision", "recall", "density", "coverage"}
    assert r["heldout"]["num"] == 599
    assert real["fid"] < m["fid"] / 10 and real["kid"] < m["kid"]  # real held-out digits are far better
    assert real["precision"] > 0.5 and real["recall"] > 0.5 and real["is"] > 3 * m["is"]
    assert r["settings"]["pr_k"] == 3 and r["settings"]["pr_dc_num"] == 300
    printed = capsys.readouterr().out
    assert "fid" in printed and "real test" in printed and str(out) in printed

    # A second evaluation reuses the cached classifier and real features and is deterministic.
    out2 = tmp_path / "m2.json"
    assert evaluate("--checkpoint", untrained_export, "--data", "digits", "--num", "300", "--out", str(out2)) == 0
    r2 = json.loads(out2.read_text())
    assert r2["reference"]["from_cache"] is True
    assert r2["features"]["weights_sha256"] == f["weights_sha256"]
    assert r2["metrics"] == pytest.approx(m)


def test_evaluate_a_subset_of_metrics_on_an_npz_of_images(untrained_export, tmp_path):
    from gankit.data.digits import digits_tensor

    images, labels = digits_tensor("test", 16, 1)
    npz = tmp_path / "real.npz"
    np.savez(npz, images=images.numpy(), labels=labels.numpy())
    out = tmp_path / "m.json"
    assert evaluate("--checkpoint", str(npz), "--data", "digits", "--metrics", "fid,pr", "--out", str(out)) == 0
    r = json.loads(out.read_text())
    assert set(r["metrics"]) == {"fid", "precision", "recall"} and r["num_generated"] == 599
    assert r["metrics"]["fid"] == pytest.approx(r["heldout"]["metrics"]["fid"], rel=1e-6)


def test_evaluate_errors_are_one_line(untrained_export, tmp_path, capsys):
    args = ["--checkpoint", untrained_export, "--data", "digits", "--out", str(tmp_path / "x.json")]
    assert evaluate(*args, "--metrics", "fid,ssim") == 2
    assert evaluate(*args, "--features", "inception", "--inception-weights", str(tmp_path / "none.pth")) == 2
    assert evaluate("--checkpoint", untrained_export, "--data", str(tmp_path / "nodata"), "--out", "x.json") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("gankit: error: ") for line in err)
    assert "choose from fid,kid,is,pr,dc" in err[0] and "--inception-weights" in err[1] and "nodata" in err[2]


def test_evaluation_during_training_logs_metrics_and_keeps_best_checkpoint(tmp_path):
    cfg = sagan_digits_run(steps=4, log_every=3, sample_every=100, checkpoint_every=100, eval_every=2, eval_num=100)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "run"), progress=False)
    trainer.fit()
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_step = {int(r["step"]): r for r in rows}
    assert sorted(by_step) == [2, 3, 4]  # eval steps get a log row even off the log_every grid
    for step in (2, 4):
        assert float(by_step[step]["eval/fid"]) > 0 and 0 <= float(by_step[step]["eval/precision"]) <= 1
        assert float(by_step[step]["d_loss"]) == float(by_step[step]["d_loss"])  # losses logged on the same row
    assert by_step[3]["eval/fid"] == ""
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    fids = {s: float(by_step[s]["eval/fid"]) for s in (2, 4)}
    assert best["step"] == min(fids, key=fids.get) and best["fid"] == pytest.approx(min(fids.values()), rel=1e-5)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert state["step"] == best["step"]


def _digit_pngs(root, per_class: int, class_folders: bool) -> None:
    from PIL import Image

    from gankit.data import digits_tensor

    x, y = digits_tensor("test", 16, 1)
    for c in range(10):
        for i in torch.nonzero(y == c).flatten()[:per_class].tolist():
            folder = root / str(c) if class_folders else root
            folder.mkdir(parents=True, exist_ok=True)
            pixels = ((x[i, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / f"{c}_{i:04d}.png")


def test_features_digits_reads_class_sub_folders(untrained_export, tmp_path, capsys):
    from gankit.data.folder import has_class_folders

    classes, flat = tmp_path / "classes", tmp_path / "flat"
    _digit_pngs(classes, 12, class_folders=True)
    _digit_pngs(flat, 12, class_folders=False)
    assert has_class_folders(classes) and not has_class_folders(flat)
    out = tmp_path / "m.json"
    args = ["--checkpoint", untrained_export, "--features", "digits", "--metrics", "fid", "--num", "60"]
    assert evaluate(*args, "--data", str(classes), "--out", str(out)) == 0
    result = json.loads(out.read_text())
    assert result["metrics"]["fid"] > 0 and "folder" in json.dumps(result["reference"])
    capsys.readouterr()
    # Without class folders there is nothing to train the classifier on: one line that says what to use.
    assert evaluate(*args, "--data", str(flat), "--out", str(tmp_path / "x.json")) == 2
    assert "--features inception" in capsys.readouterr().err


def test_evaluate_never_replaces_an_existing_json_without_overwrite(untrained_export, tmp_path, capsys):
    out = tmp_path / "m.json"
    out.write_text("my notes")
    args = ["--checkpoint", untrained_export, "--data", "digits", "--metrics", "fid", "--num", "50", "--out", str(out)]
    assert evaluate(*args) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "my notes"
    assert evaluate(*args, "--overwrite") == 0
    assert "fid" in json.loads(out.read_text())["metrics"]
