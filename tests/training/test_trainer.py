import copy

import pytest
import torch

from gankit.errors import UserError
from gankit.io import load_checkpoint
from gankit.training import EMA, Trainer, prepare_run_dir
from gankit.training.resume import resume_trainer
from tests.tiny import WIDTH_SETS, trainer_run


@pytest.mark.parametrize("loss", ["hinge", "ns", "wgan-gp"])
def test_one_training_iteration_per_loss_changes_weights(tmp_path, loss):
    cfg = trainer_run(loss=loss, steps=1)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "run"), progress=False)
    g0 = copy.deepcopy(trainer.gan.G.state_dict())
    d0 = copy.deepcopy(trainer.gan.D.state_dict())
    stats = trainer.gan.train_step()
    assert all(torch.isfinite(v) for v in stats.values())
    assert ("gp" in stats) == (loss == "wgan-gp")
    changed = lambda a, b: any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())  # noqa: E731
    assert changed(g0, trainer.gan.G.state_dict()) and changed(d0, trainer.gan.D.state_dict())


def test_ema_update_math():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.9, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, torch.full((1, 2), 0.9))  # 0.1 * 0 + 0.9 * 1
    ema.num_updates = 1000
    assert ema.current_decay() == 0.9
    assert not ema.model.weight.requires_grad and not ema.model.training


def test_fit_writes_run_folder_and_resume_is_bit_exact(tmp_path):
    # 6 steps in one go ...
    one = prepare_run_dir(tmp_path / "one")
    t1 = Trainer(trainer_run(steps=6), one, progress=False)
    t1.fit()
    for name in (
        "config.yaml",
        "metrics.csv",
        "loss.png",
        "generator.safetensors",
        "checkpoints/last.pt",
        "checkpoints/step_0000003.pt",
        "checkpoints/step_0000006.pt",
        "samples/step_0000006.png",
    ):
        assert (one / name).exists(), name
    rows = (one / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,kimg,d_loss,g_loss") and "gamma/G/attention.8" in rows[0]
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4", "6"]
    # ... equals 3 steps, stop, resume to 6
    two = prepare_run_dir(tmp_path / "two")
    Trainer(trainer_run(steps=3), two, progress=False).fit()
    t2 = resume_trainer(two, steps=6, progress=False)
    assert t2.step == 3
    t2.fit()
    for key in ("G", "D", "G_ema"):
        a, b = load_checkpoint(one / "checkpoints/last.pt")[key], load_checkpoint(two / "checkpoints/last.pt")[key]
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (key, k)
    assert [r.split(",")[0] for r in (two / "metrics.csv").read_text().splitlines()[1:]] == ["2", "3", "4", "6"]


def test_checkpoint_holds_full_state_and_prunes(tmp_path):
    run = prepare_run_dir(tmp_path / "run")
    Trainer(trainer_run(steps=9, keep_checkpoints=2), run, progress=False).fit()
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*.pt")) == ["step_0000006.pt", "step_0000009.pt"]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 9 and state["format_version"] == 1
    assert {"G", "D", "G_ema", "opt_g", "opt_d", "rng", "data", "noise_rng", "config"} <= set(state)
    assert state["config"]["preset"] == "sagan-digits"


def test_prepare_run_dir_refuses_existing_run_and_foreign_folders(tmp_path):
    run = prepare_run_dir(tmp_path / "run")
    (run / "config.yaml").write_text("x: 1")
    with pytest.raises(UserError, match="already holds a run"):
        prepare_run_dir(run)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not a gankit run"):
        prepare_run_dir(foreign, overwrite=True)
    assert (foreign / "thesis.tex").read_text() == "precious"
    (run / "notes.txt").write_text("keep")
    prepare_run_dir(run, overwrite=True)
    assert not (run / "config.yaml").exists() and (run / "notes.txt").read_text() == "keep"


def test_new_run_dir_puts_everything_back_when_the_setup_fails(tmp_path):
    from gankit.training import new_run_dir

    # A fresh folder whose setup fails is removed, so the retry is not refused as "already holds a run".
    with pytest.raises(UserError, match="bad data"), new_run_dir(tmp_path / "fresh"):
        raise UserError("bad data")
    assert not (tmp_path / "fresh").exists()
    # An aborted start made by older versions (two empty folders) is no run either.
    (tmp_path / "aborted" / "checkpoints").mkdir(parents=True)
    (tmp_path / "aborted" / "samples").mkdir()
    with new_run_dir(tmp_path / "aborted") as run:
        assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "samples"]

    # --overwrite with a failing setup: the old run comes back byte for byte, no backup folder is left.
    old = prepare_run_dir(tmp_path / "old")
    (old / "config.yaml").write_text("x: 1")
    (old / "checkpoints" / "last.pt").write_bytes(b"weights")
    (old / "notes.txt").write_text("mine")
    with pytest.raises(UserError), new_run_dir(old, overwrite=True) as run:
        assert not (run / "config.yaml").exists() and not any((run / "checkpoints").iterdir())
        (run / "classes.json").write_text("{}")  # half-written new run
        raise UserError("typo in --data")
    assert sorted(p.name for p in old.iterdir()) == ["checkpoints", "config.yaml", "notes.txt", "samples"]
    assert (old / "checkpoints" / "last.pt").read_bytes() == b"weights"
    # ... and a setup that succeeds replaces the run, keeping the user's own files.
    with new_run_dir(old, overwrite=True):
        pass
    assert sorted(p.name for p in old.iterdir()) == ["checkpoints", "notes.txt", "samples"]
    assert not any((old / "checkpoints").iterdir())
    with pytest.raises(UserError, match="already holds a run"), new_run_dir(old):
        pass


