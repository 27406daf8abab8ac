"""`gankit export`: safetensors round trips, with and without spectral norm folded, EMA or raw."""

import copy
import json

import pytest
import torch
from safetensors import safe_open

import gankit
from gankit.apps.export import export_generator
from gankit.cli import main
from gankit.models import build_generator
from gankit.nn import fold_spectral_norm, has_spectral_norm
from gankit.training import Trainer, prepare_run_dir
from tests.tiny import family_run, synthetic_batches


def _run(tmp_path_factory, name: str, **model):
    cfg = family_run(name, "hinge", **model)
    run = prepare_run_dir(tmp_path_factory.mktemp("export") / name)
    trainer = Trainer(cfg, run, progress=False, batches=synthetic_batches(cfg))
    for _ in range(3):  # moves the weights and the power-iteration vectors u, v away from their initial values
        trainer.gan.train_step()
    trainer.save_checkpoint()
    return run


def count_spectral_norm(G: torch.nn.Module) -> int:
    """The modules of ``G`` with a spectral-norm parametrization."""
    return sum(has_spectral_norm(m) for m in G.modules())


@pytest.fixture(scope="module")
def sagan_run(tmp_path_factory):
    return _run(tmp_path_factory, "sagan", attention_spectral_norm=True)


@pytest.fixture(scope="module")
def sngan_run(tmp_path_factory):
    return _run(tmp_path_factory, "sngan-proj", g_spectral_norm=True)


def _metadata(path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def _outputs(G, n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    z = torch.randn(n, G.z_dim, generator=g)
    y = torch.arange(n) % G.num_classes if G.num_classes else None
    with torch.no_grad():
        return G(z, y)


@pytest.mark.parametrize("family", ["sngan", "sagan"])
def test_folded_generator_equals_sn_generator_in_eval(family, tmp_path):
    cfg = family_run("sngan-proj" if family == "sngan" else "sagan", "hinge", g_spectral_norm=True).model
    torch.manual_seed(0)
    G = build_generator(cfg)
    G.train()
    with torch.no_grad():  # a few train-mode forwards: power iteration moves u, v; BN statistics move
        for _ in range(3):
            G(torch.randn(8, G.z_dim), torch.randint(10, (8,)) if G.num_classes else None)
    G.eval()
    n_sn = count_spectral_norm(G)
    assert n_sn >= 2
    folded = fold_spectral_norm(copy.deepcopy(G).eval())  # folding a copy must leave G (sharing its classes) intact
    assert count_spectral_norm(folded) == 0
    keys = list(folded.state_dict())
    assert not any("parametrizations" in k or k.endswith(("_u", "_v")) for k in keys)
    assert len(G.state_dict()) - len(keys) == 2 * n_sn  # u and v gone; original -> weight
    torch.testing.assert_close(folded(*_inputs(G)), G(*_inputs(G)), atol=1e-6, rtol=0)


def _inputs(G):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, G.z_dim, generator=g)
    return z, (torch.arange(5) % G.num_classes if G.num_classes else None)


@pytest.mark.parametrize("which", ["sngan_run", "sagan_run"])
def test_export_round_trips_folded_and_not(which, request, tmp_path):
    run = request.getfixturevalue(which)
    reference = gankit.load_generator(run)  # EMA generator from checkpoints/last.pt
    assert count_spectral_norm(reference) > 0
    plain, folded = tmp_path / "plain.safetensors", tmp_path / "folded.safetensors"
    assert main(["export", str(run), "--out", str(plain)]) == 0
    assert main(["export", str(run), "--out", str(folded), "--fold-sn"]) == 0
    assert _metadata(plain)["spectral_norm_folded"] == "false" and _metadata(folded)["spectral_norm_folded"] == "true"
    assert _metadata(folded)["ema"] == "true"
    assert json.loads(_metadata(folded)["config"]) == reference.config.to_dict()
    with safe_open(str(folded), framework="pt") as f:
        folded_keys = set(f.keys())
    assert not any("parametrizations" in k for k in folded_keys)

    want = _outputs(reference)
    from_plain, from_folded = gankit.load_generator(plain), gankit.load_generator(folded)
    assert count_spectral_norm(from_plain) == count_spectral_norm(reference) and count_spectral_norm(from_folded) == 0
    torch.testing.assert_close(_outputs(from_plain), want, atol=0, rtol=0)
    torch.testing.assert_close(_outputs(from_folded), want, atol=1e-6, rtol=0)
    assert not from_folded.training and not any(p.requires_grad for p in from_folded.parameters())

    # re-exporting a folded file keeps it folded; folding a plain export gives the same tensors
    again = tmp_path / "again.safetensors"
    export_generator(folded, again)
    assert _metadata(again)["spectral_norm_folded"] == "true"
    export_generator(plain, again, fold_sn=True, overwrite=True)
    torch.testing.assert_close(_outputs(gankit.load_generator(again)), want, atol=1e-6, rtol=0)


def test_export_no_ema_takes_the_raw_generator(sngan_run, tmp_path):
    raw = tmp_path / "raw.safetensors"
    assert main(["export", str(sngan_run / "checkpoints" / "last.pt"), "--out", str(raw), "--no-ema", "--fold-sn"]) == 0
    assert _metadata(raw)["ema"] == "false"
    want = _outputs(gankit.load_generator(sngan_run, ema=False))
    torch.testing.assert_close(_outputs(gankit.load_generator(raw)), want, atol=1e-6, rtol=0)
    assert not torch.allclose(want, _outputs(gankit.load_generator(sngan_run)))  # EMA differs from raw


def test_export_errors_are_one_line(sngan_run, tmp_path, capsys):
    assert main(["export", str(sngan_run), "--out", str(tmp_path / "g.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and ".safetensors" in err
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "g.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err
    export = sngan_run / "generator.safetensors"
    assert main(["export", str(export), "--out", str(tmp_path / "g.safetensors"), "--no-ema"]) == 2
    assert "only the EMA generator" in capsys.readouterr().err
