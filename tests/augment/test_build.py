import pytest
import torch

from gankit.augment import (
    AUGMENT_KINDS,
    DIFFAUGMENT_OPS,
    AdaAugment,
    Augment,
    DiffAugment,
    build_augment,
)
from gankit.errors import UserError


def build(kind, **kwargs):
    return build_augment(kind, channels=3, batch_size=16, **kwargs)


def test_none_is_the_identity_with_no_state():
    aug = build("none")
    x = torch.randn(2, 3, 8, 8)
    assert type(aug) is Augment and aug(x) is x
    aug.observe(torch.ones(2))
    aug.step(16)
    assert aug.p == 0.0 and aug.r_t is None
    assert aug.state_dict() == {"kind": "none"}


def test_diffaugment_uses_the_policy():
    aug = build("diffaugment", policy="translation,cutout")
    assert isinstance(aug, DiffAugment) and aug.policy == ("translation", "cutout")
    assert aug.p == 0.0 and aug.r_t is None
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    out = aug(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)


def test_ada_starts_at_p_zero_and_adapts_with_the_given_settings():
    aug = build_augment("ada", channels=1, batch_size=8, ada_target=0.5, ada_interval=2, ada_kimg=1)
    assert isinstance(aug, AdaAugment)
    x = torch.rand(8, 1, 16, 16)
    assert aug.p == 0.0 and aug(x) is x
    for _ in range(2):
        aug.observe(torch.ones(8))
        aug.step(8)
    assert aug.p == 16 / 1000 and aug.r_t == 1.0
    out = aug(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape


def one_line_error(fn):
    with pytest.raises(UserError) as err:
        fn()
    message = str(err.value)
    assert "\n" not in message
    return message


def test_unknown_kind_names_the_valid_kinds():
    message = one_line_error(lambda: build("stylegan"))
    assert "'stylegan'" in message and all(kind in message for kind in AUGMENT_KINDS)


def test_unknown_policy_op_names_the_valid_ops():
    message = one_line_error(lambda: build("diffaugment", policy="color,flip"))
    assert "'flip'" in message and all(op in message for op in DIFFAUGMENT_OPS)


@pytest.mark.parametrize("target", [0.0, 1.0, -0.1, 1.5])
@pytest.mark.parametrize("kind", AUGMENT_KINDS)
def test_ada_target_outside_zero_one_is_refused(kind, target):
    message = one_line_error(lambda: build(kind, ada_target=target))
    assert "(0, 1)" in message and str(target) in message


def test_ada_refuses_channel_counts_its_colour_ops_cannot_handle():
    one_line_error(lambda: build_augment("ada", channels=4, batch_size=8))
