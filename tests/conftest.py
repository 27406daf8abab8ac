import os

import pytest
import torch

from gankit.models import SAGANConfig

# Tiny model overrides for CLI runs of the sagan-digits preset: seconds, not minutes.
TINY_SETS = [
    "--set",
    "model.z_dim=16",
    "--set",
    "model.g_conv_dim=8",
    "--set",
    "model.d_conv_dim=8",
    "--set",
    "training.log_every=2",
    "--set",
    "training.sample_every=2",
    "--set",
    "training.batch_size=8",
]


# Under pytest-xdist (make test runs one worker per core) each worker computes on one thread: two workers of two
# threads each on two cores would oversubscribe them.
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(THREADS)
    yield


def tiny_sagan_config() -> SAGANConfig:
    """A 16x16 class-conditional SAGAN small enough for unit tests."""
    return SAGANConfig(
        image_size=16,
        channels=1,
        z_dim=16,
        g_conv_dim=8,
        d_conv_dim=8,
        g_attention_resolutions=(8,),
        d_attention_resolutions=(8,),
        num_classes=10,
    )


@pytest.fixture
def tiny_cfg() -> SAGANConfig:
    return tiny_sagan_config()
