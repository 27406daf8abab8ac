"""Run configuration (``gankit.config``) and the checker of config values (``gankit.errors``): the presets, YAML as
gankit reads it, ``--set`` assignments, the flags of ``gankit train``, the order in which they combine, the type
of every value (from the dataclass annotations) and the range of each number, each mistake a one-line error that
names the key and leaves nothing on disk."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import subprocess
import sys

import pytest
import torch
import yaml

from gankit.apps.presets import first_sentence, preset_table
from gankit.cli import build_parser, main
from gankit.config import (
    SEED_LIMIT,
    TRAIN_FLAGS,
    DataConfig,
    RunConfig,
    TrainingConfig,
    apply_set,
    deep_merge,
    flag_overrides,
    load_preset,
    load_yaml_file,
    parse_assignment,
    preset_descriptions,
    preset_names,
    resolve_config,
    yaml_load,
)
from gankit.errors import UserError, build_section, check_field_types, check_number
from gankit.models import FAMILIES, SAGANConfig, build_discriminator, build_generator
from tests.data_writers import snapshot
from tests.tiny import trainer_run

# The presets of the SN-GAN and DCGAN families: each is built and run once on a batch of 2.
SNGAN_DCGAN_PRESETS = ["dcgan-digits", "sngan-cifar10", "sngan-cifar10-proj", "sngan-cifar10-resnet", "sngan-mnist"]


# ----------------------------------------------------------------------------------------------- presets


def test_preset_names_are_the_shipped_yaml_files_sorted():
    names = preset_names()
    assert names == sorted(names) and len(names) == len(set(names))
    assert {"sagan-digits", "sagan-celeba64", "pgan-digits", "pgan-celebahq", *SNGAN_DCGAN_PRESETS} <= set(names)
    data = load_preset("sagan-digits")
    assert data["preset"] == "sagan-digits" and data["model"]["family"] == "sagan"
    assert load_preset("sagan-digits") is not data  # a fresh dict each time: callers merge into it


def test_an_unknown_preset_names_the_closest_and_lists_them_all():
    with pytest.raises(UserError) as info:
        load_preset("sagan-digit")
    message = str(info.value)
    assert message.startswith("unknown preset 'sagan-digit' (did you mean 'sagan-digits'?); presets: ")
    assert all(name in message for name in preset_names())


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_resolves_has_a_description_and_round_trips_through_its_yaml(preset):
    cfg = resolve_config(preset)
    assert cfg.preset == preset and cfg.description.strip() == preset_descriptions()[preset] != ""
    assert RunConfig.from_dict(yaml_load(cfg.to_yaml())) == cfg


@pytest.mark.parametrize("preset", SNGAN_DCGAN_PRESETS)
def test_every_sngan_and_dcgan_preset_resolves_and_builds(preset):
    assert preset in preset_names() and preset_descriptions()[preset]
    cfg = resolve_config(preset)
    assert cfg.preset == preset
    with torch.no_grad():
        G, D = build_generator(cfg.model).eval(), build_discriminator(cfg.model).eval()
        y = torch.tensor([3, 1]) if cfg.model.num_classes else None
        x = G(torch.randn(2, G.z_dim), y)
        assert x.shape == (2, cfg.model.channels, cfg.model.image_size, cfg.model.image_size)
        assert D(x, y).shape == (2,)


def test_preset_training_settings():
    mnist = resolve_config("sngan-mnist", overrides={"data": {"path": "MNIST_DIR"}})
    t = mnist.training
    assert (t.loss, t.g_lr, t.d_lr, t.g_betas, t.d_betas, t.batch_size) == ("ns", 2e-4, 2e-4, (0.5, 0.999),
                                                                             (0.5, 0.999), 128)  # fmt: skip
    assert (mnist.data.dataset, mnist.data.path) == ("mnist", "MNIST_DIR")
    for name in ("sngan-cifar10", "sngan-cifar10-resnet", "sngan-cifar10-proj"):
        cfg = resolve_config(name)
        t = cfg.training
        assert (t.loss, t.g_lr, t.d_betas, t.n_critic, cfg.data.dataset) == ("hinge", 2e-4, (0.0, 0.9), 5, "cifar10")
        assert cfg.model.d_spectral_norm and not cfg.model.g_spectral_norm
    dc = resolve_config("dcgan-digits")
    assert dc.model.family == "dcgan" and not dc.model.d_spectral_norm and not dc.model.g_spectral_norm
    assert (dc.training.loss, dc.training.g_betas, dc.data.dataset) == ("ns", (0.5, 0.999), "digits")


def test_pgan_presets_resolve():
    digits = resolve_config("pgan-digits")
    assert digits.model.image_size == 16 and digits.model.depths == (64, 64, 32)
    assert (digits.training.loss, digits.training.drift, digits.training.g_lr) == ("wgan-gp", 0.001, 1e-3)
    assert digits.training.g_betas == (0.0, 0.99) and digits.training.ema_decay == 0.999
    hq = resolve_config("pgan-celebahq")
    assert hq.model.num_scales == 9 and hq.model.batch_per_scale[-2:] == (12, 8)
    assert hq.training.steps == sum(hq.model.steps_per_scale) == 920_000


def test_presets_command_lists_every_preset_with_its_description(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert sorted(lines) == preset_names()
    for preset in SNGAN_DCGAN_PRESETS:
        assert preset in lines and len(lines[preset]) > len(preset) + 10


def test_presets_show_whole_first_sentences_never_a_cut_word(capsys):
    descriptions = preset_descriptions()
    assert main(["presets"]) == 0  # not a terminal: one line per preset
    rows = {line.split()[0]: line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines()}
    for name, text in descriptions.items():
        flat = " ".join(text.split())
        assert flat.startswith(rows[name]) and flat[len(rows[name])] in ".!?", (name, rows[name])
    # "i.e." does not end a sentence
    assert rows["sagan-folder64-small"].endswith("i.e. when samples first improve and then degrade or repeat "
                                                 "training images; for 30k+ images use sagan-celeba64")
    assert first_sentence("Use it e.g. When small. Then more.") == "Use it e.g. When small"
    assert first_sentence("One line 2.5 wide. Two.") == "One line 2.5 wide"
    wrapped = preset_table(width=72).splitlines()
    assert max(len(line) for line in wrapped) <= 72 and len(wrapped) > len(descriptions)
    width = max(map(len, descriptions)) + 2
    joined: dict[str, str] = {}
    for line in wrapped:
        if line[:width].strip():
            name = line[:width].strip()
            joined[name] = line[width:]
        else:
            joined[name] += " " + line[width:]  # a continuation, under the description column
    assert joined == rows


def test_print_config_and_presets(capsys):
    assert main(["train", "--preset", "sagan-digits", "--steps", "7", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "steps: 7" in out and "family: sagan" in out
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "sagan-digits" in out and "sagan-celeba64" in out


# ---------------------------------------------------------------------------------------------- YAML


@pytest.mark.parametrize(
    ("text", "value"),
    [("4e-4", 4e-4), ("1e3", 1000.0), ("2.5", 2.5), ("3", 3), ("true", True), ("False", False), ("off", "off"),
     ("yes", "yes"), ("no", "no"), ("on", "on"), ("~", None), ("null", None), ("[8, 16]", [8, 16]), ("abc", "abc")],
)  # fmt: skip
def test_yaml_is_read_as_yaml_1_2(text, value):
    """Exponent floats are numbers (PyYAML's YAML 1.1 reads ``4e-4`` as text); only true / false are booleans
    (``amp: off`` stays the text ``off``)."""
    got = yaml_load(text)
    assert got == value and type(got) is type(value)


def test_yaml_files_missing_not_a_mapping_empty_or_invalid_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="config file '.*nope.yaml' does not exist; check the path given to --config"):
        load_yaml_file(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match=r"list.yaml: expected a mapping \(model:, data:, training:\), got list"):
        load_yaml_file(tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml_file(tmp_path / "empty.yaml") == {}
    (tmp_path / "bad.yaml").write_text("training:\n  steps: 3\n  g_lr: [1,\n")
    with pytest.raises(UserError, match="bad.yaml: invalid YAML at line 4, column 1: .*; fix the file and retry"):
        load_yaml_file(tmp_path / "bad.yaml")


def test_yaml_in_utf16_with_a_byte_order_mark_or_utf8_with_one_is_read(tmp_path):
    text = "training:\n  steps: 3\n  description: café\n"
    for name, data in [("utf16.yaml", text.encode("utf-16")), ("utf16be.yaml", b"\xfe\xff" + text.encode("utf-16-be")),
                       ("bom8.yaml", b"\xef\xbb\xbf" + text.encode())]:
        (tmp_path / name).write_bytes(data)
        assert load_yaml_file(tmp_path / name) == {"training": {"steps": 3, "description": "café"}}, name


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"training:\n  steps: 3\n  x: \xe9\n", r"bad.yaml: not UTF-8 text \(an undecodable byte at offset 26\); give "
      "--config a YAML file saved as UTF-8"),
     ("training:\n  steps: 3\n".encode("utf-16-le"), r"bad.yaml: not a text file \(it holds NUL bytes: binary, or "
      r"UTF-16 without a byte-order mark\); give --config a YAML file saved as UTF-8"),
     (bytes(range(256)) * 4, "bad.yaml: not UTF-8 text"),
     (b"\xff\xfe" + b"x", "bad.yaml: not UTF-16 text")],  # a UTF-16 mark on a truncated file
    ids=["latin-1", "utf-16-no-bom", "binary", "truncated-utf-16"],
)  # fmt: skip
def test_yaml_that_is_not_text_is_one_line(content, message, tmp_path):
    (tmp_path / "bad.yaml").write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_yaml_file(tmp_path / "bad.yaml")


def test_a_config_that_is_a_folder_is_not_reported_missing(tmp_path):
    (tmp_path / "configs").mkdir()
    with pytest.raises(UserError) as info:
        load_yaml_file(tmp_path / "configs")
    assert str(info.value) == f"config file {str(tmp_path / 'configs')!r} is a folder; give the YAML file inside it " \
                              "to --config"


@pytest.mark.parametrize("kind", ["utf16-no-bom", "binary", "folder"])
def test_train_with_an_unreadable_config_as_a_user_runs_it(kind, tmp_path):
    target = tmp_path / "cfg.yaml"
    if kind == "folder":
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    else:
        target.write_bytes("training:\n  steps: 3\n".encode("utf-16-le") if kind == "utf16-no-bom" else
                           bytes(range(256)))
    before = snapshot(tmp_path)
    result = subprocess.run([sys.executable, "-m", "gankit", "train", "--config", "cfg.yaml", "--out", "r"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    err = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(err) == 1 and err[0].startswith("gankit: error: "), result.stderr
    assert {"utf16-no-bom": "NUL bytes", "binary": "not UTF-8 text", "folder": "is a folder"}[kind] in err[0]
    assert snapshot(tmp_path) == before


def test_invalid_yaml_names_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  steps: 3\n  g_lr: [1,\n")
    assert main(["train", "--preset", "sagan-digits", "--config", str(bad), "--print-config"]) == 2
    assert "invalid YAML at line" in capsys.readouterr().err


def test_deep_merge_merges_sections_and_copies():
    base = {"model": {"z_dim": 8, "sizes": [8]}, "training": {"steps": 1}}
    over = {"model": {"z_dim": 16}, "data": {"path": "x"}}
    merged = deep_merge(base, over)
    assert merged == {"model": {"z_dim": 16, "sizes": [8]}, "training": {"steps": 1}, "data": {"path": "x"}}
    assert base == {"model": {"z_dim": 8, "sizes": [8]}, "training": {"steps": 1}}
    merged["model"]["sizes"].append(16)
    merged["data"]["path"] = "y"
    assert base["model"]["sizes"] == [8] and over["data"]["path"] == "x"
    assert deep_merge({"model": {"z_dim": 8}}, {"model": None}) == {"model": None}  # a non-mapping replaces


# ------------------------------------------------------------------------------------------------ --set


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("training.g_lr=2e-4", ("training.g_lr", 2e-4)),
        (" training.steps = 10", ("training.steps", 10)),
        ("model.g_attention_resolutions=[8, 16]", ("model.g_attention_resolutions", [8, 16])),
        ("training.amp=off", ("training.amp", "off")),
        ("training.tensorboard=false", ("training.tensorboard", False)),
        ("training.eval_every=", ("training.eval_every", None)),
        ("training.eval_every=null", ("training.eval_every", None)),
        ("training.ema_decay=abc", ("training.ema_decay", "abc")),
        ("data.path=runs/a=b", ("data.path", "runs/a=b")),
        ("training.augment_policy=[color,", ("training.augment_policy", "[color,")),  # not YAML: kept as text
        ("g_lr=1e-3", ("g_lr", 1e-3)),
    ],
)
def test_parse_assignment_reads_the_value_as_yaml(assignment, expected):
    key, value = parse_assignment(assignment)
    assert (key, value) == expected and type(value) is type(expected[1])


def test_parse_assignment_keeps_nan_and_refuses_a_missing_equals_sign():
    key, value = parse_assignment("training.g_lr=.nan")
    assert key == "training.g_lr" and isinstance(value, float) and math.isnan(value)
    with pytest.raises(UserError) as info:
        parse_assignment("training.g_lr")
    assert str(info.value) == "--set 'training.g_lr': expected key=value, e.g. --set training.g_lr=2e-4"


def test_apply_set_changes_a_copy_and_finds_a_bare_key_by_its_section():
    data = load_preset("sagan-digits")
    before = copy.deepcopy(data)
    out = apply_set(data, "training.g_lr=2e-4")
    assert out["training"]["g_lr"] == 2e-4 and data == before
    assert apply_set(data, "d_lr=1e-3")["training"]["d_lr"] == 1e-3
    assert apply_set(data, "g_conv_dim=4")["model"]["g_conv_dim"] == 4  # a field of the preset's family only
    assert apply_set(data, "max_images=50")["data"]["max_images"] == 50
    assert apply_set({}, "training.steps=3") == {"training": {"steps": 3}}
    assert apply_set(data, "training.stepz=3")["training"]["stepz"] == 3  # refused when the config is built


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("nonsense=1", "--set nonsense: give its section, e.g. --set training.nonsense=... (model, data or training)"),
        ("training.steps.x=1", "--set training.steps.x: 'steps' is not a section"),
        ("training.g_lr", "--set 'training.g_lr': expected key=value"),
    ],
)
def test_apply_set_refusals(assignment, message):
    with pytest.raises(UserError) as info:
        apply_set(load_preset("sagan-digits"), assignment)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "sagan-digit"], "unknown preset 'sagan-digit' (did you mean 'sagan-digits'?)"),
        (["--preset", "sagan-digits", "--set", "training.g_lrr=1"], "did you mean 'g_lr'?"),
        (["--preset", "sagan-digits", "--set", "training.d_lr=-1"], "training.d_lr must be a positive number"),
        (["--preset", "sagan-digits", "--set", "model.image_size=20"], "power of two"),
        (["--preset", "sagan-digits", "--set", "model.g_attention_resolutions=[32]"], "feature maps [4, 8, 16]"),
    ],
)
def test_config_errors(args, message, capsys, tmp_path):
    code = main(["train", "--out", str(tmp_path / "r"), "--steps", "1", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------- flags of train


def _train_options() -> dict[str, str]:
    """``gankit train``'s option strings -> their argparse destinations."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return {option: action.dest for action in sub.choices["train"]._actions for option in action.option_strings}


def test_every_train_flag_is_an_option_of_train_and_sets_a_config_key():
    options = _train_options()
    fields = {"training": {f.name for f in dataclasses.fields(TrainingConfig)},
              "data": {f.name for f in dataclasses.fields(DataConfig)}}  # fmt: skip
    for name, (flag, key) in TRAIN_FLAGS.items():
        assert options.get(flag) == name, flag
        section, field = key.split(".")
        assert field in fields[section], key


def test_flag_overrides_sets_only_the_flags_given():
    assert flag_overrides({}) == {"training": {}, "data": {}}
    given = {"steps": 10, "device": "cpu", "seed": None, "batch_size": 4, "checkpoint_every": 2, "strict": None}
    assert flag_overrides(given) == {
        "training": {"steps": 10, "device": "cpu", "batch_size": 4, "checkpoint_every": 2}, "data": {}
    }
    assert flag_overrides({"data": "imgs"}) == {"training": {}, "data": {"path": "imgs", "dataset": "auto"}}
    assert flag_overrides({"data": "imgs", "dataset": "mnist", "labels": "none", "strict": True}) == {
        "training": {}, "data": {"path": "imgs", "dataset": "mnist", "labels": "none", "strict": True}
    }
    assert flag_overrides({"dataset": "digits"}) == {"training": {}, "data": {"dataset": "digits"}}


def test_every_train_flag_reaches_its_config_key(capsys):
    argv = ["train", "--preset", "sagan-digits", "--steps", "7", "--batch-size", "5", "--seed", "3",
            "--checkpoint-every", "2", "--device", "cpu", "--data", "somewhere", "--dataset", "folder",
            "--labels", "none", "--strict", "--print-config"]  # fmt: skip
    assert main(argv) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = {"steps": 7, "batch_size": 5, "seed": 3, "checkpoint_every": 2, "device": "cpu", "data": "somewhere",
                "dataset": "folder", "labels": "none", "strict": True}  # fmt: skip
    assert set(expected) == set(TRAIN_FLAGS)
    for name, (_, key) in TRAIN_FLAGS.items():
        section, field = key.split(".")
        assert printed[section][field] == expected[name], key


# ------------------------------------------------------------------------------------ combining sources


def test_later_sources_win_preset_file_flags_then_set(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("training:\n  steps: 5\n  g_lr: 1.0e-3\nmodel:\n  z_dim: 32\n")
    cfg = resolve_config("sagan-digits", str(config), {"training": {"steps": 6}}, ["training.steps=7"])
    assert (cfg.training.steps, cfg.training.g_lr, cfg.model.z_dim, cfg.preset) == (7, 1e-3, 32, "sagan-digits")
    assert cfg.training.d_lr == resolve_config("sagan-digits").training.d_lr  # the rest from the preset
    whole = tmp_path / "whole.yaml"
    whole.write_text(resolve_config("dcgan-digits").to_yaml())
    assert resolve_config(config_file=str(whole)) == resolve_config("dcgan-digits")
    with pytest.raises(UserError, match=r"give --preset NAME or --config FILE.yaml \(gankit presets lists"):
        resolve_config()


def test_run_config_sections_are_checked():
    model = {"family": "dcgan"}
    with pytest.raises(UserError) as info:
        RunConfig.from_dict({"model": model, "trainig": {}})
    assert str(info.value) == ("unknown config section 'trainig' (did you mean 'training'?); sections are model, "
                               "data, training")  # fmt: skip
    with pytest.raises(UserError, match="the config has no 'model' section; start from a preset"):
        RunConfig.from_dict({"training": {}})
    with pytest.raises(UserError, match="model.family is missing; set it to one of: sagan, pgan, sngan, dcgan"):
        RunConfig.from_dict({"model": {"z_dim": 8}})
    with pytest.raises(UserError, match=r"data.max_images \(10\) is below training.batch_size \(64\)"):
        RunConfig.from_dict({"model": model, "data": {"max_images": 10}})
    with pytest.raises(UserError, match="config section 'training' must be a mapping of key: value"):
        RunConfig.from_dict({"model": model, "training": [1, 2]})
    cfg = RunConfig.from_dict({"model": model, "training": None, "data": {}})  # empty sections: the defaults
    assert cfg.training == TrainingConfig() and cfg.data == DataConfig() and cfg.preset is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dataset": "imagenet"}, "data.dataset 'imagenet' is unknown; choose one of: auto, folder, mnist"),
        ({"dataset": "minst"}, "data.dataset 'minst' is unknown (did you mean 'mnist'?)"),
        ({"split": "val"}, "data.split 'val' is not one of train, test, all"),
        ({"labels": "folders"}, "--labels 'folders' is unknown; use subdirs (one sub-folder per class) or none"),
        ({"num_workers": -1}, "data.num_workers must be an integer >= 0, got -1 (0: decode in the training process)"),
        ({"max_images": 0}, "data.max_images must be an integer >= 1, got 0 (or null: all images)"),
        ({"dataset": "digits", "path": "x"}, "the built-in digits dataset takes no --data path"),
        ({"dataset": "mnist", "labels": "subdirs"}, "--labels subdirs is for image folders; mnist data"),
    ],
)
def test_data_settings_are_checked(data, message):
    with pytest.raises(UserError) as info:
        resolve_config("sagan-digits", overrides={"data": data})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unknown_lr_decay_is_a_clear_error():
    with pytest.raises(UserError, match="training.lr_decay must be one of constant, linear"):
        trainer_run(lr_decay="cosine")


