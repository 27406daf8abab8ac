"""The files gankit writes and reads (``gankit.io``): the atomic writer and its temporaries, JSON and file hashes,
safetensors with metadata, the generator export format, checkpoints (safe loading, every kind of bad file) and
:class:`RunDir`, the names inside a run folder."""

import errno
import hashlib
import json
import os
import stat

import pytest
import torch

from gankit.cli import main
from gankit.errors import DamagedFile, UserError
from gankit.io import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    EXPORT_FORMAT,
    RunDir,
    atomic_write,
    file_sha256,
    is_temporary_name,
    load_checkpoint,
    read_generator_export,
    read_safetensors,
    remove_stale_temporaries,
    save_checkpoint,
    save_generator_export,
    save_safetensors,
    write_json,
)
from gankit.models import build_generator
from gankit.training import Trainer, prepare_run_dir
from gankit.version import __version__
from tests.tiny import dcgan_config, trainer_run

# ------------------------------------------------------------------------------------------ atomic_write


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_write_takes_bytes_text_or_a_writer_and_makes_the_folder(tmp_path):
    assert atomic_write(tmp_path / "a" / "b" / "bytes.bin", b"\x00\x01") == tmp_path / "a" / "b" / "bytes.bin"
    assert (tmp_path / "a" / "b" / "bytes.bin").read_bytes() == b"\x00\x01"
    atomic_write(tmp_path / "text.txt", "gr\u00fc\u00df")
    assert (tmp_path / "text.txt").read_bytes() == "gr\u00fc\u00df".encode()
    atomic_write(tmp_path / "text.txt", lambda f: f.write(b"replaced"))
    assert (tmp_path / "text.txt").read_text() == "replaced"
    mode = stat.S_IMODE((tmp_path / "text.txt").stat().st_mode)
    assert mode == 0o666 & ~_umask()  # the usual permissions, not the 0600 of a temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "text.txt"]


@pytest.mark.parametrize("error", [ValueError("bad value"), KeyboardInterrupt()])
def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path, error):
    target = tmp_path / "state.json"
    target.write_text("old")

    def fail(f):
        f.write(b"half of the new")
        raise error

    with pytest.raises(type(error)):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_no_space_left_keeps_the_previous_file(tmp_path):
    target = tmp_path / "ckpt.pt"
    save_checkpoint({"step": 1}, target)
    before = target.read_bytes()

    def full_disk(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match="no space left.*previous file is intact"):
        atomic_write(target, full_disk)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_stale_temporaries_are_removed_but_one_being_written_is_kept(tmp_path):
    (tmp_path / "cache.gkc").write_bytes(b"old")
    stale = tmp_path / ".cache.gkc.ab12cd_9.tmp"
    stale.write_bytes(b"half")
    other = tmp_path / ".other.gkc.abcdefgh.tmp"
    other.write_bytes(b"x")
    mine = tmp_path / ".cache.gkc.notes.tmp"  # not a name atomic_write makes: the user's
    mine.write_bytes(b"x")
    removed_during_write = []

    def write(f):  # while this write is in progress, its own temporary must survive a cleanup
        removed_during_write.extend(remove_stale_temporaries(tmp_path, "cache.gkc"))
        f.write(b"new")

    atomic_write(tmp_path / "cache.gkc", write)
    assert removed_during_write == [stale]
    assert (tmp_path / "cache.gkc").read_bytes() == b"new"
    assert other.exists() and mine.exists()
    assert remove_stale_temporaries(tmp_path) == [other]
    assert is_temporary_name(".a.b.pt.abcdefgh.tmp", "a.b.pt") and not is_temporary_name(".a.pt.abc.tmp")


def test_temporary_names_and_what_a_cleanup_never_touches(tmp_path):
    assert is_temporary_name(".last.pt.k2_x9a0b.tmp") and is_temporary_name(".last.pt.k2_x9a0b.tmp", "last.pt")
    assert not is_temporary_name(".last.pt.k2_x9a0b.tmp", "best.pt")
    for name in ("last.pt.k2_x9a0b.tmp", ".last.pt.K2X9A0BC.tmp", ".last.pt.k2_x9a0b.temp", ".last.pt.k2_x9a0bc.tmp"):
        assert not is_temporary_name(name), name
    assert remove_stale_temporaries(tmp_path / "missing") == []
    (tmp_path / ".folder.abcdefgh.tmp").mkdir()  # a folder with a temporary's name
    (tmp_path / "target").write_bytes(b"keep")
    (tmp_path / ".link.abcdefgh.tmp").symlink_to(tmp_path / "target")  # a link with one
    assert remove_stale_temporaries(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".folder.abcdefgh.tmp", ".link.abcdefgh.tmp", "target"]


