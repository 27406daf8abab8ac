"""Sharing on the Hugging Face Hub: pretrained folders (the PyTorchModelHubMixin layout, both ways), the model
card, strict loading, repo ids from a Hub cache laid out as huggingface_hub lays it out (offline), the missing
extra, and ``gankit push`` against huggingface_hub's own ``HfApi`` with its network methods replaced.

No test reaches the network: sockets refuse to connect for the whole module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

import gankit
from gankit.cli import main
from gankit.errors import UserError
from gankit.hub import (
    PretrainedDir,
    is_repo_id,
    load_discriminator,
    model_config_from_pretrained,
    push_to_hub,
    write_pretrained,
)
from gankit.hub.remote import is_hub_source
from gankit.io import load_checkpoint, read_safetensors, save_checkpoint, save_safetensors, write_json
from gankit.models import FAMILIES, build_discriminator, build_generator
from gankit.models.sagan import SAGANGenerator
from gankit.nn import fold_spectral_norm
from gankit.training import Trainer, prepare_run_dir
from tests.tiny import VARIANTS, family_config, grown, labels_for, model_run, seeded_batches

hf = pytest.importorskip("huggingface_hub")
httpx2 = pytest.importorskip("httpx2")  # huggingface_hub's HTTP client: its errors carry a response
from huggingface_hub import HfApi, PyTorchModelHubMixin  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError  # noqa: E402

CARD_KEYS = {"library_name", "pipeline_tag", "tags", "license"}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def _trained(G: torch.nn.Module) -> torch.nn.Module:
    """A few train-mode forwards move BatchNorm statistics and spectral-norm vectors off their initial values."""
    G.train()
    with torch.no_grad():
        for _ in range(2):
            G(torch.randn(4, G.z_dim), labels_for(G.config, 4))
    return G.eval()


def _outputs(G, n: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    z = torch.randn(n, G.z_dim, generator=g)
    with torch.no_grad():
        return G(z, labels_for(G.config, n))


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


# ------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize(("family", "k"), VARIANTS)
def test_save_then_load_gives_identical_outputs(family, k, tmp_path):
    torch.manual_seed(0)
    G = _trained(grown(build_generator(family_config(family, num_classes=k))))
    folder = write_pretrained(G, tmp_path / "plain").root
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    paths = [folder]
    if k:  # the full writer too (its sample grid costs time: once per family)
        before = {key: v.clone() for key, v in G.train().state_dict().items()}
        paths.append(str(gankit.save_pretrained(G, tmp_path / "rich")))
        assert G.training and all(torch.equal(v, G.state_dict()[key]) for key, v in before.items())  # untouched
        assert (tmp_path / "rich" / PretrainedDir.SAMPLES).is_file()
        G.eval()
    for path in paths:
        loaded = gankit.load_generator(path)
        assert type(loaded) is type(G) and loaded.config == G.config and not loaded.training
        torch.testing.assert_close(_outputs(loaded), _outputs(G), rtol=0, atol=0)


def test_pgan_saved_mid_fade_reloads_at_its_scale_and_alpha(tmp_path):
    torch.manual_seed(0)
    G = build_generator(family_config("pgan", image_size=16))
    G.set_scale(1)
    G.set_alpha(0.25)
    loaded = gankit.load_generator(write_pretrained(G.eval(), tmp_path / "g").root)
    assert loaded.scale == 1 and float(loaded.alpha) == 0.25 and loaded.image_size == 8
    torch.testing.assert_close(_outputs(loaded), _outputs(G), rtol=0, atol=0)
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    assert config["output_range"] is None  # PGAN without output_tanh: unbounded, and the card says so
    assert "unbounded" in (tmp_path / "g" / "README.md").read_text()


def test_folded_spectral_norm_round_trips(tmp_path):
    torch.manual_seed(0)
    G = fold_spectral_norm(_trained(build_generator(family_config("sagan", num_classes=3))))
    write_pretrained(G, tmp_path / "g")
    assert json.loads((tmp_path / "g" / "config.json").read_text())["spectral_norm_folded"] is True
    torch.testing.assert_close(_outputs(gankit.load_generator(tmp_path / "g")), _outputs(G), rtol=0, atol=0)


def test_config_json_is_flat_and_complete(tmp_path):
    G = build_generator(family_config("sngan", num_classes=3))
    write_pretrained(G, tmp_path / "g")
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    assert set(config) == set(G.config.to_dict()) | set(PretrainedDir.META_KEYS)
    assert {k: config[k] for k in G.config.to_dict()} == G.config.to_dict()
    assert config["family"] == "sngan" and config["gankit_version"] == gankit.__version__
    assert config["latent"] == "normal" and config["truncation"] is None and config["eval_mode"] is True
    assert config["data_range"] == [-1, 1] and config["output_range"] == [-1, 1]
    assert not any(isinstance(v, dict) for v in config.values())  # flat: the mixin passes each key to __init__
    for family in FAMILIES.values():  # no model field may be mistaken for a sampling key
        assert not {f.name for f in dataclasses.fields(family.config)} & set(PretrainedDir.META_KEYS)


def test_a_non_empty_folder_is_refused_unless_overwrite(tmp_path):
    G = build_generator(family_config("dcgan"))
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not empty; choose a new folder or pass overwrite=True"):
        write_pretrained(G, tmp_path / "g")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["notes.txt"]
    write_pretrained(G, tmp_path / "g", overwrite=True)
    assert (tmp_path / "g" / "notes.txt").read_text() == "mine"  # overwrite replaces gankit's files only
    with pytest.raises(UserError, match="is a file"):
        write_pretrained(G, tmp_path / "g" / "notes.txt")


# ------------------------------------------------------------------------------- PyTorchModelHubMixin


class HubSAGAN(PyTorchModelHubMixin, SAGANGenerator, library_name="gankit"):
    """The mixin over a gankit generator; ``**kwargs`` (the mixin treats a parameter named ``config`` as a dict)."""

    def __init__(self, **kwargs):
        super().__init__(model_config_from_pretrained(kwargs))


def test_mixin_reads_gankit_folders_and_gankit_reads_mixin_folders(tmp_path):
    torch.manual_seed(0)
    G = _trained(build_generator(family_config("sagan", num_classes=3)))
    gankit.save_pretrained(G, tmp_path / "gankit")
    mixin = HubSAGAN.from_pretrained(tmp_path / "gankit", strict=True)
    assert not mixin.training
    torch.testing.assert_close(_outputs(mixin), _outputs(G), rtol=0, atol=0)

    torch.manual_seed(1)
    other = _trained(HubSAGAN(**family_config("sagan", num_classes=3).to_dict()))
    other.save_pretrained(tmp_path / "mixin")  # the mixin's own writer: config.json from the init kwargs
    assert "pytorch_model_hub_mixin" in (tmp_path / "mixin" / "README.md").read_text()
    loaded = gankit.load_generator(tmp_path / "mixin")
    assert type(loaded) is SAGANGenerator and loaded.config == other.config
    torch.testing.assert_close(_outputs(loaded), _outputs(other), rtol=0, atol=0)


# ------------------------------------------------------------------------------------ strict loading


def _edit_weights(folder: Path, change) -> None:
    state, metadata = read_safetensors(folder / "model.safetensors")
    change(state)
    save_safetensors(folder / "model.safetensors", state, metadata)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("to_image.bias"), "tensor 'to_image.bias' is missing"),
        (lambda s: s.update(extra=torch.zeros(2)), "unexpected tensor 'extra'"),
        (lambda s: s.update({"to_image.bias": torch.zeros(3)}), "'to_image.bias' has shape (3,)"),
    ],
)
def test_loading_is_strict_with_one_line_naming_the_tensor(change, message, tmp_path):
    G = build_generator(family_config("dcgan"))
    assert "to_image.bias" in G.state_dict()
    write_pretrained(G, tmp_path / "g")
    _edit_weights(tmp_path / "g", change)
    with pytest.raises(UserError) as info:
        gankit.load_generator(tmp_path / "g")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert "model.safetensors does not match the model" in str(info.value)


def test_a_config_without_family_or_with_an_unknown_key_is_one_line(tmp_path):
    G = build_generator(family_config("dcgan"))
    write_pretrained(G, tmp_path / "g")
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    write_json(tmp_path / "g" / "config.json", {k: v for k, v in config.items() if k != "family"})
    with pytest.raises(UserError, match="has no 'family' \\(one of sagan, pgan, sngan, dcgan, biggan\\)"):
        gankit.load_generator(tmp_path / "g")
    write_json(tmp_path / "g" / "config.json", {**config, "z_dimm": 3})
    with pytest.raises(UserError, match=r"config.json: unknown config key model.z_dimm \(did you mean 'z_dim'\?\)"):
        gankit.load_generator(tmp_path / "g")
    (tmp_path / "g" / "model.safetensors").unlink()
    with pytest.raises(UserError, match="has no model.safetensors"):
        gankit.load_generator(tmp_path / "g")
    with pytest.raises(UserError, match="holds one generator"):
        gankit.load_generator(tmp_path / "g", ema=False)


# ----------------------------------------------------------------------------------------- run folders


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real run folder: a tiny 3-class SAGAN trained 2 steps, with its checkpoint."""
    cfg = model_run(family_config("sagan", num_classes=3), steps=2, preset="sagan-digits",
                    description="A tiny test run.")
    torch.manual_seed(0)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path_factory.mktemp("hub") / "sagan-run"), progress=False,
                      batches=seeded_batches(cfg, 8))
    for _ in range(2):
        trainer.gan.train_step()
    trainer.save_checkpoint()
    return trainer.run.root