def test_eval_config_validation():
    base = {"model": {"z_dim": 16}}
    for bad in ({"eval_every": -1}, {"eval_num": 1}, {"eval_every": 2.5}):
        with pytest.raises(UserError, match="training.eval_"):
            resolve_config("sagan-digits", overrides={**copy.deepcopy(base), "training": bad})
    cfg = resolve_config("sagan-digits", overrides={"training": {"eval_every": 0}})
    assert cfg.training.eval_every == 0 and cfg.training.eval_features == "auto"


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"steps": 0}, "training.steps must be an integer >= 1, got 0"),
        ({"keep_checkpoints": -1}, "training.keep_checkpoints must be an integer >= 0, got -1"),
        ({"seed": -1}, "training.seed must be an integer in [0, 9.22337e+18), got -1"),
        ({"seed": SEED_LIMIT}, f"training.seed must be an integer in [0, 9.22337e+18), got {SEED_LIMIT}"),
        ({"g_lr": 0}, "training.g_lr must be a positive number, got 0"),
        ({"g_betas": [0.5, 1.0]}, "training.g_betas must be two numbers in [0, 1), got [0.5, 1.0]"),
        ({"ema_decay": 1}, "training.ema_decay must be a number in [0, 1), got 1"),
        ({"loss": "hinj"}, "training.loss 'hinj' is unknown (did you mean 'hinge'?); choose one of: "),
        ({"gp_weight": -1}, "training.gp_weight must be a number >= 0, got -1"),
        ({"amp": "fp8"}, "training.amp must be auto, bf16, fp16 or off, got 'fp8'"),
        ({"nan_lr_factor": 0}, "training.nan_lr_factor must be a number in (0, 1], got 0"),
        ({"drift": -0.1}, "training.drift must be a number >= 0, got -0.1"),
    ],
)
def test_training_ranges_are_checked_with_the_key_and_the_range(training, message):
    with pytest.raises(UserError) as info:
        resolve_config("sagan-digits", overrides={"training": training})
    assert str(info.value).startswith(message)


