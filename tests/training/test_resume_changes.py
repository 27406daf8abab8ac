"""Safe changes on resume: the allow-list, the refusals with reasons, the record in resume_history.json, and a
hand-edited config.yaml refused."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gankit.cli import main
from gankit.errors import UserError
from gankit.io import RunDir, load_checkpoint
from gankit.training import Trainer, prepare_run_dir
from gankit.training.resume import (
    RESUMABLE,
    Change,
    apply_changes,
    check_config_file,
    check_key,
    parse_changes,
    record_changes,
    resume_trainer,
)
from tests.data_writers import snapshot
from tests.tiny import trainer_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run3(tmp_path):
    run = prepare_run_dir(tmp_path / "run")
    Trainer(trainer_run(steps=3), run, progress=False).fit()
    return run


def test_every_resumable_key_is_a_training_key_and_is_accepted():
    for key in RESUMABLE:
        assert check_key(key) == key
    sets = ["training.g_lr=5e-5", "d_lr=1e-4", "training.tensorboard=true", "training.eval_every=null"]
    assert parse_changes(sets, {"steps": 9, "device": None}) == {
        "training.steps": 9, "training.g_lr": 5e-5, "training.d_lr": 1e-4, "training.tensorboard": True,
        "training.eval_every": None,
    }


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("model.g_conv_dim=16", "model.* keys define the network the checkpoint holds"),
        ("data.path=/tmp", "data.* changes the data the sampler position refers to"),
        ("training.loss=wgan-gp", "training.loss changes the objective mid-run"),
        ("training.gp_weight=5", "changes the objective mid-run"),
        ("training.batch_size=4", "training.batch_size changes what one step is"),
        ("training.n_critic=2", "training.n_critic changes what one step is"),
        ("training.seed=3", "made the initial weights and the data order"),
        ("training.g_betas=[0.5, 0.9]", "moments were accumulated with the old betas"),
        ("training.lr_decay=linear", "learning-rate schedule the run has followed"),
        ("training.ema_decay=0.9", "EMA generator was averaged with the old value"),
        ("training.amp=off", "loss-scaler state"),
        ("training.eval_features=inception", "feature network best.pt's FID was measured with"),
        ("training.compile=true", "training.compile is fixed when a run starts"),
        ("training.nan_patience=9", "training.nan_patience is fixed when a run starts"),
        ("training.stepz=9", "unknown config key training.stepz (did you mean 'steps'?)"),
        ("data.pth=x", "unknown config key data.pth"),
        ("preset.name=x", "'preset.name' is not a config key"),
        ("loss=ns", "--set loss cannot change when resuming: training.loss"),
        ("nonsense=1", "--set nonsense: give its section"),
        ("training.g_lr", "expected key=value"),
    ],
)
def test_every_other_key_is_refused_with_its_reason(given, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_changes([given])


def test_apply_changes_fills_defaults_and_records_only_real_changes():
    cfg = trainer_run(steps=3).to_dict()
    del cfg["training"]["eval_num"]  # an older config without the key: its default is the old value
    data, changed = apply_changes(cfg, {"training.steps": 3, "training.eval_num": 500, "training.g_lr": 1e-5})
    assert [(c.key, c.old, c.new) for c in changed] == [("training.eval_num", 2000, 500),
                                                          ("training.g_lr", 4e-4, 1e-5)]
    assert data["training"]["g_lr"] == 1e-5 and data["training"]["steps"] == 3
    with pytest.raises(UserError, match="training.loss cannot change"):
        apply_changes(cfg, {"training.loss": "ns"})  # the library path checks the allow-list too


def test_resume_with_changes_trains_with_them_and_records_them(run3):
    trainer = resume_trainer(run3, progress=False, changes={"training.steps": 5, "training.g_lr": 1e-5,
                                                            "training.checkpoint_every": 1})
    assert trainer.gan.opt_g.param_groups[0]["lr"] == 1e-5 and trainer.gan.opt_d.param_groups[0]["lr"] == 4e-4
    trainer.fit()
    assert (run3 / "checkpoints/step_0000004.pt").is_file()  # checkpoint_every 1 from step 3 on
    saved = yaml.safe_load((run3 / "config.yaml").read_text())["training"]
    assert (saved["g_lr"], saved["steps"], saved["checkpoint_every"]) == (1e-5, 5, 1)
    assert load_checkpoint(run3 / "checkpoints/last.pt")["config"]["training"]["g_lr"] == 1e-5
    resume_trainer(run3, progress=False, steps=6).fit()
    history = json.loads((run3 / "resume_history.json").read_text())
    assert [(h["step"], h["key"], h["old"], h["new"]) for h in history] == [
        (3, "training.steps", 3, 5), (3, "training.g_lr", 4e-4, 1e-5), (3, "training.checkpoint_every", 3, 1),
        (5, "training.steps", 5, 6),
    ]
    assert all(h["time"].endswith("+00:00") for h in history)


def test_cli_resume_accepts_set_and_flags_and_refuses_the_rest_before_writing(run3, capsys):
    before = snapshot(run3)
    refused = [
        (["--set", "training.loss=ns"], "--set training.loss cannot change when resuming"),
        (["--batch-size", "4"], "--batch-size cannot change when resuming"),
        (["--seed", "4"], "--seed cannot change when resuming"),
        (["--data", "/tmp"], "--data cannot change when resuming: data.*"),
        (["--strict"], "--strict cannot change when resuming"),
        (["--set", "training.g_lr=-1"], "training.g_lr must be a positive number"),
        (["--set", "training.steps=2"], "already at step 3 of 2"),
        (["--steps", "5", "--device", "tpu"], "--device 'tpu' is not a device name"),
        (["--preset", "sagan-digits"], "drop --preset / --config"),
        (["--out", "x"], "drop --out"),
        (["--overwrite"], "no meaning with --resume"),
        (["--print-config"], "--print-config shows a new run's config"),
    ]
    for extra, message in refused:
        assert main(["train", "--resume", str(run3), "--no-progress", *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (extra, err)
        assert snapshot(run3) == before, extra
    argv = ["train", "--resume", str(run3), "--steps", "4", "--device", "cpu", "--checkpoint-every", "1",
            "--set", "training.d_lr=2e-4", "--no-progress"]
    assert main(argv) == 0
    assert "training.d_lr 0.0004 -> 0.0002" in capsys.readouterr().err
    keys = [h["key"] for h in json.loads((run3 / "resume_history.json").read_text())]
    assert keys == ["training.steps", "training.checkpoint_every", "training.d_lr"]  # --device cpu: no change


def test_resuming_on_another_number_of_processes_is_recorded_and_rescales_the_data_position(run3):
    """A checkpoint written by 2 processes (each had read its shard up to ``index``) resumed by 1: the position
    counts the one process's images (twice the index) and the change of processes is in the history."""
    from gankit.io import RunDir, save_checkpoint

    path = RunDir(run3).last_checkpoint
    state = load_checkpoint(path)
    state["world_size"] = 2
    index = state["data"]["sampler"]["index"]
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "format_version", "gankit_version")}, path)
    trainer = resume_trainer(run3, steps=4, progress=False)
    assert trainer.batches.state_dict()["sampler"]["index"] == index * 2
    history = json.loads((run3 / "resume_history.json").read_text())
    assert [(h["key"], h["old"], h["new"], h["step"]) for h in history] == [
        ("training.steps", 3, 4, 3), ("processes", 2, 1, 3)]