def test_a_run_becomes_a_pretrained_folder_with_its_ema_weights_card_and_samples(run, tmp_path):
    folder = gankit.save_pretrained(run, tmp_path / "out", repo_id="user/sagan-tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                       "samples.png"]
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    state, metadata = read_safetensors(folder / "model.safetensors")
    assert metadata == {"format": "pt"} and state.keys() == ckpt["G_ema"].keys()
    assert all(torch.equal(state[k], ckpt["G_ema"][k]) for k in state)
    assert any(not torch.equal(ckpt["G_ema"][k], ckpt["G"][k]) for k in state if state[k].is_floating_point())
    config = json.loads((folder / "config.json").read_text())
    assert config == {**ckpt["config"]["model"], **{k: config[k] for k in PretrainedDir.META_KEYS}}
    card = (folder / "README.md").read_text()
    front = _front_matter(card)
    assert CARD_KEYS <= set(front) and "model-index" not in front  # the run has no evaluation
    assert front["library_name"] == "gankit" and front["pipeline_tag"] == "unconditional-image-generation"
    assert {"gan", "sagan", "pytorch"} <= set(front["tags"]) and front["license"] == "other"
    assert "datasets" not in front  # the built-in digits are no Hub dataset
    for text in ("![samples](samples.png)", 'gankit.load_generator("user/sagan-tiny")', "| steps trained | 2 |",
                 "| preset | sagan-digits |", "A tiny test run.", "exponential moving average"):
        assert text in card, text
    with Image.open(folder / "samples.png") as grid:
        assert grid.format == "PNG" and grid.width > 8 * 16
    torch.testing.assert_close(_outputs(gankit.load_generator(folder)), _outputs(gankit.load_generator(run)),
                               rtol=0, atol=0)


def test_the_discriminator_is_optional_and_round_trips(run, tmp_path):
    folder = gankit.save_pretrained(run, tmp_path / "out", include_discriminator=True, license="mit")
    assert sorted(p.name for p in (folder / "discriminator").iterdir()) == ["config.json", "model.safetensors"]
    assert _front_matter((folder / "README.md").read_text())["license"] == "mit"
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    D = build_discriminator(family_config("sagan", num_classes=3))
    D.load_weights(ckpt["D"], "D")
    loaded = load_discriminator(folder)
    x, y = torch.rand(4, 1, 16, 16) * 2 - 1, torch.arange(4) % 3
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, y), D.eval()(x, y), rtol=0, atol=0)
    # overwrite without the discriminator leaves no stale discriminator/ behind
    gankit.save_pretrained(run, folder, overwrite=True)
    assert not (folder / "discriminator").exists()
    with pytest.raises(UserError, match="has no discriminator/"):
        load_discriminator(folder)
    with pytest.raises(UserError, match="include_discriminator needs a run folder"):
        gankit.save_pretrained(gankit.load_generator(run), tmp_path / "g", include_discriminator=True)


