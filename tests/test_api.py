"""``gankit.load_generator`` and its table of formats (``gankit.api.FORMATS``): each row recognises its source and
loads the generator it holds, the first row that matches wins, a missing path is one clear line; and
``Generator.from_state`` / ``Discriminator.from_state``, the one way a network is built from stored weights
(spectral norm folded or not, strict about every tensor)."""

from __future__ import annotations

import copy
import shutil
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import gankit
from gankit.api import (
    FORMATS,
    LoadRequest,
    find_format,
    read_checkpoint,
    read_export,
    read_pretrained_folder,
    read_run_folder,
)
from gankit.cli import main
from gankit.compat.pgan_zoo import load_pgan_zoo_generator
from gankit.errors import DamagedFile, ParameterError, UserError
from gankit.hub import write_pretrained
from gankit.io import load_checkpoint, save_checkpoint
from gankit.models import build_discriminator, build_generator
from gankit.models.base import Discriminator, Generator, ModelConfig
from gankit.models.pgan import ProgressiveGenerator
from gankit.models.sagan import SAGANGenerator
from gankit.nn import fold_spectral_norm, has_spectral_norm
from tests.compat.test_pgan_zoo import build_zoo_file
from tests.tiny import TINY_SETS, dcgan_config, family_config, grown, labels_for, pgan_config

SOURCES = ("a run folder, a .pt checkpoint, a .safetensors export, a pretrained folder or a Hub repo id "
           "(user/name)")  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    assert main(["train", "--preset", "sagan-digits", "--out", str(out), "--steps", "4", "--checkpoint-every", "2",
                 "--device", "cpu", "--no-progress", *TINY_SETS]) == 0  # fmt: skip
    return out


def _outputs(G, n: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    z = torch.randn(n, G.z_dim, generator=g)
    with torch.no_grad():
        return G(z, labels_for(G.config, n))


# ------------------------------------------------------------------------------------------ load_generator


def test_load_generator_from_folder_checkpoint_and_export_agree(trained_run):
    z = torch.randn(4, 16)
    y = torch.tensor([0, 1, 2, 3])
    outs = [
        gankit.load_generator(p)(z, y)
        for p in (trained_run, trained_run / "checkpoints/last.pt", trained_run / "generator.safetensors")
    ]
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[0], outs[2])
    G = gankit.load_generator(trained_run)
    assert not G.training and G.z_dim == 16 and G.num_classes == 10
    assert G.sample(3, labels=2).shape == (3, 1, 16, 16)
    raw = gankit.load_generator(trained_run, ema=False)(z, y)
    assert not torch.allclose(raw, outs[0])  # the EMA generator is a different set of weights


