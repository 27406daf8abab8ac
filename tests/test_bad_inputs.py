"""The bad-input sweep: every command, each mistake answered with one line on stderr, exit status 2, and nothing
changed on disk (a snapshot of everything the commands could touch is equal before and after).

One case per row: ``(id, argv with {placeholders}, a fragment of the message)``. Placeholders name the files of
the ``world`` fixture. New options (augmentation, the Hub) add rows here and to the README's troubleshooting table.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from gankit.cli import main
from gankit.training.lock import RunLock
from tests.data_writers import noise, save_image, snapshot
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
]


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
    names = {"run": run, "locked": locked, "images": images, "links": links, "export": root / "g.safetensors",
             "image": images / "0.png", "taken_png": root / "taken.png", "bad_npz": root / "bad.npz",
             "missing": root / "missing", "new": root / "new", "new_png": root / "new.png"}
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
    assert message in err[0], err[0]
    assert snapshot(root) == before
    assert not Path(names["new"]).exists()


def test_the_sweep_covers_every_command_and_thirty_cases():
    commands = {argv.split()[0] for _, argv, _ in CASES}
    assert commands == {"train", "sample", "interpolate", "attention", "export", "evaluate", "report", "prepare",
                        "bench", "presets", "explore"}
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)
