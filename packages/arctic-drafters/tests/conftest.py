from __future__ import annotations

import pytest
import torch
from small_configs import SMALL_CONFIGS


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture(params=sorted(SMALL_CONFIGS))
def small_config(request):
    return SMALL_CONFIGS[request.param]
