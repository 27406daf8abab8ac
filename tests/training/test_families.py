"""Every family and architecture trains one step with every loss, with spectral norm on or off per network."""

import copy

import pytest
import torch

from gankit.config import RunConfig
from gankit.models import build_discriminator, build_generator
from gankit.nn import has_spectral_norm
from gankit.training import Trainer, prepare_run_dir
from tests.tiny import TINY_MODELS, family_run, synthetic_batches


def _changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


def one_iteration(tmp_path, cfg: RunConfig) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "run"), progress=False, batches=synthetic_batches(cfg))
    g0, d0 = copy.deepcopy(trainer.gan.G.state_dict()), copy.deepcopy(trainer.gan.D.state_dict())
    stats = trainer.gan.train_step()
    assert all(torch.isfinite(v).all() for v in stats.values()), stats
    assert _changed(g0, trainer.gan.G.state_dict()) and _changed(d0, trainer.gan.D.state_dict())
    return stats


@pytest.mark.parametrize("loss", ["hinge", "ns", "wgan-gp"])
@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_one_training_iteration_per_family_and_loss(tmp_path, name, loss):
    stats = one_iteration(tmp_path, family_run(name, loss))
    assert ("gp" in stats) == (loss == "wgan-gp")
    if loss == "wgan-gp":
        assert float(stats["gp"]) > 0


@pytest.mark.parametrize("name", list(TINY_MODELS))
@pytest.mark.parametrize(("g_sn", "d_sn"), [(True, False), (False, False), (True, True)])
def test_spectral_norm_on_or_off_per_network_trains(tmp_path, name, g_sn, d_sn):
    cfg = family_run(name, "hinge", g_spectral_norm=g_sn, d_spectral_norm=d_sn)
    G, D = build_generator(cfg.model), build_discriminator(cfg.model)
    assert any(has_spectral_norm(m) for m in G.modules()) == g_sn
    assert any(has_spectral_norm(m) for m in D.modules()) == d_sn
    one_iteration(tmp_path, cfg)
