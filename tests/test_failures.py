"""Failures end in one line and lose nothing.

- The fault-injection matrix: the N-th write of ``atomic_write`` (torch's checkpoint writer included) fails with
  ENOSPC, EIO or EACCES, at every write position of train (a resume), sample, evaluate, export and prepare; every
  case ends with one line on stderr, exit status 2, no temporary file left, and each output either the previous
  file or a complete new one.
- Hostile inputs of the reliability list, each run as a user would: one line, the documented exit status, nothing
  changed on disk (a snapshot before and after).
- Interruptions (Ctrl-C 130, SIGTERM 143) and their partial outputs; unwritable outputs (run as an unprivileged
  user); a second writer of the same output; progress lines where stderr is no terminal.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import gankit.errors
import gankit.io
from gankit.cli import main
from gankit.data.cache import read_header
from gankit.io import is_temporary_name, load_checkpoint, read_safetensors, write_json
from gankit.training.lock import OutputLock
from tests.data_writers import noise, save_image, snapshot
from tests.test_bad_inputs import exit_status
from tests.tiny import TINY_SETS

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--preset", "sagan-digits", "--device", "cpu", "--no-progress", *TINY_SETS,
         "--set", "training.tensorboard=false"]
ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EIO: "input/output error",
          errno.EACCES: "permission denied"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A trained run, its export, an image folder, a warm evaluation cache and .npz files good and bad."""
    root = tmp_path_factory.mktemp("failures")
    cache = root / "cache"
    os.environ["GANKIT_CACHE_DIR"] = str(cache)
    run = root / "run"
    assert main([*TRAIN, "--out", str(run), "--steps", "2", "--checkpoint-every", "2"]) == 0
    export = root / "g.safetensors"
    assert main(["export", str(run), "--out", str(export)]) == 0
    images = root / "images"
    for k in range(4):
        save_image(images / f"{k}.png", noise(12, 12, seed=k))
    # warm the features cache (the digits classifier, real features): cache writes are not the command's
    assert main(["evaluate", "--checkpoint", str(export), "--data", "digits", "--num", "20", "--metrics", "fid",
                 "--features", "digits", "--no-progress", "--out", str(root / "warm.json")]) == 0
    good = np.random.default_rng(0).uniform(-1, 1, (8, 1, 16, 16)).astype(np.float32)
    np.savez(root / "uint8.npz", images=((good + 1) * 127.5).astype(np.uint8))
    nan = good.copy()
    nan[3, 0, 2, 2] = np.nan
    np.savez(root / "nan.npz", images=nan)
    np.savez(root / "scaled.npz", images=(good + 1) * 127.5)
    np.savez(root / "empty.npz", images=good[:0])
    np.savez(root / "one.npz", images=good[:1])
    yield root
    os.environ.pop("GANKIT_CACHE_DIR", None)


# ------------------------------------------------------------------------------------ fault injection


class WriteFaults:
    """Counts the files :func:`gankit.io.atomic_write` writes (torch.save's checkpoints included) and makes the
    first write into the ``fail_at``-th one raise ``OSError(code)``, as the file system would (torch.save reports
    it as ``RuntimeError: ... unexpected pos``)."""

    def __init__(self, monkeypatch, fail_at: int | None = None, code: int = errno.ENOSPC) -> None:
        self.count, self.fail_at, self.code = 0, fail_at, code
        original = gankit.io._RecordingFile.__init__
        faults = self

        class FaultyFile:
            def __init__(self, f, fail: bool) -> None:
                self.file, self.fail = f, fail

            def write(self, data):
                if self.fail:
                    raise OSError(faults.code, os.strerror(faults.code))
                return self.file.write(data)

            def __getattr__(self, name):
                return getattr(self.file, name)

        def init(recording, f) -> None:
            faults.count += 1
            original(recording, FaultyFile(f, faults.count == faults.fail_at))

        monkeypatch.setattr(gankit.io._RecordingFile, "__init__", init)


def _complete(path: Path) -> bool:
    """Whether ``path`` is a whole file of its kind (it loads)."""
    try:
        if path.suffix == ".pt":
            load_checkpoint(path)
        elif path.suffix == ".npz":
            with np.load(path) as archive:
                [archive[name] for name in archive.files]
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            read_safetensors(path)
        elif path.suffix == ".gkc":
            read_header(path)
        elif path.suffix == ".png":
            from PIL import Image

            Image.open(path).load()
        return True
    except Exception:
        return False


