"""One writer per run folder (the flock in RUN/.gankit.lock), and readers during writes."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import gankit
from gankit.cli import main
from gankit.errors import UserError
from gankit.io import (
    RunDir,
    load_checkpoint,
    read_generator_export,
)
from gankit.training import Trainer, new_run_dir, prepare_run_dir
from gankit.training import lock as lock_module
from gankit.training.lock import RunLock, RunLocked
from tests.data_writers import snapshot
from tests.tiny import TINY_SETS, trainer_run

REPO = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent(
    """
    import sys, time
    from gankit.training.lock import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def holder(tmp_path):
    """Start a separate process that holds the lock of a folder; yields (start(folder) -> pid, kill())."""
    script = tmp_path / "hold_lock.py"
    script.write_text(HOLDER)
    procs = []

    def start(folder: Path) -> int:
        proc = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True,
                                cwd=REPO)
        assert proc.stdout.readline().strip() == "locked"
        procs.append(proc)
        return proc.pid

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("lock") / "run"
    assert main(["train", "--preset", "sagan-digits", "--out", str(out), "--steps", "2", "--checkpoint-every", "2",
                 "--device", "cpu", "--no-progress", *TINY_SETS, "--set", "training.tensorboard=false"]) == 0
    return out


def test_a_second_lock_of_the_same_folder_is_refused_until_the_first_is_released(tmp_path):
    first = RunLock(tmp_path).acquire()
    assert (tmp_path / RunDir.LOCK).read_text().strip() == str(os.getpid())
    before = snapshot(tmp_path)
    message = rf"{tmp_path} is being written by another gankit process \(pid {os.getpid()}\)"
    with pytest.raises(RunLocked, match=message):
        RunLock(tmp_path).acquire()
    assert snapshot(tmp_path) == before
    first.release()
    with RunLock(tmp_path) as second:
        assert second.held
    assert not second.held


def test_a_lock_left_by_a_killed_process_never_blocks(tmp_path, holder):
    pid = holder(tmp_path)
    with pytest.raises(RunLocked, match=f"pid {pid}"):
        RunLock(tmp_path).acquire()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert (tmp_path / RunDir.LOCK).read_text().strip() == str(pid)  # the stale pid is only text
    with RunLock(tmp_path):
        assert (tmp_path / RunDir.LOCK).read_text().strip() == str(os.getpid())


def test_resume_and_overwrite_of_a_folder_in_use_stop_before_touching_anything(trained, holder, capsys):
    pid = holder(trained)
    before = snapshot(trained)
    commands = [
        ["train", "--resume", str(trained), "--steps", "4", "--no-progress"],
        ["train", "--resume", str(trained), "--steps", "4", "--set", "training.g_lr=1e-4", "--no-progress"],
        ["train", "--preset", "sagan-digits", "--out", str(trained), "--overwrite", "--steps", "2", "--device", "cpu",
         "--no-progress", *TINY_SETS],
    ]
    for argv in commands:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{trained} is being written by another gankit process (pid {pid})" in err[0]
        assert snapshot(trained) == before


def test_a_new_run_into_a_locked_empty_folder_is_refused_and_the_folder_kept(tmp_path, holder, capsys):
    folder = tmp_path / "new"
    folder.mkdir()
    pid = holder(folder)
    assert main(["train", "--preset", "sagan-digits", "--out", str(folder), "--steps", "2", "--device", "cpu",
                 "--no-progress", *TINY_SETS]) == 2
    assert f"(pid {pid})" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == [RunDir.LOCK]


def test_the_lock_file_alone_is_no_run_and_survives_overwrite(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    RunLock(folder).acquire().release()
    prepare_run_dir(folder)  # a folder holding only the lock file is empty for a new run
    (folder / "config.yaml").write_text("x")
    with new_run_dir(folder, overwrite=True, lock=RunLock(folder)) as out:
        assert (out / RunDir.LOCK).exists() and not (out / "config.yaml").exists()


def test_new_run_dir_releases_the_lock_when_the_setup_fails(tmp_path):
    lock = RunLock(tmp_path / "fresh")
    with pytest.raises(UserError, match="bad data"), new_run_dir(tmp_path / "fresh", lock=lock):
        assert lock.held
        raise UserError("bad data")
    assert not lock.held and not (tmp_path / "fresh").exists()


def test_training_holds_the_lock_to_the_end_and_releases_it(tmp_path, monkeypatch):
    seen = []
    real_fit = Trainer.fit

    def fit(self):  # while training, the folder is locked against anyone else
        with pytest.raises(RunLocked):
            RunLock(self.run_dir).acquire()
        seen.append(self.step)
        real_fit(self)

    monkeypatch.setattr(Trainer, "fit", fit)
    out = tmp_path / "run"
    base = ["--device", "cpu", "--no-progress"]
    assert main(["train", "--preset", "sagan-digits", "--out", str(out), "--steps", "2", *base, *TINY_SETS]) == 0
    assert main(["train", "--resume", str(out), "--steps", "3", *base]) == 0
    assert seen == [0, 2]
    RunLock(out).acquire().release()  # released at the end


def test_without_fcntl_the_lock_degrades_to_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "fcntl", None)
    with RunLock(tmp_path), RunLock(tmp_path):
        pass
    assert not (tmp_path / RunDir.LOCK).exists()


def test_a_file_system_without_flock_warns_once_and_trains_on(tmp_path, monkeypatch, capsys):
    class NoFlock:
        LOCK_EX, LOCK_NB = 2, 4

        @staticmethod
        def flock(fd, op):
            raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_module, "fcntl", NoFlock)
    with RunLock(tmp_path) as lock:
        assert not lock.held
    assert "cannot lock files" in capsys.readouterr().err


def test_readers_never_see_a_torn_checkpoint_or_export_while_a_trainer_writes(tmp_path):
    run = prepare_run_dir(tmp_path / "run")
    trainer = Trainer(trainer_run(steps=100, keep_checkpoints=2), run, progress=False)
    trainer.save_checkpoint()
    done = threading.Event()
    errors: list[BaseException] = []

    def writer():
        try:
            for _ in range(40):
                trainer.gan.step += 1
                trainer.save_checkpoint()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads, steps = 0, []
    while not done.is_set() or reads < 5:
        steps.append(load_checkpoint(run / "checkpoints/last.pt")["step"])
        config, state, _ = read_generator_export(run / "generator.safetensors")
        assert state and config["family"] == "sagan"
        gankit.load_generator(run)
        reads += 1
    thread.join()
    assert not errors and reads >= 5
    steps.append(load_checkpoint(run / "checkpoints/last.pt")["step"])
    assert steps == sorted(steps) and steps[-1] == 40  # whole files, never older than one already read
