"""ArcticProposer outside the engine: it refuses to run without the plugin's patches."""

from __future__ import annotations

import pytest

from arctic_vllm import ArcticConfigError
from arctic_vllm.proposer import ArcticProposer


def test_without_options_it_explains_how_to_configure_it(engine_config):
    # What vLLM builds for custom_class when our config patch did not run.
    config = engine_config(
        {"method": "custom_class", "model": "arctic_vllm.proposer.ArcticProposer",
         "num_speculative_tokens": 4}
    )  # fmt: skip
    with pytest.raises(ArcticConfigError, match=r"speculative_config=\{'method': 'arctic'") as err:
        ArcticProposer(config)
    assert "ARCTIC_VLLM_DISABLE" in str(err.value)


def test_vllms_custom_class_propose_says_the_patch_is_missing(engine_config):
    proposer = ArcticProposer(engine_config({"method": "suffix", "num_speculative_tokens": 4}))
    assert proposer.num_speculative_tokens == 4 and proposer.suffix is not None
    with pytest.raises(RuntimeError, match=r"model-runner patch is not applied"):
        proposer.propose([[1]], [1], None)
