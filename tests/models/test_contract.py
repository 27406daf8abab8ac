"""The contract every registered family keeps: the G/D interface the trainer, the loaders and the apps rely on.

Each family is run through the same checks with its tiny config (``tests.tiny.family_config``, widths 4-16):
seeded determinism, labels that change a conditional generator's output, export -> load giving identical outputs,
one training step that changes the weights and stays finite, and every supported image size (and the first
unsupported ones refused). A family added to the registry without an entry in ``tests.tiny.FAMILY_FIELDS`` and in
:data:`SIZES` here fails :func:`test_every_registered_family_is_covered`.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import gankit
from gankit.errors import UserError
from gankit.models import FAMILIES, build_discriminator, build_generator
from gankit.training import Trainer, prepare_run_dir
from tests.tiny import FAMILY_FIELDS, VARIANTS, family_config, grown, labels_for, model_run, seeded_batches

POWERS = (16, 32, 64, 128, 256)
# family -> (supported sizes, refused sizes) of its tiny config (tests.tiny.FAMILY_FIELDS); PGAN sizes are its final
# resolutions
SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "sagan": (POWERS, (8, 24, 512)),
    "sngan": (tuple(range(16, 129, 8)), (8, 20, 136)),
    "dcgan": (POWERS, (8, 24, 512)),
    "biggan": (POWERS, (8, 24, 1024)),
    "pgan": ((4, 8, 16, 32, 64, 128, 256, 512, 1024), (2, 24, 2048)),
}


def test_every_registered_family_is_covered():
    assert set(SIZES) == set(FAMILY_FIELDS) == set(FAMILIES)


@pytest.mark.parametrize(("family", "k"), VARIANTS)
def test_seeded_construction_and_sampling_are_deterministic(family, k):
    cfg = family_config(family, num_classes=k)
    torch.manual_seed(5)
    a = grown(build_generator(cfg)).eval()
    torch.manual_seed(5)
    b = grown(build_generator(cfg)).eval()
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    first = a.sample(4, labels=labels_for(cfg, 4), generator=torch.Generator().manual_seed(1))
    again = b.sample(4, labels=labels_for(cfg, 4), generator=torch.Generator().manual_seed(1))
    other = a.sample(4, labels=labels_for(cfg, 4), generator=torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    torch.manual_seed(6)
    c = grown(build_generator(cfg))
    assert any(not torch.equal(v, c.state_dict()[key]) for key, v in a.state_dict().items() if v.is_floating_point())


@pytest.mark.parametrize("family", list(FAMILY_FIELDS))
def test_labels_change_a_conditional_generators_output(family):
    torch.manual_seed(0)
    G = grown(build_generator(family_config(family, num_classes=3))).eval()
    with torch.no_grad():
        for module in G.modules():  # conditional gains start at 1: randomise them so every class differs
            if hasattr(module, "gain") and isinstance(module.gain, torch.nn.Embedding):
                module.gain.weight.normal_(1, 0.5)
    z = torch.randn(3, 8).repeat_interleave(3, 0)  # each latent with classes 0, 1, 2
    y = torch.arange(3).repeat(3)
    with torch.no_grad():
        images = G(z, y).reshape(3, 3, -1)
    for i in range(3):
        assert not torch.allclose(images[i, 0], images[i, 1]) and not torch.allclose(images[i, 1], images[i, 2])
    with pytest.raises(ValueError, match="class-conditional"):
        G(z)
    with pytest.raises(UserError, match="class_id 3 is out of range"):
        G.check_class_id(3)


@pytest.mark.parametrize(("family", "k"), VARIANTS)
def test_export_then_load_gives_identical_outputs(family, k, tmp_path):
    torch.manual_seed(0)
    G = grown(build_generator(family_config(family, num_classes=k))).eval()
    loaded = gankit.load_generator(G.save_export(tmp_path / "g.safetensors"))
    assert type(loaded) is type(G) and loaded.config == G.config and not loaded.training
    z, y = torch.randn(5, 8), labels_for(G.config, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z, y), G(z, y), rtol=0, atol=0)


@pytest.mark.parametrize(("family", "k"), VARIANTS)
def test_batch_independent_is_honest(family, k):
    # batch_independent lets the D step run reals and fakes as one batch: it must hold exactly when D's logit
    # for a sample ignores the other samples. Checked in training mode (batch norm on batch statistics), each
    # pass from the same state (a training-mode forward moves spectral norm's power iteration).
    torch.manual_seed(0)
    D = build_discriminator(family_config(family, num_classes=k))
    if getattr(D, "grows_progressively", False):
        D.set_scale(D.config.num_scales - 1)
    x = torch.randn(8, 1, 16, 16)
    y = labels_for(D.config, 8)
    part = lambda sl: copy.deepcopy(D)(x[sl], None if y is None else y[sl])  # noqa: E731
    joint, parts = part(slice(0, 8)), torch.cat([part(slice(0, 2)), part(slice(2, 8))])  # 2 | 6: other groups
    # dcgan: D batch norm; pgan: minibatch stddev
    expected = {"sagan": True, "sngan": True, "dcgan": False, "pgan": False, "biggan": True}[family]
    assert D.batch_independent is expected
    assert torch.allclose(joint, parts, rtol=1e-5, atol=1e-6) is expected


@pytest.mark.parametrize(("family", "k"), VARIANTS)
def test_one_training_step_changes_the_weights_and_stays_finite(family, k, tmp_path):
    model = family_config(family, num_classes=k)
    cfg = model_run(model, steps=1)
    torch.manual_seed(0)
    trainer = Trainer(cfg, prepare_run_dir(tmp_path / "run"), progress=False, batches=seeded_batches(cfg, 8))
    g0, d0 = copy.deepcopy(trainer.gan.G.state_dict()), copy.deepcopy(trainer.gan.D.state_dict())
    stats = trainer.gan.train_step()
    assert float(stats["skipped"]) == 0 and all(torch.isfinite(v).all() for v in stats.values())
    for before, net in ((g0, trainer.gan.G), (d0, trainer.gan.D)):
        after = net.state_dict()
        assert any(not torch.equal(v, after[key]) for key, v in before.items() if v.is_floating_point())
        assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())


@pytest.mark.parametrize(("family", "k"), VARIANTS)
@torch.no_grad()
def test_every_supported_size(family, k):
    sizes, refused = SIZES[family]
    for size in sizes:
        torch.manual_seed(size)
        cfg = family_config(family, image_size=size, num_classes=k)
        G, D = grown(build_generator(cfg)).eval(), grown(build_discriminator(cfg)).eval()
        y = labels_for(cfg, 2)
        x = G(torch.randn(2, 8), y)
        assert x.shape == (2, 1, size, size), (family, size)
        assert torch.isfinite(x).all() and x.std() > 0
        if family != "pgan":  # tanh outputs; PGAN's are unbounded, as the zoo's
            assert x.abs().max() <= 1
        logits = D(x, y)
        assert logits.shape == (2,) and torch.isfinite(logits).all()
    for size in refused:
        fields = dataclasses.asdict(family_config(family)) | {"image_size": size}
        with pytest.raises(UserError, match="image_size"):
            FAMILIES[family].config.from_dict(fields)