# ------------------------------------------------------------------------------------- a hand-edited config.yaml


def _gankit(*args: str) -> subprocess.CompletedProcess:
    """``python -m gankit ...`` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "gankit", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_cli_resume_refuses_an_edited_config_yaml_and_writes_nothing(run3):
    """An edit of config.yaml was ignored and then overwritten by the resume; now it is refused before anything is
    written, with the key, both values and the way to change a setting (--set)."""
    config = run3 / "config.yaml"
    text = config.read_text()
    for old, new, key, values, how in [
        ("  g_lr: 0.0004\n", "  g_lr: 0.001\n", "training.g_lr", "0.001 there but 0.0004 in",
         "--set training.g_lr=0.001"),
        ("  z_dim: 16\n", "  z_dim: 32\n", "model.z_dim", "32 there but 16 in", "model.z_dim itself cannot change"),
    ]:
        assert old in text
        config.write_text(text.replace(old, new))
        before = snapshot(run3)
        result = _gankit("train", "--resume", str(run3), "--steps", "4", "--no-progress")
        assert result.returncode == 2, result.stderr
        err = result.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("gankit: error: "), err
        assert f"config.yaml was edited: {key} is {values} checkpoints/last.pt (step 3)" in err[0], err[0]
        assert how in err[0], err[0]
        assert "restore config.yaml or delete it" in err[0], err[0]
        assert snapshot(run3) == before, key  # every file as it was, config.yaml with the user's edit included
    assert not (run3 / ".gankit.lock").exists()  # refused before the lock was taken


def test_config_yaml_that_differs_only_in_form_or_is_deleted_lets_the_resume_go_on(run3, capsys):
    config = run3 / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["training"] = dict(reversed(list(data["training"].items())))  # another order, flow style, a comment
    config.write_text("# my notes\n" + yaml.safe_dump(data, default_flow_style=True, sort_keys=True))
    assert main(["train", "--resume", str(run3), "--steps", "4", "--no-progress"]) == 0
    assert "# my notes" not in config.read_text()  # rewritten from the checkpoint, as every resume does
    assert yaml.safe_load(config.read_text()) == load_checkpoint(run3 / "checkpoints/last.pt")["config"]
    config.unlink()  # deleted: the resume writes it again
    assert main(["train", "--resume", str(run3), "--steps", "5", "--no-progress"]) == 0
    assert yaml.safe_load(config.read_text())["training"]["steps"] == 5


def test_a_change_of_a_resume_killed_before_its_first_checkpoint_is_no_edit(run3):
    """A resume with --set writes the change to resume_history.json and config.yaml at once; killed before its first
    checkpoint, last.pt still has the old value. That config.yaml is the resume's, not the user's."""
    config = run3 / "config.yaml"
    record_changes(RunDir(run3), 3, [Change("training.g_lr", 4e-4, 1e-4)])
    config.write_text(config.read_text().replace("  g_lr: 0.0004\n", "  g_lr: 0.0001\n"))
    check_config_file(RunDir(run3), load_checkpoint(run3 / "checkpoints/last.pt"))  # accepted
    config.write_text(config.read_text().replace("  g_lr: 0.0001\n", "  g_lr: 0.0002\n"))  # not what it recorded
    with pytest.raises(UserError, match=re.escape("training.g_lr is 0.0002 there but 0.0004 in")):
        check_config_file(RunDir(run3), load_checkpoint(run3 / "checkpoints/last.pt"))
    config.write_text("model: [unclosed\n")
    with pytest.raises(UserError, match="config.yaml is not a config gankit can read"):
        check_config_file(RunDir(run3), load_checkpoint(run3 / "checkpoints/last.pt"))