def test_write_json_and_file_sha256(tmp_path):
    data = {"step": 3, "fid": 12.5, "classes": ["a", "b"]}
    path = write_json(tmp_path / "x" / "m.json", data)
    text = path.read_text()
    assert text == json.dumps(data, indent=2) + "\n" and json.loads(text) == data
    blob = os.urandom(3000)
    (tmp_path / "blob").write_bytes(blob)
    assert file_sha256(tmp_path / "blob") == hashlib.sha256(blob).hexdigest() == file_sha256(tmp_path / "blob", 7)


# ------------------------------------------------------------------------------------------ safetensors


def test_safetensors_round_trip_with_metadata(tmp_path):
    weights = torch.randn(4, 6, requires_grad=True)
    tensors = {"w": weights, "t": torch.arange(12).reshape(3, 4).T, "b": torch.ones(2, dtype=torch.bfloat16)}
    save_safetensors(tmp_path / "f.safetensors", tensors, {"note": "x", "n": "3"})
    loaded, metadata = read_safetensors(tmp_path / "f.safetensors")
    assert metadata == {"note": "x", "n": "3"} and loaded.keys() == tensors.keys()
    for key, value in tensors.items():
        assert torch.equal(loaded[key], value.detach()) and loaded[key].dtype == value.dtype
    assert weights.requires_grad  # the caller's tensors are untouched