def test_model_index_is_written_iff_the_run_scored_the_published_weights(run, tmp_path):
    best = run / "checkpoints" / "best.json"
    write_json(best, {"step": 1, "fid": 12.5, "kid": 0.004, "num": 64, "features": "digits"})
    try:
        card = (gankit.save_pretrained(run, tmp_path / "stale") / "README.md").read_text()
        assert "model-index" not in _front_matter(card)  # best.json scored step 1, the published weights are step 2
        write_json(best, {"step": 2, "fid": 12.5, "kid": 0.004, "num": 64, "features": "digits"})
        card = (gankit.save_pretrained(run, tmp_path / "best", repo_id="user/x") / "README.md").read_text()
        (result,) = _front_matter(card)["model-index"][0]["results"]
        assert _front_matter(card)["model-index"][0]["name"] == "user/x"
        assert result["task"]["type"] == "unconditional-image-generation" and result["dataset"]["name"]
        metrics = {m["type"]: m for m in result["metrics"]}
        assert metrics["fid"]["value"] == 12.5 and metrics["kid"]["value"] == 0.004
        assert metrics["fid"]["name"] == "FID (digits features)" and "| FID | 12.5 |" in card
    finally:
        best.unlink()
    # a gankit evaluate result written into the run folder after the checkpoint
    evaluate = {"checkpoint": str(run), "ema": True, "metrics": {"fid": 30.0, "is": 2.5}, "num_generated": 100,
                "features": {"name": "inception"}}
    write_json(run / "metrics-eval.json", evaluate)
    os.utime(run / "metrics-eval.json", (time.time() + 5, time.time() + 5))
    try:
        card = (gankit.save_pretrained(run, tmp_path / "evaluated") / "README.md").read_text()
        metrics = _front_matter(card)["model-index"][0]["results"][0]["metrics"]
        assert [(m["type"], m["value"], m["name"]) for m in metrics] == [("fid", 30.0, "FID"), ("is", 2.5, "IS")]
    finally:
        (run / "metrics-eval.json").unlink()


