"""benchmarks/gpu_check.py runs its whole logic on the CPU (``--quick``): every check gives a row of the table."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_check_logic_runs_on_the_cpu(capsys):
    gpu_check = load()
    assert gpu_check.main(["--device", "cpu", "--quick"]) == 0
    table = capsys.readouterr().out
    for check in ("bench fp32", "bench bf16", "train 3 steps", "torchrun, 1 process", "FID features"):
        assert f"| {check} |" in table
    assert "% of the fp32 matmul peak" in table and "% of the bf16 matmul peak" in table
    assert "gloo" in table and "losses finite" in table and "failed" not in table


def test_gpu_check_refuses_without_cuda(capsys, monkeypatch):
    gpu_check = load()
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 2
    assert "no CUDA device here" in capsys.readouterr().err


def test_a_failed_check_becomes_a_row_not_a_crash():
    gpu_check = load()

    def broken():
        raise RuntimeError("no NCCL")

    rows = gpu_check._guarded(broken, "torchrun")
    assert rows == [("torchrun", "failed", "RuntimeError: no NCCL")]
    assert "| torchrun | failed |" in gpu_check.format_table(rows, "test")