def test_seeds_up_to_the_limit_and_integer_betas_are_accepted():
    cfg = resolve_config("sagan-digits", overrides={"training": {"seed": SEED_LIMIT - 1, "g_betas": [0, 0.99]}})
    assert cfg.training.seed == 2**63 - 1 and cfg.training.g_betas == (0, 0.99)


# ----------------------------------------------------------------------------------- the type checks


# `gankit train --set X` with a value of the wrong type: the exact one-line error
TYPE_ERRORS = [
    ("training.ema_decay=abc", "training.ema_decay must be a number, got 'abc'"),
    ("training.gp_weight=abc", "training.gp_weight must be a number (or null), got 'abc'"),
    ("training.drift=abc", "training.drift must be a number, got 'abc'"),
    ("training.nan_lr_factor=abc", "training.nan_lr_factor must be a number, got 'abc'"),
    ("training.g_betas=0.5", "training.g_betas must be a list of 2 numbers, got 0.5"),
    ("model.g_attention_resolutions=8", "model.g_attention_resolutions must be a list of integers, got 8"),
    ("model.max_channels=abc", "model.max_channels must be an integer (or null), got 'abc'"),
    ("training.seed=abc", "training.seed must be an integer, got 'abc'"),
    ("model.d_leaky_slope=abc", "model.d_leaky_slope must be a number, got 'abc'"),
    ("training.g_lr=.nan", "training.g_lr must be a finite number, got nan"),
]


