import os

import pytest
import torch

# Under pytest-xdist (make test runs one worker per core) each worker computes on one thread: two workers of two
# threads each on two cores would oversubscribe them.
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(THREADS)
    yield