def _command(kind: str, root: Path, work: Path) -> tuple[list[str], list[Path]]:
    """The argv of one command of the matrix, working in ``work`` (its previous outputs laid out there), and the
    outputs it replaces."""
    if kind == "train":
        shutil.copytree(root / "run", work / "run")
        return ["train", "--resume", str(work / "run"), "--steps", "4", "--checkpoint-every", "1", "--no-progress",
                "--device", "cpu"], [work / "run" / "checkpoints" / "last.pt"]
    if kind == "sample":
        outs = [work / "s.png", work / "s.npz"]
        assert main(["sample", "--checkpoint", str(root / "g.safetensors"), "--num", "4", "--seed", "9",
                     "--no-progress", "--out", str(work / "s")]) == 0
        return ["sample", "--checkpoint", str(root / "g.safetensors"), "--num", "4", "--no-progress", "--overwrite",
                "--out", str(work / "s")], outs
    if kind == "evaluate":
        shutil.copy(root / "warm.json", work / "m.json")
        return ["evaluate", "--checkpoint", str(root / "g.safetensors"), "--data", "digits", "--num", "20",
                "--metrics", "fid", "--features", "digits", "--no-progress", "--overwrite",
                "--out", str(work / "m.json")], [work / "m.json"]
    if kind == "export":
        shutil.copy(root / "g.safetensors", work / "e.safetensors")
        return ["export", str(root / "run"), "--fold-sn", "--overwrite", "--out", str(work / "e.safetensors")], [
            work / "e.safetensors"]
    assert kind == "prepare"
    assert main(["prepare", "--data", str(root / "images"), "--size", "8", "--channels", "1", "--no-progress",
                 "--out", str(work / "c.gkc")]) == 0
    return ["prepare", "--data", str(root / "images"), "--size", "8", "--no-progress", "--overwrite",
            "--out", str(work / "c.gkc")], [work / "c.gkc"]


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_temporary_name(p.name)]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["train", "sample", "evaluate", "export", "prepare"])
def test_every_failed_write_is_one_line_and_keeps_the_previous_state(world, kind, tmp_path, monkeypatch, capsys):
    root = world
    # how many files the command writes
    (tmp_path / "count").mkdir()
    argv, outs = _command(kind, root, tmp_path / "count")
    faults = WriteFaults(monkeypatch)
    assert main(argv) == 0
    writes = faults.count
    assert writes >= 1
    capsys.readouterr()
    codes = list(ERRNOS)
    for position in range(1, writes + 1):
        # every file position fails once, the errnos taking turns (each errno meets every kind of file this way
        # across the commands); the first file fails with all three
        for code in codes if position == 1 else [codes[position % len(codes)]]:
            text = ERRNOS[code]
            work = tmp_path / f"{position}-{code}"
            work.mkdir()
            argv, outs = _command(kind, root, work)
            before = {p: p.read_bytes() for p in outs}
            capsys.readouterr()
            WriteFaults(monkeypatch, fail_at=position, code=code)
            status = exit_status(argv)
            err = capsys.readouterr().err.strip().splitlines()
            where = f"{kind}: file {position} of {writes} failing with {errno.errorcode[code]}"
            assert status == 2, where
            # it ends with one line (a resume says what it changed before it starts)
            errors = [line for line in err if "error" in line or "Traceback" in line]
            assert errors == [err[-1]] and err[-1].startswith("gankit: error:") and text in err[-1], (where, err)
            assert _temporaries(work) == [], where
            for path, old in before.items():  # the previous file, or a complete new one
                assert path.is_file() and (path.read_bytes() == old or _complete(path)), (where, path)
            shutil.rmtree(work)


def test_a_full_disk_inside_torch_save_is_named(tmp_path, monkeypatch):
    WriteFaults(monkeypatch, fail_at=1, code=errno.ENOSPC)
    target = tmp_path / "c.pt"
    target.write_bytes(b"previous")
    with pytest.raises(gankit.errors.UserError, match="no space left on the device while writing .*the previous "
                                                      "file is intact"):
        gankit.io.save_checkpoint({"step": 1, "w": torch.zeros(1000)}, target)
    assert target.read_bytes() == b"previous" and _temporaries(tmp_path) == []