@pytest.mark.parametrize(("assignment", "message"), TYPE_ERRORS, ids=[a for a, _ in TYPE_ERRORS])
def test_a_value_of_the_wrong_type_is_refused_before_anything_is_written(assignment, message, tmp_path):
    """``python -m gankit train ... --set X`` as a user runs it: exit status 2, one line on stderr naming the key,
    and nothing created (no run folder, no other file under the working folder)."""
    (tmp_path / "notes.txt").write_text("the user's file")
    before = snapshot(tmp_path)
    argv = [sys.executable, "-m", "gankit", "train", "--preset", "sagan-digits", "--out", str(tmp_path / "run"),
            "--no-progress", "--set", assignment]  # fmt: skip
    env = {**os.environ, "GANKIT_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("gankit: error:") and assignment.split("=")[0] in lines[0]
    assert lines[0] == f"gankit: error: {message}"
    assert not (tmp_path / "run").exists()
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TrainingConfig(ema_decay="abc"), "training.ema_decay must be a number, got 'abc'"),
        (lambda: TrainingConfig(steps=10.0), "training.steps must be an integer, got 10.0"),
        (lambda: TrainingConfig(tensorboard="yes"), "training.tensorboard must be true or false, got 'yes'"),
        (lambda: TrainingConfig(d_betas=(0.5, 0.9, 0.1)), "training.d_betas must be a list of 2 numbers, got "
                                                          "(0.5, 0.9, 0.1)"),
        (lambda: DataConfig(num_workers="2"), "data.num_workers must be an integer (or null), got '2'"),
        (lambda: DataConfig(path=3), "data.path must be text (or null), got 3"),
        (lambda: SAGANConfig(max_channels="abc"), "model.max_channels must be an integer (or null), got 'abc'"),
        (lambda: SAGANConfig(z_dim=True), "model.z_dim must be an integer, got True"),
    ],
)
def test_every_config_section_checks_its_types_when_made(make, message):
    with pytest.raises(UserError) as info:
        make()
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("config", "section"),
    [(TrainingConfig, "training"), (DataConfig, "data"), *((f.config, "model") for f in FAMILIES.values())],
    ids=lambda c: getattr(c, "__name__", c),
)
def test_every_annotation_of_every_config_can_be_checked(config, section):
    """A field type the checker does not know would be a TypeError at the first config made; the defaults pass."""
    check_field_types(config(), section)


