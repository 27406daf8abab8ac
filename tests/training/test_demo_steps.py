"""Training is unchanged by changes that must not alter it: the demo preset's first steps, run through the
command line from its seed on one thread, give the checkpoint recorded in ``tests/fixtures/before_refactor``
(``make_demo_steps.py``: before the trainer was split into step, checkpoints and resume modules) bit for bit.

Float results of the same ops can differ in the last bits on a CPU with other vector instructions; there the
recorded EMA weights are compared to float rounding instead, and the digests are not.

The recorded ``--help`` texts change only where an option's meaning was changed on purpose (so far: the
``--truncation`` help of sample and interpolate, when truncation became the rescaled truncation trick; options added
to sample (``--latents``), interpolate (``--direction``, ``--strength``, ``--latents``) and export (``--format onnx``
and its options), train (``--init-from``), push (pretrained folders), and the new commands import, project and
directions; the overview lists them).
"""

import json
import subprocess
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests.fixtures.make_demo_steps import checkpoint_digests, help_texts, one_thread_env, train_args

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "before_refactor"


def test_demo_steps_give_the_recorded_weights(tmp_path):
    with safe_open(str(FIXTURE / "demo_steps.safetensors"), "pt") as f:
        meta = f.metadata()
    subprocess.run(train_args(tmp_path / "run"), check=True, env=one_thread_env(), capture_output=True)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == int(meta["steps"])
    expected = load_file(str(FIXTURE / "demo_steps.safetensors"))
    assert set(state["G_ema"]) == set(expected)
    if torch.backends.cpu.get_cpu_capability() != meta["cpu_capability"]:
        for key, value in expected.items():
            torch.testing.assert_close(state["G_ema"][key], value, rtol=1e-4, atol=1e-5)
        return
    digests = json.loads(meta["digests"])
    got = checkpoint_digests(state)
    assert sorted(got) == sorted(digests)
    differing = [key for key in digests if got[key] != digests[key]]
    assert differing == []
    for key, value in expected.items():
        assert torch.equal(state["G_ema"][key], value), key


def test_cli_help_is_unchanged():
    recorded = json.loads((FIXTURE / "cli_help.json").read_text())
    now = help_texts()
    assert sorted(now) == sorted(recorded)
    for command, text in recorded.items():
        assert now[command] == text, command