def test_a_run_whose_first_checkpoint_cannot_be_written_says_so(tmp_path, monkeypatch, capsys):
    original = gankit.io.save_checkpoint

    def full(state, path):
        raise gankit.io.write_error(path, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr("gankit.training.checkpoints.save_checkpoint", full)
    run = tmp_path / "run"
    assert exit_status([*TRAIN, "--out", str(run), "--steps", "2", "--checkpoint-every", "1"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert len(err) == 1 and "before its first checkpoint, so there is nothing to resume" in err[0], err
    assert not (run / "checkpoints" / "last.pt").exists() and _temporaries(run) == []
    monkeypatch.setattr("gankit.training.checkpoints.save_checkpoint", original)
    # the folder it leaves is explained by --resume, and the command it gives starts the run again
    assert exit_status(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stopped before writing its first checkpoint, so there is nothing to resume" in err[0]
    again = err[0].split("start it again: gankit ")[1].split()
    assert exit_status([*again, "--steps", "1", "--no-progress"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 1


def test_write_json_is_strict(tmp_path):
    path = write_json(tmp_path / "m.json", {"fid": float("nan"), "kid": [1.0, float("inf")], "n": 3})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"fid": None, "kid": [1.0, None], "n": 3}


# ------------------------------------------------------------------------------------- hostile inputs

CASES = [
    # seeds: one rule, 0 <= seed < 2**63, checked by the parser
    ("seed-train", "train --preset sagan-digits --seed 99999999999999999999 --out {new}", "--seed"),
    ("seed-sample", "sample --checkpoint {export} --seed 99999999999999999999 --out {new_png}", "--seed"),
    ("seed-negative", "sample --checkpoint {export} --seed -1 --out {new_png}", "from 0 to 2**63 - 1"),
    ("seed-interpolate", "interpolate --checkpoint {export} --seed 9223372036854775808 --out {new_png}", "--seed"),
    ("seed-attention", "attention --checkpoint {export} --seed 99999999999999999999 --out {new_png}", "--seed"),
    # sizes that would grow without bound
    ("interpolate-rows", "interpolate --checkpoint {export} --rows 100000 --out {new_png}", "at most 10000"),
    ("prepare-size", "prepare --data {images} --size 100000 --out {new}.gkc", "larger than any gankit model"),
    # outputs of the wrong kind
    ("interpolate-folder-out", "interpolate --checkpoint {export} --out {root}/", "is a folder"),
    ("attention-npz-out", "attention --checkpoint {export} --out {new}.npz", "give a name ending in .png"),
    # evaluate: images that are not float [-1, 1], not finite, or too few
    ("evaluate-uint8", "evaluate --checkpoint {root}/uint8.npz --data digits --out {new}.json", "uint8"),
    ("evaluate-scale", "evaluate --checkpoint {root}/scaled.npz --data digits --features digits --no-progress "
                       "--out {new}.json", "takes float images in [-1, 1]"),
    ("evaluate-nan", "evaluate --checkpoint {root}/nan.npz --data digits --features digits --no-progress "
                     "--out {new}.json", "image 3 holds NaN"),
    ("evaluate-empty", "evaluate --checkpoint {root}/empty.npz --data digits --features digits --out {new}.json",
     "needs at least 2 generated images, got 0"),
    ("evaluate-one", "evaluate --checkpoint {root}/one.npz --data digits --features digits --out {new}.json",
     "needs at least 2 generated images, got 1"),
    ("evaluate-num", "evaluate --checkpoint {export} --data digits --num 2 --features digits --out {new}.json",
     "pr needs at least 4 generated images, got 2"),
]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_exit_2_and_changes_nothing(world, argv, message, capsys, monkeypatch):
    root = world
    names = {"root": str(root), "export": str(root / "g.safetensors"), "images": str(root / "images"),
             "new": str(root / "new"), "new_png": str(root / "new.png")}
    monkeypatch.chdir(root)
    capsys.readouterr()
    before = snapshot(root)
    assert exit_status(argv.format(**names).split()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gankit"), err
    assert message in err[0], err[0]
    assert snapshot(root) == before


# ------------------------------------------------------------------------------------- as a user would


def _gankit(*args: str, **kwargs) -> list[str]:
    return [sys.executable, "-m", "gankit", *args]


def _shared_copy(world: Path) -> Path:
    """A folder anyone can read holding the export (for commands run as another user)."""
    shared = Path(tempfile.mkdtemp(prefix="gankit-shared-"))
    shared.chmod(0o755)
    shutil.copy(world / "g.safetensors", shared / "g.safetensors")
    (shared / "g.safetensors").chmod(0o644)
    shutil.copytree(world / "images", shared / "images")
    for p in [shared / "images", *(shared / "images").iterdir()]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return shared


needs_setpriv = pytest.mark.skipif(
    shutil.which("setpriv") is None or os.geteuid() != 0, reason="runs a command as another user (setpriv, root)"
)


@needs_setpriv
@pytest.mark.parametrize("command", [
    "sample --checkpoint {g} --num 4 --out {out}/s.png",
    "interpolate --checkpoint {g} --out {out}/w.png",
    "attention --checkpoint {g} --out {out}/a.png",
    "export {g} --out {out}/e.safetensors",
    "evaluate --checkpoint {g} --data digits --num 20 --features digits --out {out}/m.json",
    "report {g} --per-class 2 --out {out}/r.json",
    "prepare --data {images} --size 8 --out {out}/c.gkc",
    "train --preset sagan-digits --steps 1 --out {out}/run",
], ids=lambda c: c.split()[0])
def test_an_unwritable_output_is_refused_before_any_work(world, command):
    shared = _shared_copy(world)
    try:
        out = shared / "readonly"
        out.mkdir(mode=0o555)
        out.chmod(0o555)
        args = command.format(g=shared / "g.safetensors", images=shared / "images", out=out).split()
        env = {**os.environ, "HOME": str(shared), "GANKIT_CACHE_DIR": str(shared / "cache")}
        started = time.perf_counter()
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *_gankit(*args)],
                              capture_output=True, text=True, env=env, cwd=shared, timeout=120)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1, proc.stderr
        assert "cannot be written" in err[0] and "permission denied" in err[0], err[0]
        assert list(out.iterdir()) == []
        assert time.perf_counter() - started < 60
    finally:
        shutil.rmtree(shared)


@needs_setpriv
def test_a_cache_folder_that_cannot_be_written_falls_back_with_a_warning(world):
    shared = _shared_copy(world)
    try:
        cache = shared / "cache"
        cache.mkdir(mode=0o555)
        cache.chmod(0o555)
        out = shared / "out"
        out.mkdir(mode=0o777)
        out.chmod(0o777)
        env = {**os.environ, "HOME": str(shared), "GANKIT_CACHE_DIR": str(cache)}
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               *_gankit("evaluate", "--checkpoint", str(shared / "g.safetensors"), "--data", "digits",
                                        "--num", "20", "--metrics", "fid", "--features", "digits", "--no-progress",
                                        "--out", str(out / "m.json"))],
                              capture_output=True, text=True, env=env, cwd=shared, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert f"cache folder {cache} cannot be written; using" in proc.stderr
        assert json.loads((out / "m.json").read_text())["metrics"]["fid"] >= 0
    finally:
        shutil.rmtree(shared)


def test_a_second_writer_of_the_same_output_is_refused(world, tmp_path):
    out = tmp_path / "s.png"
    with OutputLock(out):  # another gankit command writing it
        proc = subprocess.run(_gankit("sample", "--checkpoint", str(world / "g.safetensors"), "--out", str(out)),
                              capture_output=True, text=True, cwd=tmp_path, timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "is being written by another gankit command" in err[0], err
    assert not out.exists()
    # once the other writer is gone, the same command goes through
    proc = subprocess.run(_gankit("sample", "--checkpoint", str(world / "g.safetensors"), "--out", str(out)),
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and out.is_file(), proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "status", "said"), [(signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                                     (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_an_interrupted_sample_into_a_folder_removes_what_it_wrote(world, tmp_path, sig, status, said):
    folder = tmp_path / "pngs"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's")
    proc = subprocess.Popen(_gankit("sample", "--checkpoint", str(world / "g.safetensors"), "--num", "200000",
                                    "--batch-size", "16", "--no-progress", "--out", f"{folder}/"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.time() + 120
    while not any(p.suffix == ".png" for p in folder.iterdir()):
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == status and len(lines) == 1, err
    assert lines[0].startswith(f"gankit: {said}; removed the ") and "PNGs written so far" in lines[0]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["evaluate"])
def test_ctrl_c_in_a_command_is_one_line_and_leaves_no_output(world, tmp_path, command):
    out = tmp_path / "out"
    args = {
        "evaluate": ["evaluate", "--checkpoint", str(world / "g.safetensors"), "--data", "digits", "--num",
                     "2000000", "--metrics", "fid", "--features", "digits", "--no-progress", "--out", f"{out}.json"],
    }[command]
    env = {**os.environ, "GANKIT_CACHE_DIR": str(world / "cache")}
    proc = subprocess.Popen(_gankit(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=env)
    time.sleep(4)  # into the work (the imports take 1-3 s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 130 and len(lines) == 1 and lines[0].startswith("gankit: interrupted (Ctrl-C)"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_training_shows_signs_of_life_where_stderr_is_no_terminal(tmp_path):
    env = {**os.environ, "GANKIT_PROGRESS_SECONDS": "0"}
    args = [a for a in TRAIN if a != "--no-progress"]
    proc = subprocess.run(_gankit(*args, "--steps", "3", "--out", str(tmp_path / "run")), capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("gankit: training ")]
    assert any(line.startswith("gankit: training 3/3 (100%)") for line in lines), proc.stderr
    assert "step/s" in lines[-1] and "d=" in lines[-1]
    assert "gankit: training sagan-digits on cpu for 3 steps" in proc.stderr  # the messages are on stderr too
    assert proc.stdout.startswith("gankit: done at step 3.")  # the result on stdout


def test_out_of_memory_is_one_line_exit_2(monkeypatch, capsys):
    import gankit.apps.presets

    def exhausted():
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory: you tried "
                           "to allocate 80000000000 bytes")

    monkeypatch.setattr(gankit.apps.presets, "preset_table", exhausted)
    assert main(["presets"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gankit: error: out of memory (") and "lower --batch-size" in err[0]


def test_a_bug_is_one_line_exit_1_and_debug_shows_it(monkeypatch, capsys):
    import gankit.apps.presets

    def broken():
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(gankit.apps.presets, "preset_table", broken)
    assert main(["presets"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gankit: internal error (ZeroDivisionError: division by zero); this is a bug in gankit: rerun "
                   "with --debug for the traceback and report it"]
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "presets"])


@pytest.mark.parametrize(("argv", "message"), [
    (["--set", "training.eval_every=2", "--set", "training.eval_num=3"], "training.eval_num must be an integer >= 6"),
    (["--set", "data.subset_seed=-1", "--set", "data.max_images=100"], "data.subset_seed must be an integer in"),
    (["--set", "training.g_lr=1" + "0" * 400], "training.g_lr must be a number"),
])
def test_config_values_that_used_to_fail_late(tmp_path, capsys, argv, message):
    assert exit_status([*TRAIN, "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_an_augment_policy_list_of_older_configs_reads_as_the_comma_text():
    from gankit.config import TrainingConfig

    assert TrainingConfig(augment_policy=["color", "translation"]).augment_policy == "color,translation"


def test_a_malformed_progress_interval_falls_back_to_the_default(monkeypatch):
    from gankit import log

    monkeypatch.setenv("GANKIT_PROGRESS_SECONDS", "abc")
    monkeypatch.setattr(log, "_is_terminal", lambda: False)
    bar = log.progress(10, desc="x")
    assert isinstance(bar, log.PlainProgress) and bar.every == log.PLAIN_EVERY_S


def test_a_folder_given_as_a_file_output_is_refused_before_any_work(world, tmp_path, capsys, monkeypatch):
    import gankit.apps.evaluate as app

    monkeypatch.setattr(app, "load_generator", lambda *a, **k: pytest.fail("work started"))
    folder = tmp_path / "somedir"
    folder.mkdir()
    argv = ["evaluate", "--checkpoint", str(world / "g.safetensors"), "--data", "digits", "--overwrite",
            "--out", str(folder)]
    assert exit_status(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gankit: error: --out {folder} is a folder; give a file name for the output"]