@dataclasses.dataclass(frozen=True)
class Sample:
    """Every kind of annotation a config section uses (no __post_init__: check_field_types is called by hand)."""

    count: int = 1
    rate: float = 0.5
    flag: bool = True
    name: str = "x"
    limit: int | None = None
    scale: float | None = None
    sizes: tuple[int, ...] = (8,)
    betas: tuple[float, float] = (0.0, 0.9)
    switches: tuple[bool, ...] = ()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("count", "abc", "sample.count must be an integer, got 'abc'"),
        ("count", True, "sample.count must be an integer, got True"),
        ("count", 2.0, "sample.count must be an integer, got 2.0"),
        ("rate", "abc", "sample.rate must be a number, got 'abc'"),
        ("rate", False, "sample.rate must be a number, got False"),
        ("rate", float("nan"), "sample.rate must be a finite number, got nan"),
        ("rate", float("-inf"), "sample.rate must be a finite number, got -inf"),
        ("flag", "yes", "sample.flag must be true or false, got 'yes'"),
        ("flag", 1, "sample.flag must be true or false, got 1"),
        ("name", 3, "sample.name must be text, got 3"),
        ("limit", "x", "sample.limit must be an integer (or null), got 'x'"),
        ("limit", 1.5, "sample.limit must be an integer (or null), got 1.5"),
        ("scale", float("nan"), "sample.scale must be a finite number, got nan"),
        ("scale", "big", "sample.scale must be a number (or null), got 'big'"),
        ("sizes", 8, "sample.sizes must be a list of integers, got 8"),
        ("sizes", "88", "sample.sizes must be a list of integers, got '88'"),
        ("sizes", (8, 4.0), "sample.sizes must be a list of integers, got (8, 4.0)"),
        ("betas", 0.5, "sample.betas must be a list of 2 numbers, got 0.5"),
        ("betas", (0.5,), "sample.betas must be a list of 2 numbers, got (0.5,)"),
        ("betas", [0.5, "a"], "sample.betas must be a list of 2 numbers, got [0.5, 'a']"),
        ("betas", [0.5, float("nan")], "sample.betas must be a list of 2 numbers, got [0.5, nan]"),
        ("switches", [True, 1], "sample.switches must be a list of booleans, got [True, 1]"),
    ],
)
def test_check_field_types_names_the_key_the_type_and_the_value(field, value, message):
    with pytest.raises(UserError) as info:
        check_field_types(Sample(**{field: value}), "sample")
    assert str(info.value) == message