def test_cli_train_with_bad_data_and_overwrite_keeps_the_old_run(tmp_path, capsys):
    from gankit.cli import main

    run = tmp_path / "run"
    args = ["train", "--preset", "sagan-digits", "--steps", "1", "--batch-size", "4", "--out", str(run),
            "--no-progress", "--device", "cpu", *WIDTH_SETS]
    assert main(args) == 0
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main([*args, "--overwrite", "--data", str(tmp_path / "typo")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_wrong_num_classes_for_data_is_clear(tmp_path):
    cfg = trainer_run(model={"num_classes": 7})
    with pytest.raises(UserError, match="num_classes is 7 but the data has 10"):
        Trainer(cfg, tmp_path, progress=False)


def test_integer_betas_from_yaml_are_accepted(tmp_path):
    cfg = trainer_run(steps=1, g_betas=[0, 0.99], d_betas=[0, 0.9])
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "run"), progress=False)
    assert trainer.gan.opt_g.param_groups[0]["betas"] == (0.0, 0.99)
    assert all(torch.isfinite(v) for v in trainer.gan.train_step().values())


def test_linear_lr_decay_follows_the_step_and_survives_resume(tmp_path):
    from gankit.training.schedules import lr_decay_factor

    assert lr_decay_factor("constant", 7, 10) == 1.0
    assert [lr_decay_factor("linear", s, 4) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]

    cfg = trainer_run(steps=4, lr_decay="linear", g_lr=1e-3, d_lr=2e-3)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "one"), progress=False)
    seen = []
    for _ in range(4):
        trainer.gan.train_step()  # the rates in force during step s are base * (1 - s / 4)
        seen += [trainer.gan.opt_g.param_groups[0]["lr"], trainer.gan.opt_d.param_groups[0]["lr"]]
    assert seen == pytest.approx([r * f for f in (1.0, 0.75, 0.5, 0.25) for r in (1e-3, 2e-3)])

    # Stopped at step 2 and resumed, the run lands on the same weights as one trained straight through.
    straight = prepare_run_dir(tmp_path / "straight")
    Trainer(cfg, straight, progress=False).fit()
    split = prepare_run_dir(tmp_path / "split")
    first = Trainer(cfg, split, progress=False)
    first.gan.train_step(), first.gan.train_step()
    first.save_checkpoint()
    second = resume_trainer(split, progress=False)
    assert second.step == 2 and second.gan.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5)  # for step 2
    second.fit()
    a, b = load_checkpoint(straight / "checkpoints/last.pt")["G"], load_checkpoint(split / "checkpoints/last.pt")["G"]
    assert all(torch.equal(a[k], b[k]) for k in a)