def test_safetensors_missing_or_damaged_files_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match=r"'.*nope.safetensors' does not exist"):
        read_safetensors(tmp_path / "nope.safetensors")
    save_safetensors(tmp_path / "good.safetensors", {"w": torch.zeros(100)}, {})
    good = (tmp_path / "good.safetensors").read_bytes()
    for name, content in (("cut.safetensors", good[: len(good) // 2]), ("junk.safetensors", b"\x00" * 64)):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DamagedFile, match=f"{name} is not a readable safetensors file") as info:
            read_safetensors(tmp_path / name)
        assert "\n" not in str(info.value)


def test_the_generator_export_carries_its_config_and_metadata(tmp_path):
    torch.manual_seed(0)
    G = build_generator(dcgan_config())
    path = G.save_export(tmp_path / "g.safetensors", ema="true")
    config, state, metadata = read_generator_export(path)
    assert config == G.config.to_dict() and config["family"] == "dcgan"
    assert state.keys() == G.state_dict().keys() and all(torch.equal(state[k], v) for k, v in G.state_dict().items())
    assert metadata["format"] == EXPORT_FORMAT and metadata["gankit_version"] == __version__
    assert metadata["ema"] == "true" and json.loads(metadata["config"]) == config
    save_generator_export({"w": torch.zeros(1)}, {"family": "dcgan"}, tmp_path / "h.safetensors", note="n")
    assert read_generator_export(tmp_path / "h.safetensors")[2]["note"] == "n"
    save_safetensors(tmp_path / "plain.safetensors", {"w": torch.zeros(1)}, {"format": "pt"})
    with pytest.raises(UserError, match="plain.safetensors has no gankit generator config in its metadata"):
        read_generator_export(tmp_path / "plain.safetensors")


@pytest.mark.parametrize(
    ("config", "message"),
    [("{'family': 'dcgan'}", r"its config metadata is not valid JSON \(Expecting property name"),
     ("", "its config metadata is not valid JSON"),
     ("[1, 2]", "its config metadata is a JSON list, not the model config"),
     ('"dcgan"', "its config metadata is a JSON str, not the model config")],
)  # fmt: skip
def test_an_export_whose_config_is_not_a_json_object_is_a_damaged_file(config, message, tmp_path):
    path = save_safetensors(tmp_path / "g.safetensors", {"w": torch.zeros(1)}, {"format": EXPORT_FORMAT,
                                                                                "config": config})
    with pytest.raises(DamagedFile, match=message) as info:
        read_generator_export(path)
    assert "\n" not in str(info.value) and str(info.value).endswith("export it again with gankit export")


# ------------------------------------------------------------------------------------------ checkpoints


def test_a_checkpoint_is_stamped_and_loads_back_plain_data(tmp_path):
    state = {"step": 7, "G": {"w": torch.randn(3)}, "rng": torch.ByteTensor([1, 2]), "config": {"a": [1, "b"]}}
    path = save_checkpoint(state, tmp_path / "c" / "x.pt")
    loaded = load_checkpoint(path)
    assert (loaded["format"], loaded["format_version"], loaded["gankit_version"]) == (
        CHECKPOINT_FORMAT, CHECKPOINT_VERSION, __version__)  # fmt: skip
    assert loaded["step"] == 7 and loaded["config"] == {"a": [1, "b"]}
    assert torch.equal(loaded["G"]["w"], state["G"]["w"]) and torch.equal(loaded["rng"], state["rng"])


def test_malicious_checkpoint_payload_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "gankit-checkpoint", "format_version": 1, "G": Payload()}, evil)
    with pytest.raises(UserError, match="refused for safety"):
        load_checkpoint(evil)
    assert main(["sample", "--checkpoint", str(evil), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "refused for safety" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run = prepare_run_dir(tmp_path_factory.mktemp("rel") / "run")
    Trainer(trainer_run(steps=2, checkpoint_every=2), run, progress=False).fit()
    return run


def test_missing_truncated_corrupt_foreign_and_newer_checkpoints(small_run, tmp_path):
    good = (small_run / "checkpoints/last.pt").read_bytes()
    cases = {
        "missing.pt": (None, "does not exist"),
        "truncated.pt": (good[: len(good) // 2], "truncated or corrupt"),
        "corrupt.pt": (b"\x00garbage" * 100, "truncated or corrupt"),
        "empty.pt": (b"", "truncated or corrupt"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(UserError, match=message):
            load_checkpoint(path)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(UserError, match="not a gankit checkpoint"):
        load_checkpoint(foreign)
    state = load_checkpoint(small_run / "checkpoints/last.pt")
    state["format_version"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(state, newer)
    with pytest.raises(UserError, match="format 99, newer than this gankit reads"):
        load_checkpoint(newer)


def test_damaged_checkpoints_are_damaged_files(small_run, tmp_path):
    """Truncated and corrupt files are :class:`DamagedFile` (a cache rebuilds those); other refusals are not."""
    good = (small_run / "checkpoints/last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[:-100])
    with pytest.raises(DamagedFile, match=r"cut.pt is truncated or corrupt \(.*\); use another checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(UserError) as info:
        load_checkpoint(tmp_path / "none.pt")
    assert not isinstance(info.value, DamagedFile)
    missing = str(tmp_path / "none.pt")
    assert str(info.value) == f"checkpoint {missing!r} does not exist; give a run folder or a .pt file"


# ------------------------------------------------------------------------------------------ run folders


def test_run_dir_names_every_file_of_a_run_folder(tmp_path):
    run = RunDir(tmp_path / "run")
    root = tmp_path / "run"
    assert run.root == root and RunDir(str(root)) == run
    assert (run.config, run.checkpoints, run.samples) == (root / "config.yaml", root / "checkpoints", root / "samples")
    assert run.last_checkpoint == root / "checkpoints" / "last.pt"
    assert run.best_checkpoint == root / "checkpoints" / "best.pt"
    assert run.best_json == root / "checkpoints" / "best.json"
    assert run.step_checkpoint(12) == root / "checkpoints" / "step_0000012.pt"
    assert run.step_checkpoint(12_345_678) == root / "checkpoints" / "step_12345678.pt"
    assert run.sample_grid(300) == root / "samples" / "step_0000300.png"
    assert (run.metrics, run.loss_plot, run.generator) == (root / "metrics.csv", root / "loss.png",
                                                           root / "generator.safetensors")  # fmt: skip
    assert (run.tensorboard, run.classes, run.resume_history, run.lock) == (
        root / "tensorboard", root / "classes.json", root / "resume_history.json", root / ".gankit.lock")  # fmt: skip
    assert run.written_folders() == (root, root / "checkpoints", root / "samples")
    assert run.job == root / ".gankit.job"
    assert set(RunDir.ARTEFACTS) == {"config.yaml", "checkpoints", "samples", "metrics.csv", "loss.png",
                                     "generator.safetensors", "tensorboard", "classes.json", "resume_history.json",
                                     ".gankit.job"}
    assert RunDir.LOCK not in RunDir.ARTEFACTS  # --overwrite never deletes a lock others may hold


def test_run_dir_lists_step_checkpoints_oldest_first_and_nothing_else(tmp_path):
    run = RunDir(tmp_path)
    assert run.step_checkpoints() == []
    run.checkpoints.mkdir()
    for name in ("step_0000010.pt", "step_0000002.pt", "step_12345678.pt", "step_2.pt", "step_0000003.pt.bak",
                 "last.pt", "step_abcdefg.pt", ".step_0000004.pt.abcdefgh.tmp"):
        (run.checkpoints / name).write_bytes(b"")
    assert [p.name for p in run.step_checkpoints()] == ["step_0000002.pt", "step_0000010.pt", "step_12345678.pt"]


def test_run_dir_knows_a_run_and_where_its_generator_is(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.is_run() and run.generator_source() is None
    run.root.mkdir()
    (run.root / "notes.txt").write_text("mine")
    assert not run.is_run()
    run.generator.write_bytes(b"export")
    assert run.generator_source() == run.generator and not run.is_run()  # an export alone is no run to resume
    run.checkpoints.mkdir()
    assert run.is_run() and run.generator_source() == run.generator
    run.last_checkpoint.write_bytes(b"ckpt")
    assert run.generator_source() == run.last_checkpoint  # the full state first
    only_config = RunDir(tmp_path / "other")
    only_config.root.mkdir()
    only_config.config.write_text("x: 1")
    assert only_config.is_run() and only_config.generator_source() is None