@pytest.mark.parametrize(
    "changes",
    [{}, {"count": 3}, {"rate": 1}, {"rate": -2.5}, {"limit": 4}, {"scale": 0}, {"sizes": [8, 16]}, {"sizes": ()},
     {"betas": [0, 0.9]}, {"betas": (0.5, 0.999)}, {"switches": [True, False]}, {"name": ""}],
)  # fmt: skip
def test_check_field_types_accepts_every_value_of_the_annotated_type(changes):
    check_field_types(Sample(**changes), "sample")


def test_check_field_types_reports_the_first_wrong_field_and_refuses_annotations_it_cannot_check():
    with pytest.raises(UserError, match="^sample.count must be an integer"):
        check_field_types(Sample(count="a", rate="b"), "sample")

    @dataclasses.dataclass(frozen=True)
    class Raw:
        blob: bytes = b""

    @dataclasses.dataclass(frozen=True)
    class Either:
        value: int | str = 1

    for config in (Raw(), Either()):
        with pytest.raises(TypeError, match="no check for annotation"):
            check_field_types(config, "x")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("training.steps", 0), dict(integer=True, low=1), "training.steps must be an integer >= 1, got 0"),
        (("training.steps", 2.5), dict(integer=True, low=1), "training.steps must be an integer >= 1, got 2.5"),
        (("training.steps", True), dict(integer=True, low=1), "training.steps must be an integer >= 1, got True"),
        (("training.g_lr", 0), dict(low=0, low_open=True), "training.g_lr must be a positive number, got 0"),
        (("training.g_lr", -1e-4), dict(low=0, low_open=True), "training.g_lr must be a positive number, got -0.0001"),
        (("x", 0), dict(integer=True, low=0, low_open=True), "x must be an integer > 0, got 0"),
        (("x", 1), dict(low=0, high=1, high_open=True), "x must be a number in [0, 1), got 1"),
        (("x", 0), dict(low=0, high=1, low_open=True), "x must be a number in (0, 1], got 0"),
        (("x", 1.5), dict(low=0.5, high=1.25), "x must be a number in [0.5, 1.25], got 1.5"),
        (("x", 5), dict(high=3), "x must be a number <= 3, got 5"),
        (("x", 3), dict(high=3, high_open=True), "x must be a number < 3, got 3"),
        (("x", float("nan")), dict(low=0), "x must be a number >= 0, got nan"),
        (("x", float("inf")), {}, "x must be a number, got inf"),
        (("x", "abc"), {}, "x must be a number, got 'abc'"),
        (("x", None), dict(integer=True), "x must be an integer, got None"),
        (("training.ada_target", 0), dict(low=0, high=1, low_open=True, high_open=True,
                                          hint=" (stylegan2-ada uses 0.6)"),
         "training.ada_target must be a number in (0, 1), got 0 (stylegan2-ada uses 0.6)"),
        (("training.seed", -1), dict(integer=True, low=0, high=SEED_LIMIT, high_open=True),
         "training.seed must be an integer in [0, 9.22337e+18), got -1"),
    ],
)  # fmt: skip
def test_check_number_names_the_key_the_range_and_the_value(args, kwargs, message):
    with pytest.raises(UserError) as info:
        check_number(*args, **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "kwargs"),
    [(1, dict(low=0)), (0, dict(low=0)), (1, dict(integer=True, low=1, high=1)), (0.999, dict(low=0, high=1,
     high_open=True)), (2, {}), (-3.5, dict(high=0)), (1, dict(low=0, low_open=True)), (SEED_LIMIT - 1,
     dict(integer=True, low=0, high=SEED_LIMIT, high_open=True))],
)  # fmt: skip
def test_check_number_accepts_the_range_and_its_closed_bounds(value, kwargs):
    assert check_number("x", value, **kwargs) is None


def test_build_section_makes_the_dataclass_and_refuses_unknown_keys():
    assert build_section(Sample, {"count": 2, "sizes": [8, 16]}, "sample") == Sample(count=2, sizes=(8, 16))
    with pytest.raises(UserError) as info:
        build_section(Sample, {"cont": 1}, "sample", unknown_hint=" for family 'x'")
    assert str(info.value) == ("unknown config key sample.cont (did you mean 'count'?) for family 'x'; valid keys: "
                               "count, rate, flag, name, limit, scale, sizes, betas, switches")  # fmt: skip
    with pytest.raises(UserError, match="config section 'sample' must be a mapping of key: value"):
        build_section(Sample, ["count"], "sample")
    with pytest.raises(UserError, match=r"^training.g_betas must be a list of 2 numbers, got 0.5$"):
        build_section(TrainingConfig, {"g_betas": 0.5}, "training")