def _hub_cache(cache: Path, repo_id: str, folder: Path, commit: str) -> None:
    """``folder``'s files in a Hub cache at ``commit`` (the ``main`` branch), laid out as huggingface_hub reads it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


# One source of each kind: the row of FORMATS that reads it, and a variant after the colon
FORMAT_CASES = ["pretrained folder", "BigGAN-PyTorch weights", "BigGAN-PyTorch weights: a G.pth file",
                "StudioGAN checkpoint", "StudioGAN checkpoint: a G file", "run folder", "run folder: an export alone",
                "safetensors export", "pytorch_GAN_zoo PGAN file", "checkpoint", "Hub repo id"]  # fmt: skip
BIGGAN_PYTORCH = Path(__file__).parent / "fixtures" / "biggan_pytorch" / "c32"
STUDIOGAN = Path(__file__).parent / "fixtures" / "studiogan"
STUDIOGAN_RUN = STUDIOGAN / "studiogan_official_ckpt" / "CIFAR10-SAGAN-tiny"


def test_every_row_of_the_format_table_has_a_case():
    assert [f.name for f in FORMATS] == list(dict.fromkeys(case.split(":")[0] for case in FORMAT_CASES))


@pytest.mark.parametrize("case", FORMAT_CASES)
def test_each_row_recognises_and_loads_its_source(case, trained_run, tmp_path, monkeypatch):
    kwargs: dict = {}
    if case in ("pretrained folder", "Hub repo id"):
        source = write_pretrained(gankit.load_generator(trained_run), tmp_path / "pretrained").root
    if case == "Hub repo id":
        pytest.importorskip("huggingface_hub")
        monkeypatch.setattr(socket.socket, "connect", _no_network)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.chdir(tmp_path)  # a repo id is a relative path that does not exist here
        _hub_cache(tmp_path / "hub", "user/tiny-gan", source, "a" * 40)
        source, kwargs = "user/tiny-gan", {"cache_dir": tmp_path / "hub"}
    elif case == "run folder":
        source = trained_run
    elif case == "run folder: an export alone":
        source = tmp_path / "export-only"
        source.mkdir()
        shutil.copy(trained_run / "generator.safetensors", source / "generator.safetensors")
    elif case == "safetensors export":
        source = trained_run / "generator.safetensors"
    elif case == "pytorch_GAN_zoo PGAN file":
        source = build_zoo_file(tmp_path / "zoo.pth", depths=(16, 12), noise_dim=12)
    elif case == "checkpoint":
        source = trained_run / "checkpoints" / "last.pt"
    elif case.startswith("BigGAN-PyTorch"):
        source = BIGGAN_PYTORCH if case == "BigGAN-PyTorch weights" else BIGGAN_PYTORCH / "G.pth"
    elif case.startswith("StudioGAN"):  # a run folder (best checkpoint, its G_ema) or one file (its G)
        g_file = STUDIOGAN_RUN / "model=G-current-weights-step=4.pth"
        source = STUDIOGAN_RUN if case == "StudioGAN checkpoint" else g_file
    assert find_format(source).name == case.split(":")[0]
    G = gankit.load_generator(source, **kwargs)
    assert not G.training and not any(p.requires_grad for p in G.parameters()) and G.device == torch.device("cpu")
    if case.startswith("BigGAN-PyTorch"):  # the source's own eval-mode images (tests/fixtures/biggan_pytorch)
        ref = load_file(BIGGAN_PYTORCH / "reference.safetensors")
        expected = ref["images_G_ema" if case == "BigGAN-PyTorch weights" else "images_G"]
        with torch.no_grad():
            torch.testing.assert_close(G(ref["z"], ref["y"]), expected, rtol=0, atol=1e-5)
    elif case.startswith("StudioGAN"):  # the source's own eval-mode images (tests/fixtures/studiogan)
        ref = load_file(STUDIOGAN / "reference.safetensors")
        p = "CIFAR10-SAGAN-tiny/best" if case == "StudioGAN checkpoint" else "CIFAR10-SAGAN-tiny/current"
        expected = ref[f"{p}/G_ema" if case == "StudioGAN checkpoint" else f"{p}/G"]
        with torch.no_grad():
            torch.testing.assert_close(G(ref[f"{p}/z"], ref[f"{p}/y"]), expected, rtol=0, atol=1e-5)
    elif case == "pytorch_GAN_zoo PGAN file":
        assert isinstance(G, ProgressiveGenerator) and G.z_dim == 12 and G.image_size == 8
        torch.testing.assert_close(_outputs(G), _outputs(load_pgan_zoo_generator(source, ema=True).eval()))
    else:
        assert isinstance(G, SAGANGenerator) and G.z_dim == 16
        torch.testing.assert_close(_outputs(G), _outputs(gankit.load_generator(trained_run / "checkpoints/last.pt")))


def _no_network(*args, **kwargs):
    raise AssertionError("a test tried to reach the network")


def test_the_first_matching_row_wins(trained_run, tmp_path):
    names = [f.name for f in FORMATS]
    # a pretrained folder is a folder too, a zoo file a file too: the specific row comes first
    assert names.index("pretrained folder") < names.index("run folder")
    assert names.index("safetensors export") < names.index("checkpoint")
    assert names.index("pytorch_GAN_zoo PGAN file") < names.index("checkpoint")
    assert names[-1] == "Hub repo id"  # only a path that does not exist
    pretrained = write_pretrained(gankit.load_generator(trained_run), tmp_path / "p").root
    assert [f.name for f in FORMATS if f.matches(pretrained)] == ["pretrained folder", "run folder"]
    zoo = build_zoo_file(tmp_path / "zoo.pth", depths=(16,), noise_dim=4)
    assert [f.name for f in FORMATS if f.matches(zoo)] == ["pytorch_GAN_zoo PGAN file", "checkpoint"]
    (tmp_path / "empty").mkdir()
    assert find_format(tmp_path / "empty").name == "run folder"
    (tmp_path / "notes.txt").write_text("not weights")
    assert find_format(tmp_path / "notes.txt").name == "checkpoint"  # any other file: read as a checkpoint
    with pytest.raises(UserError, match="holds no checkpoints/last.pt or generator.safetensors; is it a gankit run"):
        gankit.load_generator(tmp_path / "empty")
    with pytest.raises(DamagedFile, match="notes.txt is truncated or corrupt"):
        gankit.load_generator(tmp_path / "notes.txt")


@pytest.mark.parametrize("missing", ["missing.pt", "runs/x.safetensors", "no-such-run", "a/b/c"])
def test_a_missing_path_is_refused_in_one_line(missing, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    message = f"{missing} does not exist; give {SOURCES}"
    with pytest.raises(UserError) as info:
        find_format(missing)
    assert str(info.value) == message
    with pytest.raises(UserError) as info:
        gankit.load_generator(missing)
    assert str(info.value) == message
    assert main(["sample", "--checkpoint", missing, "--out", "x.png"]) == 2
    assert capsys.readouterr().err == f"gankit: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_revision_is_for_hub_repo_ids_only(trained_run):
    with pytest.raises(ParameterError, match=r"revision is for Hub repo ids \(user/name\); 'x.pt' is none"):
        gankit.load_generator("x.pt", revision="main")
    for source in (trained_run, trained_run / "generator.safetensors", trained_run / "checkpoints" / "last.pt"):
        with pytest.raises(ParameterError, match="revision is for Hub repo ids; .* is a local path"):
            gankit.load_generator(source, revision="main")


def test_the_readers_refuse_what_their_source_does_not_hold(trained_run, tmp_path):
    raw_only = LoadRequest(ema=False)
    with pytest.raises(UserError, match="holds only the EMA generator; use a checkpoint"):
        read_export(trained_run / "generator.safetensors", raw_only)
    pretrained = write_pretrained(gankit.load_generator(trained_run), tmp_path / "p").root
    with pytest.raises(UserError, match="is a pretrained folder: it holds one generator \\(the EMA\\)"):
        read_pretrained_folder(pretrained, raw_only)
    save_checkpoint({"G_ema": {}}, tmp_path / "bare.pt")
    with pytest.raises(UserError, match="bare.pt holds no model config; give a checkpoint written by gankit train"):
        read_checkpoint(tmp_path / "bare.pt", LoadRequest())
    ckpt = load_checkpoint(trained_run / "checkpoints" / "last.pt")
    raw = read_run_folder(trained_run, raw_only)  # a checkpoint holds both generators
    assert all(torch.equal(v, ckpt["G"][k]) for k, v in raw.state_dict().items())
    ema = read_checkpoint(trained_run / "checkpoints" / "last.pt", LoadRequest())
    assert all(torch.equal(v, ckpt["G_ema"][k]) for k, v in ema.state_dict().items())


def test_a_checkpoint_without_the_generator_asked_for_is_one_line(trained_run, tmp_path, capsys):
    ckpt = load_checkpoint(trained_run / "checkpoints" / "last.pt")
    no_ema, no_g, neither = tmp_path / "no_ema.pt", tmp_path / "no_g.pt", tmp_path / "neither.pt"
    save_checkpoint({"config": ckpt["config"], "G": ckpt["G"]}, no_ema)
    save_checkpoint({"config": ckpt["config"], "G_ema": ckpt["G_ema"]}, no_g)
    save_checkpoint({"config": ckpt["config"], "G_ema": "not a state dict"}, neither)
    with pytest.raises(UserError) as info:
        gankit.load_generator(no_ema)
    assert str(info.value) == (f"{no_ema} holds no G_ema weights (damaged, or not written by gankit train); give a "
                               "checkpoint written by gankit train")
    assert gankit.load_generator(no_ema, ema=False).z_dim == 16  # the raw generator is there
    with pytest.raises(UserError, match=r"no_g.pt holds no G weights .*; drop --no-ema to load its G_ema$"):
        gankit.load_generator(no_g, ema=False)
    with pytest.raises(UserError, match="neither.pt holds no G_ema weights"):
        read_checkpoint(neither, LoadRequest())
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(no_g), "--no-ema", "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.startswith(f"gankit: error: {no_g} holds no G weights")
    assert not (tmp_path / "x.png").exists()


def test_a_mistyped_path_under_a_local_folder_says_why_it_is_no_repo_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(UserError) as info:
        find_format("runs/dmeo")
    assert str(info.value) == ("runs/dmeo does not exist (runs/ is a local folder, so it is not read as a Hub repo "
                               f"id); give {SOURCES}")
    assert not FORMATS[-1].matches(Path("runs/dmeo")) and FORMATS[-1].matches(Path("user/name"))


def test_architecture_mismatch_names_the_first_differing_tensor(trained_run, tmp_path):
    state = load_checkpoint(trained_run / "checkpoints/last.pt")
    state["config"]["model"]["g_conv_dim"] = 16
    other = tmp_path / "other.pt"
    torch.save(state, other)
    with pytest.raises(UserError, match=r"does not match the model: 'blocks\.0\.conv.*has shape"):
        gankit.load_generator(other)


# ------------------------------------------------------------------------------------------ from_state


@pytest.mark.parametrize("family", ["sagan", "sngan", "dcgan", "pgan"])
def test_from_state_on_the_base_class_builds_the_family_and_loads_strictly(family):
    cfg = family_config(family, num_classes=3)
    torch.manual_seed(0)
    G, D = grown(build_generator(cfg)).eval(), grown(build_discriminator(cfg)).eval()
    torch.manual_seed(1)  # another initialisation: what from_state returns must come from the state alone
    G2 = Generator.from_state(cfg, G.state_dict(), source="g.safetensors").eval()
    D2 = Discriminator.from_state(cfg, D.state_dict(), source="d.safetensors").eval()
    assert type(G2) is type(G) and type(D2) is type(D) and G2.config == cfg
    torch.testing.assert_close(_outputs(G2), _outputs(G), rtol=0, atol=0)
    x, y = torch.rand(3, 1, 16, 16) * 2 - 1, labels_for(cfg, 3)
    with torch.no_grad():
        torch.testing.assert_close(D2(x, y), D(x, y), rtol=0, atol=0)
    assert type(G).from_state(cfg, G.state_dict(), source="g").config == cfg  # the family's own class too


def test_from_state_takes_a_growing_network_at_its_saved_scale():
    cfg = pgan_config()
    G = ProgressiveGenerator(cfg, scale=1)
    G.set_alpha(0.25)
    G2 = Generator.from_state(cfg, G.state_dict(), source="g")  # built at 4x4, grown to the saved scale
    assert (G2.scale, float(G2.alpha), G2.image_size) == (1, 0.25, 8)
    torch.testing.assert_close(_outputs(G2.eval()), _outputs(G.eval()), rtol=0, atol=0)


def test_from_state_folded_loads_weights_with_spectral_norm_folded_in():
    cfg = family_config("sagan", num_classes=3)
    torch.manual_seed(0)
    G = build_generator(cfg)
    G.train()
    with torch.no_grad():  # train-mode forwards move the power-iteration vectors and the BN statistics
        for _ in range(2):
            G(torch.randn(4, G.z_dim), labels_for(cfg, 4))
    G.eval()
    folded = fold_spectral_norm(copy.deepcopy(G).eval())
    state = folded.state_dict()
    assert sum(has_spectral_norm(m) for m in G.modules()) > 0
    assert not any("parametrizations" in k for k in state)
    loaded = Generator.from_state(cfg, state, source="folded.safetensors", folded=True).eval()
    assert not any(has_spectral_norm(m) for m in loaded.modules()) and loaded.spectral_norm_folded()
    torch.testing.assert_close(_outputs(loaded), _outputs(folded), rtol=0, atol=0)
    torch.testing.assert_close(_outputs(loaded), _outputs(G), rtol=0, atol=1e-6)
    with pytest.raises(UserError, match="folded.safetensors does not match the model: tensor '.*parametrizations"):
        Generator.from_state(cfg, state, source="folded.safetensors")  # unfolded: the SN tensors are missing


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("to_image.bias"), "w.bin does not match the model: tensor 'to_image.bias' is missing (hint)"),
        (lambda s: s.update(extra=torch.zeros(2)), "w.bin does not match the model: unexpected tensor 'extra' (hint)"),
        (lambda s: s.update({"to_image.bias": torch.zeros(3)}),
         "w.bin does not match the model: 'to_image.bias' has shape (3,), the model expects (1,) (hint)"),
    ],
)  # fmt: skip
def test_from_state_names_the_tensor_the_source_and_the_hint(change, message):
    cfg = dcgan_config()
    state = build_generator(cfg).state_dict()
    change(state)
    with pytest.raises(UserError) as info:
        Generator.from_state(cfg, state, source="w.bin", hint=" (hint)")
    assert str(info.value) == message


def test_from_state_refuses_a_config_its_class_does_not_take():
    cfg = dcgan_config()
    state = build_generator(cfg).state_dict()
    with pytest.raises(UserError, match=r"no SAGANGenerator takes a DCGANConfig \(family 'dcgan'\)"):
        SAGANGenerator.from_state(cfg, state, source="x")
    with pytest.raises(UserError, match=r"no Discriminator takes a ModelConfig \(family ''\)"):
        Discriminator.from_state(ModelConfig(), {}, source="x")
