"""The bad-input sweep: every command, each mistake answered with one line on stderr, exit status 2, and nothing
changed on disk (a snapshot of everything the commands could touch is equal before and after).

One case per row: ``(id, argv with {placeholders}, a fragment of the message)``. Placeholders name the files of
the ``world`` fixture. New options (augmentation, the Hub) add rows here and to the README's troubleshooting table.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gankit.cli import main
from gankit.data.prepare import prepare_cache
from gankit.io import EXPORT_FORMAT, load_checkpoint, save_checkpoint, save_safetensors
from gankit.training.lock import RunLock
from tests.data_writers import noise, save_image, snapshot, write_mnist
from tests.tiny import TINY_SETS

TRAIN_NEW = "train --preset sagan-digits --steps 2 --device cpu --no-progress"

CASES = [
    # train: a new run
    ("train-nothing", "train --out {new}", "give --preset NAME or --config FILE.yaml"),
    ("train-preset", "train --preset sagan-digitz --out {new}", "unknown preset 'sagan-digitz'"),
    ("train-set-value", f"{TRAIN_NEW} --out {{new}} --set training.g_lr=-1", "training.g_lr must be a positive"),
    ("train-set-key", f"{TRAIN_NEW} --out {{new}} --set training.stepz=3", "unknown config key training.stepz"),
    ("train-existing-run", f"{TRAIN_NEW} --out {{run}}", "already holds a run; continue it with --resume"),
    ("train-out-file", f"{TRAIN_NEW} --out {{image}}", "is a file; give a folder for the run"),
    ("train-foreign-folder", f"{TRAIN_NEW} --out {{images}}", "non-empty folder that is not a gankit run"),
    ("train-data-missing", f"{TRAIN_NEW} --out {{new}} --data {{missing}}", "does not exist"),
    ("train-data-only-links", f"{TRAIN_NEW} --out {{new}} --data {{links}}", "is a link to the folder"),
    # train --resume
    ("resume-not-a-run", "train --resume {images} --steps 9", "no checkpoints/last.pt there"),
    ("resume-model-key", "train --resume {run} --set model.g_conv_dim=16", "model.* keys define the network"),
    ("resume-loss", "train --resume {run} --set training.loss=ns", "changes the objective mid-run"),
    ("resume-data-key", "train --resume {run} --set data.path=/tmp", "data.* changes the data the sampler"),
    ("resume-batch-size", "train --resume {run} --batch-size 4", "--batch-size cannot change when resuming"),
    ("resume-unknown-key", "train --resume {run} --set training.foo=1", "unknown config key training.foo"),
    ("resume-bad-value", "train --resume {run} --steps 9 --set training.d_lr=0", "training.d_lr must be a positive"),
    ("resume-steps-behind", "train --resume {run} --steps 1", "already at step 2 of 1"),
    ("resume-config", "train --resume {run} --config {image}", "drop --preset / --config"),
    ("resume-overwrite", "train --resume {run} --overwrite", "no meaning with --resume"),
    # the lock
    ("lock-resume", "train --resume {locked} --steps 9", "is being written by another gankit process (pid"),
    ("lock-overwrite", f"{TRAIN_NEW} --out {{locked}} --overwrite", "is being written by another gankit process"),
    # sample
    ("sample-missing", "sample --checkpoint {missing} --out {new_png}", "does not exist"),
    ("sample-num", "sample --checkpoint {run} --num 0 --out {new_png}", "--num must be >= 1"),
    ("sample-class", "sample --checkpoint {run} --class-id 10 --out {new_png}", "--class-id 10"),
    ("sample-grid-cap", "sample --checkpoint {run} --num 10001 --out {new_png}", "too many for one grid"),
    ("sample-exists", "sample --checkpoint {run} --out {taken_png}", "already exists"),
    ("sample-not-a-checkpoint", "sample --checkpoint {image} --out {new_png}", "not a complete torch archive"),
    # interpolate, attention
    ("interpolate-steps", "interpolate --checkpoint {run} --steps 1 --out {new_png}", "--steps must be >= 2"),
    ("interpolate-class", "interpolate --checkpoint {run} --class-id 12 --out {new_png}", "--class-id 12"),
    ("attention-layer", "attention --checkpoint {run} --layer attention.99 --out {new_png}", "attention.99"),
    ("attention-exists", "attention --checkpoint {export} --out {taken_png}", "already exists"),
    # export
    ("export-suffix", "export {run} --out {new}.pt", "give a name ending in .safetensors"),
    ("export-folder", "export {run} --out {images}", "is a folder"),
    ("export-no-ema", "export {export} --no-ema --out {new}.safetensors", "holds only the EMA generator"),
    # evaluate, report
    ("evaluate-metrics", "evaluate --checkpoint {run} --data digits --metrics fid,ssim --out {new}.json",
     "choose from fid,kid,is,pr,dc"),
    ("evaluate-data", "evaluate --checkpoint {run} --data {missing} --out {new}.json", "does not exist"),
    ("evaluate-npz", "evaluate --checkpoint {bad_npz} --data digits --out {new}.json", "with an 'images' array"),
    ("evaluate-exists", "evaluate --checkpoint {run} --data digits --out {taken_png}", "already exists"),
    ("report-exists", "report {run} --out {taken_png}", "already exists"),
    ("report-missing", "report {missing}", "does not exist"),
    # prepare
    ("prepare-inside", "prepare --data {images} --out {images}/c.gkc --size 16", "inside the data folder"),
    ("prepare-exists", "prepare --data {images} --out {taken_png} --size 16", "already exists"),
    ("prepare-no-folder", "prepare --data {images} --out {missing}/c.gkc --size 16", "does not exist; create it"),
    ("prepare-only-links", "prepare --data {links} --out {new}.gkc --size 16", "is a link to the folder"),
    ("prepare-digits", "prepare --data {run} --dataset cifar10 --out {new}.gkc --size 16", "CIFAR"),
    # bench, presets, explore
    ("bench-preset", "bench --preset sagan-digitz", "unknown preset"),
    ("bench-exists", "bench --preset sagan-digits --json {taken_png}", "already exists"),
    ("presets-extra", "presets extra", "unrecognized arguments"),
    ("explore-missing", "explore {missing}", "does not exist"),
    ("explore-port", "explore {run} --port 0", "must be >= 1"),
    # malformed files, devices gankit cannot run on, a mistyped path that reads like a Hub repo id
    ("sample-export-config-json", "sample --checkpoint {bad_json_export} --out {new_png}",
     "its config metadata is not valid JSON"),
    ("sample-checkpoint-no-config", "sample --checkpoint {no_config_pt} --out {new_png}", "holds no model config"),
    ("sample-checkpoint-no-g-ema", "sample --checkpoint {no_ema_pt} --out {new_png}", "holds no G_ema weights"),
    ("sample-checkpoint-no-g", "sample --checkpoint {no_g_pt} --no-ema --out {new_png}",
     "holds no G weights (damaged, or not written by gankit train); drop --no-ema to load its G_ema"),
    ("train-config-binary", "train --config {binary_yaml} --out {new}", "not UTF-8 text"),
    ("train-config-utf16-no-bom", "train --config {utf16_yaml} --out {new}", "not a text file (it holds NUL bytes"),
    ("train-config-folder", "train --config {images} --out {new}", "is a folder; give the YAML file inside it"),
    ("sample-device-xla", "sample --checkpoint {run} --device xla --out {new_png}",
     "--device 'xla' is not a device gankit runs on; use auto, cpu, cuda, cuda:N or mps"),
    ("evaluate-device-meta", "evaluate --checkpoint {run} --data digits --device meta --out {new}.json",
     "--device 'meta' is not a device gankit runs on"),
    ("sample-mistyped-run", "sample --checkpoint run/dmeo --out {new_png}",
     "run/dmeo does not exist (run/ is a local folder, so it is not read as a Hub repo id); give a run folder"),
    ("prepare-split", "prepare --data {mnist} --split test --out {new}.gkc --size 16",
     "--split test: {mnist} holds no test split of mnist; give --split train"),
    ("train-max-channels", f"{TRAIN_NEW} --out {{new}} --set model.max_channels=-5",
     "model.max_channels must be an integer >= 1, got -5"),
    ("train-cache-size", f"{TRAIN_NEW} --out {{new}} --data {{cache7}}",
     "holds 7x7 images but the model is 16x16; run gankit prepare --size 16 again"),
]
# the cases a test also runs as a user does: python -m gankit in a fresh process
AS_A_USER = ["sample-export-config-json", "sample-checkpoint-no-g-ema", "train-config-binary", "train-config-folder",
             "sample-device-xla", "sample-mistyped-run"]


def exit_status(argv: list[str]) -> int:
    """``gankit argv``'s exit status, argument errors (argparse exits) included."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A trained run, a locked copy of it, an export, an image folder, a folder of links only, and taken files."""
    root = tmp_path_factory.mktemp("world")
    run = root / "run"
    assert main(["train", "--preset", "sagan-digits", "--out", str(run), "--steps", "2", "--checkpoint-every", "2",
                 "--device", "cpu", "--no-progress", *TINY_SETS, "--set", "training.tensorboard=false"]) == 0
    locked = root / "locked"
    shutil.copytree(run, locked)
    lock = RunLock(locked).acquire()  # another holder: flock conflicts between two opens, even in one process
    images = root / "images"
    for k in range(3):
        save_image(images / f"{k}.png", noise(20, 20, seed=k))
    outside = root / "outside"
    save_image(outside / "x.png", noise(20, 20))
    links = root / "links"
    links.mkdir()
    (links / "elsewhere").symlink_to(outside)
    (links / "loop").symlink_to("..")
    assert main(["export", str(run), "--out", str(root / "g.safetensors")]) == 0
    (root / "taken.png").write_bytes(b"the user's file")
    np.savez(root / "bad.npz", pictures=np.zeros((2, 1, 16, 16), np.float32))
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    parts = {"no_config": ("G", "G_ema"), "no_ema": ("config", "G"), "no_g": ("config", "G_ema")}
    for name, keep in parts.items():
        save_checkpoint({k: ckpt[k] for k in keep}, root / f"{name}.pt")
    save_safetensors(root / "bad_json.safetensors", {"w": torch.zeros(1)}, {"format": EXPORT_FORMAT, "config": "{oops"})
    (root / "binary.yaml").write_bytes(bytes(range(256)))
    (root / "utf16.yaml").write_bytes("training:\n  steps: 3\n".encode("utf-16-le"))  # no byte-order mark
    write_mnist(root / "mnist", np.zeros((4, 28, 28), np.uint8), np.arange(4))  # the train split only
    prepare_cache(images, root / "c7.gkc", size=7, workers=0, progress=False)
    names = {"run": run, "locked": locked, "images": images, "links": links, "export": root / "g.safetensors",
             "image": images / "0.png", "taken_png": root / "taken.png", "bad_npz": root / "bad.npz",
             "missing": root / "missing", "new": root / "new", "new_png": root / "new.png",
             "bad_json_export": root / "bad_json.safetensors", "no_config_pt": root / "no_config.pt",
             "no_ema_pt": root / "no_ema.pt", "no_g_pt": root / "no_g.pt", "binary_yaml": root / "binary.yaml",
             "utf16_yaml": root / "utf16.yaml", "mnist": root / "mnist", "cache7": root / "c7.gkc"}
    yield root, {k: str(v) for k, v in names.items()}
    lock.release()


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(world, argv, message, capsys, monkeypatch):
    root, names = world
    monkeypatch.chdir(root)  # relative defaults (runs/) would land here, inside the snapshot
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(root / "cache"))
    capsys.readouterr()
    before = snapshot(root)
    assert exit_status(argv.format(**names).split()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("gankit"), err[0]
    assert message.format(**names) in err[0], err[0]
    assert snapshot(root) == before
    assert not Path(names["new"]).exists()


@pytest.mark.parametrize("case", AS_A_USER)
def test_as_a_user_runs_it_one_line_exit_2_and_no_change(world, case):
    root, names = world
    argv, message = next(c[1:] for c in CASES if c[0] == case)
    before = snapshot(root)
    env = {**os.environ, "GANKIT_CACHE_DIR": str(root / "cache"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "gankit", *argv.format(**names).split()], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300)
    err = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(err) == 1 and err[0].startswith("gankit: error: ") and message.format(**names) in err[0], err
    assert snapshot(root) == before


def test_the_sweep_covers_every_command_and_thirty_cases():
    commands = {argv.split()[0] for _, argv, _ in CASES}
    assert commands == {"train", "sample", "interpolate", "attention", "export", "evaluate", "report", "prepare",
                        "bench", "presets", "explore"}
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)
