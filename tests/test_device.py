"""``select_device``: the device names gankit runs on (auto, cpu, cuda, cuda:N, mps) and one line for the rest."""

from __future__ import annotations

import pytest
import torch

from gankit.cli import main
from gankit.device import select_device
from gankit.errors import ParameterError

NAMES = "use auto, cpu, cuda, cuda:N or mps"


@pytest.mark.parametrize("name", ["xla", "meta", "xpu", "hpu", "privateuseone", "lazy", "xla:0", "cpu:1"])
def test_torch_device_types_gankit_cannot_run_on_are_refused_by_name(name):
    with pytest.raises(ParameterError) as info:
        select_device(name)
    assert str(info.value) == f"device {name!r} is not a device gankit runs on; {NAMES}"
    assert info.value.as_flag().startswith(f"--device {name!r} is not a device gankit runs on")


def test_a_torch_device_object_of_another_type_is_refused_too():
    with pytest.raises(ParameterError, match="'meta' is not a device gankit runs on"):
        select_device(torch.device("meta"))
    assert select_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "CUDA", "gpu"])
def test_names_torch_does_not_know_are_refused(name):
    with pytest.raises(ParameterError, match=f"{name!r} is not a device name; {NAMES}"):
        select_device(name)


def test_the_devices_gankit_runs_on_are_accepted(monkeypatch):
    assert select_device("cpu") == torch.device("cpu") and select_device("cpu:0") == torch.device("cpu", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("cuda") == torch.device("cuda") and select_device("cuda:1") == torch.device("cuda", 1)
    assert select_device("auto") == torch.device("cuda")


def test_train_on_xla_is_one_line_and_leaves_no_run_folder(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--preset", "sagan-digits", "--out", str(out), "--device", "xla", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gankit: error: --device 'xla' is not a device gankit runs on; {NAMES}"]
    assert not out.exists()
