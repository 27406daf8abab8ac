"""The registry of model families: every family by name with its config, generator and discriminator; model
configs from plain data; the fields every family shares."""

import dataclasses

import pytest
import torch

from gankit.errors import UserError
from gankit.models import FAMILIES, build_discriminator, build_generator, get_family, model_config_from_dict
from gankit.models.base import Discriminator, Generator, ModelConfig
from tests.tiny import family_config


def test_registry_finds_every_family_and_rejects_unknown():
    assert list(FAMILIES) == ["sagan", "pgan", "sngan", "dcgan", "biggan"]
    for name in FAMILIES:
        assert get_family(name).config.family == name
    with pytest.raises(UserError, match="did you mean 'sngan'"):
        get_family("sngn")
    with pytest.raises(UserError, match="unknown model family 'stylegan'") as err:
        model_config_from_dict({"family": "stylegan"})
    assert all(name in str(err.value) for name in ("sagan", "sngan", "dcgan"))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_names_its_own_config_generator_and_discriminator(name):
    family = get_family(name)
    assert family.name == name and issubclass(family.config, ModelConfig)
    assert issubclass(family.generator, Generator) and issubclass(family.discriminator, Discriminator)
    assert family.generator.config_class is family.discriminator.config_class is family.config
    cfg = family_config(name)
    torch.manual_seed(0)
    G, D = build_generator(cfg), build_discriminator(cfg)
    assert type(G) is family.generator and type(D) is family.discriminator
    assert G.config == D.config == cfg
    assert Generator.family_class(cfg) is family.generator and Discriminator.family_class(cfg) is family.discriminator


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_model_config_round_trips_through_plain_data(name):
    cfg = family_config(name, num_classes=3)
    data = cfg.to_dict()
    assert data["family"] == name and all(not isinstance(v, tuple) for v in data.values())  # lists, as YAML has
    assert model_config_from_dict(data) == cfg
    assert get_family(name).config.from_dict({k: v for k, v in data.items() if k != "family"}) == cfg


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_shares_the_base_fields_first(name):
    fields = [f.name for f in dataclasses.fields(get_family(name).config)]
    assert fields[:4] == ["image_size", "channels", "z_dim", "num_classes"]


def test_model_configs_from_plain_data_refuse_what_no_family_takes():
    with pytest.raises(UserError, match="model.family is missing; set it to one of: sagan, pgan, sngan, dcgan, biggan"):
        model_config_from_dict({"z_dim": 8})
    with pytest.raises(UserError) as info:
        model_config_from_dict({"family": "dcgan", "z_dimm": 8})
    assert str(info.value).startswith("unknown config key model.z_dimm (did you mean 'z_dim'?) for family 'dcgan'; "
                                      "valid keys: image_size, channels, z_dim, num_classes, ")  # fmt: skip
    with pytest.raises(UserError, match="model.family is 'sagan' but this is a 'dcgan' config"):
        get_family("dcgan").config.from_dict({"family": "sagan"})
    with pytest.raises(UserError, match="model.z_dim must be an integer, got 'eight'"):
        model_config_from_dict({"family": "sngan", "z_dim": "eight"})
    with pytest.raises(UserError, match=r"no Generator takes a ModelConfig \(family ''\)"):
        Generator.family_class(ModelConfig())