def test_save_pretrained_refuses_what_is_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is not a gankit run folder"):
        gankit.save_pretrained(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(UserError, match="does not exist"):
        gankit.save_pretrained(tmp_path / "nothing", tmp_path / "out")


@pytest.mark.parametrize(
    ("drop", "kwargs", "message"),
    [("config", {}, "holds no model config; give a checkpoint written by gankit train"),
     ("G_ema", {}, "holds no G_ema weights (damaged, or not written by gankit train); give a checkpoint written"),
     ("D", {"include_discriminator": True}, "holds no D weights (damaged, or not written by gankit train)")],
)  # fmt: skip
def test_save_pretrained_of_a_checkpoint_missing_a_part_is_one_line(run, tmp_path, drop, kwargs, message):
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    path = tmp_path / "part.pt"
    save_checkpoint({k: v for k, v in ckpt.items() if k != drop}, path)
    with pytest.raises(UserError) as info:
        gankit.save_pretrained(path, tmp_path / "out", **kwargs)
    assert str(info.value) == f"{path} {message}" or str(info.value).startswith(f"{path} {message}")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- the cache


def _cache_snapshot(cache: Path, repo_id: str, folder: Path, commit: str, refs: tuple[str, ...]) -> None:
    """Lay ``folder``'s files into ``cache`` as huggingface_hub does: content-addressed blobs, a snapshot per
    commit of relative symlinks to them, and refs naming the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = repo / "snapshots" / commit / path.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)


@pytest.fixture
def cache(tmp_path) -> tuple[Path, dict[str, torch.nn.Module]]:
    """A Hub cache holding user/tiny-gan at two commits: main -> first, branch v2 -> second."""
    models = {}
    for name, seed in (("a" * 40, 0), ("b" * 40, 1)):
        torch.manual_seed(seed)
        G = _trained(build_generator(family_config("sagan", num_classes=3)))
        write_pretrained(G, tmp_path / name)
        models[name] = G
    _cache_snapshot(tmp_path / "hub", "user/tiny-gan", tmp_path / ("a" * 40), "a" * 40, ("main",))
    _cache_snapshot(tmp_path / "hub", "user/tiny-gan", tmp_path / ("b" * 40), "b" * 40, ("v2",))
    return tmp_path / "hub", models


def test_a_repo_id_resolves_from_the_cache_offline_at_any_revision(cache, monkeypatch):
    hub, models = cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after huggingface_hub was imported: read at call time
    main_g = gankit.load_generator("user/tiny-gan", cache_dir=hub)
    torch.testing.assert_close(_outputs(main_g), _outputs(models["a" * 40]), rtol=0, atol=0)
    for revision in ("v2", "b" * 40):
        G = gankit.load_generator("user/tiny-gan", revision=revision, cache_dir=hub)
        torch.testing.assert_close(_outputs(G), _outputs(models["b" * 40]), rtol=0, atol=0)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))  # the cache folder from the environment, read at call time too
    torch.testing.assert_close(_outputs(gankit.load_generator("user/tiny-gan")), _outputs(main_g), rtol=0, atol=0)


def test_online_a_cached_commit_is_served_without_a_request(cache):
    hub, models = cache  # not offline: a commit hash is immutable, so huggingface_hub answers from the cache
    G = gankit.load_generator("user/tiny-gan", revision="b" * 40, cache_dir=hub)
    torch.testing.assert_close(_outputs(G), _outputs(models["b" * 40]), rtol=0, atol=0)


def test_the_torch_hub_entry_loads_repo_ids(cache, monkeypatch):
    hub, models = cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = importlib.util.spec_from_file_location("gankit_hubconf", Path(__file__).parents[1] / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    G = hubconf.gankit("user/tiny-gan", "v2", cache_dir=str(hub))
    torch.testing.assert_close(_outputs(G), _outputs(models["b" * 40]), rtol=0, atol=0)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert hubconf.sagan("user/tiny-gan").config == models["a" * 40].config  # the family entries take ids too


def test_commands_take_repo_ids(cache, monkeypatch, tmp_path, capsys):
    hub, _ = cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert main(["sample", "--checkpoint", "user/tiny-gan", "--num", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()


def test_an_uncached_id_offline_is_one_clear_line(cache, monkeypatch, capsys):
    hub, _ = cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as info:
        gankit.load_generator("user/other-gan", cache_dir=hub)
    assert str(info.value) == ("user/other-gan is not in the Hub cache and HF_HUB_OFFLINE=1 forbids downloading it; "
                               "no local path has that name either: download it once online, or give an existing "
                               "folder")
    with pytest.raises(UserError, match=r"user/tiny-gan \(revision v3\) is not in the Hub cache"):
        gankit.load_generator("user/tiny-gan", revision="v3", cache_dir=hub)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(UserError, match="user/other-gan is not in the Hub cache and local_files_only=True forbids"):
        gankit.load_generator("user/other-gan", cache_dir=hub, local_files_only=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert main(["sample", "--checkpoint", "user/other-gan", "--out", "x.png"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "user/other-gan is not in the Hub cache" in err
    with pytest.raises(UserError, match=r"discriminator/config.json of user/tiny-gan is not in the Hub cache"):
        load_discriminator("user/tiny-gan", cache_dir=hub)


def test_local_paths_come_first_and_a_missing_path_keeps_its_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a folder spelled like a repo id
    write_pretrained(build_generator(family_config("dcgan")), tmp_path / "user" / "name")
    assert gankit.load_generator("user/name").config.family == "dcgan"
    with pytest.raises(UserError, match="runs/x.pt does not exist; give a run folder"):
        gankit.load_generator("runs/x.pt")
    with pytest.raises(UserError, match="revision is for Hub repo ids"):
        gankit.load_generator("user/name", revision="main")
    assert is_repo_id("user/name") and is_repo_id("org-1/model_v2.1")
    for text in ("name", "a/b/c", "user/x.safetensors", "./user", "user/--x", "user/a..b", "-u/x", "user/x.git"):
        assert not is_repo_id(text), text


class Downloaded(Exception):
    """Raised by the stand-in for hf_hub_download: the Hub would have been asked."""


def test_a_mistyped_local_path_is_never_sent_to_the_hub(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def download(repo_id, *args, **kwargs):
        raise Downloaded(repo_id)

    monkeypatch.setattr(hf, "hf_hub_download", download)
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "model.pt").write_bytes(b"not a repo")
    cases = [("runs/dmeo", "runs/ is a local folder"), ("model.pt/x", "model.pt is a local file"),
             ("./user/name", "it starts with ./")]  # fmt: skip
    for source, reason in cases:
        assert not is_hub_source(source)
        why = f"{source} does not exist ({reason}, so it is not read as a Hub repo id); give a run folder, a .pt"
        for revision in (None, "main"):
            with pytest.raises(UserError) as info:
                gankit.load_generator(source, revision=revision)
            assert str(info.value).startswith(why), str(info.value)
        with pytest.raises(UserError, match=f"{reason}, so it is not read as a Hub repo id"):
            load_discriminator(source)
    capsys.readouterr()
    assert main(["sample", "--checkpoint", "runs/dmeo", "--out", "x.png"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("gankit: error: runs/dmeo does not exist (runs/ is a local folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "runs"]
    # a name whose first component is no local path is still a repo id: the Hub (its cache) is asked
    assert is_hub_source("user/name")
    with pytest.raises(Downloaded, match="user/name"):
        gankit.load_generator("user/name")


def test_without_the_extra_local_folders_work_and_repo_ids_name_the_extra(tmp_path, monkeypatch):
    G = build_generator(family_config("dcgan")).eval()
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import huggingface_hub -> ImportError
    monkeypatch.setitem(sys.modules, "huggingface_hub.errors", None)
    gankit.save_pretrained(G, tmp_path / "g")
    torch.testing.assert_close(_outputs(gankit.load_generator(tmp_path / "g")), _outputs(G), rtol=0, atol=0)
    with pytest.raises(UserError) as info:
        gankit.load_generator("user/name")
    assert str(info.value) == ("user/name is no local path; loading it from the Hugging Face Hub needs the hub "
                               "extra: pip install 'gankit[hub]'")
    with pytest.raises(UserError, match=r"pushing to the Hugging Face Hub needs the hub extra: pip install 'gankit"):
        push_to_hub(G, "user/name", token="hf_fake")


# ----------------------------------------------------------------------------------------------- push


class FakeHub:
    """Replaces HfApi's network methods (create_repo, create_branch, upload_folder) and records the calls."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, dict]] = []
        self.files: dict[str, bytes] = {}
        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.calls.append(("create_repo", {"repo_id": repo_id, "token": api.token, **kwargs}))
            return hf.RepoUrl(f"https://huggingface.co/{repo_id}")

        def create_branch(api, repo_id, **kwargs):
            hub.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

        def upload_folder(api, **kwargs):
            hub.calls.append(("upload_folder", kwargs))
            root = Path(kwargs["folder_path"])  # a temporary folder: read it while it exists
            hub.files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
            return hf.CommitInfo(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/abc123",
                                 commit_message=kwargs["commit_message"], commit_description="", oid="abc123")

        for name, method in (("create_repo", create_repo), ("create_branch", create_branch),
                             ("upload_folder", upload_folder)):
            monkeypatch.setattr(HfApi, name, method)


def test_push_sends_one_commit_with_the_pretrained_folder(run, monkeypatch, tmp_path, capsys):
    fake = FakeHub(monkeypatch)
    assert main(["push", str(run), "--repo-id", "user/sagan-tiny", "--token", "hf_fake"]) == 0
    assert [name for name, _ in fake.calls] == ["create_repo", "upload_folder"]
    create, upload = fake.calls[0][1], fake.calls[1][1]
    assert create == {"repo_id": "user/sagan-tiny", "token": "hf_fake", "private": None, "repo_type": "model",
                      "exist_ok": True}
    assert upload["repo_id"] == "user/sagan-tiny" and upload["repo_type"] == "model" and upload["revision"] is None
    assert upload["commit_message"] == f"Upload sagan-run with gankit {gankit.__version__}"
    assert sorted(fake.files) == ["README.md", "config.json", "model.safetensors", "samples.png"]
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert json.loads(fake.files["config.json"])["family"] == "sagan"
    assert model_config_from_pretrained(json.loads(fake.files["config.json"])).to_dict() == ckpt["config"]["model"]
    (tmp_path / "w.safetensors").write_bytes(fake.files["model.safetensors"])
    state, _ = read_safetensors(tmp_path / "w.safetensors")
    assert state.keys() == ckpt["G_ema"].keys() and all(torch.equal(state[k], ckpt["G_ema"][k]) for k in state)
    assert 'gankit.load_generator("user/sagan-tiny")' in fake.files["README.md"].decode()
    out = capsys.readouterr().out
    assert "pushed 4 files" in out and "https://huggingface.co/user/sagan-tiny" in out and "commit/abc123" in out


def test_push_private_to_a_branch_with_the_discriminator_and_the_saved_token(run, monkeypatch, capsys):
    fake = FakeHub(monkeypatch)
    monkeypatch.setattr(hf, "get_token", lambda: "hf_saved")
    argv = ["push", str(run), "--repo-id", "org/gan", "--private", "--revision", "dev", "--include-discriminator",
            "--commit-message", "first weights"]
    assert main(argv) == 0
    assert [name for name, _ in fake.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert fake.calls[0][1]["private"] is True and fake.calls[0][1]["token"] == "hf_saved"
    assert fake.calls[1][1] == {"repo_id": "org/gan", "branch": "dev", "repo_type": "model", "exist_ok": True}
    assert fake.calls[2][1]["revision"] == "dev" and fake.calls[2][1]["commit_message"] == "first weights"
    assert "discriminator/model.safetensors" in fake.files and "discriminator/config.json" in fake.files
    assert "https://huggingface.co/org/gan/tree/dev" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--repo-id", "not a repo"], "--repo-id must be user/name or org/name"),
        (["--repo-id", "user/x", "--token", ""], "no Hugging Face token: log in with `hf auth login`"),
    ],
)
def test_push_errors_are_one_line(run, monkeypatch, capsys, argv, message):
    fake = FakeHub(monkeypatch)
    monkeypatch.setattr(hf, "get_token", lambda: None)
    assert main(["push", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not fake.calls


def test_push_refuses_a_non_run_offline_mode_the_missing_extra_and_hub_errors(run, monkeypatch, tmp_path, capsys):
    fake = FakeHub(monkeypatch)
    (tmp_path / "empty").mkdir()
    lines = []
    for argv in (["push", str(tmp_path / "empty"), "--repo-id", "user/x", "--token", "t"],
                 ["push", str(tmp_path / "missing"), "--repo-id", "user/x", "--token", "t"]):
        assert main(argv) == 2
        lines.append(capsys.readouterr().err)
    assert "is not a gankit run folder" in lines[0] and "does not exist" in lines[1]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["push", str(run), "--repo-id", "user/x", "--token", "t"]) == 2
    lines.append(capsys.readouterr().err)
    assert "HF_HUB_OFFLINE=1 is set" in lines[-1]
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def refuse(api, repo_id, **kwargs):
        request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")  # built, never sent
        raise HfHubHTTPError("403 Forbidden: you cannot write to user/x\nmore details",
                             response=httpx2.Response(403, request=request))

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    assert main(["push", str(run), "--repo-id", "user/x", "--token", "t"]) == 2
    lines.append(capsys.readouterr().err)
    assert "the Hub refused the push to user/x: 403 Forbidden" in lines[-1]
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    assert main(["push", str(run), "--repo-id", "user/x", "--token", "t"]) == 2
    lines.append(capsys.readouterr().err)
    assert "needs the hub extra: pip install 'gankit[hub]'" in lines[-1]
    assert all(line.count("\n") == 1 for line in lines) and not fake.calls
