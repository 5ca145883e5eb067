"""speculative_config parsing and validation: every alias, every error names what to change."""

from __future__ import annotations

import dataclasses

import pytest

from arctic_drafters import MLPSpeculatorConfig, build_speculator, save_drafter
from arctic_vllm import ArcticConfigError, ArcticOptions, parse_options
from arctic_vllm.options import _ALIASES, resolve_options

ARCTIC = {"method": "arctic", "model": "/drafters/lstm"}

# Every accepted option name -> (ArcticOptions field, a valid non-default value).
ALIASES = {
    "model": ("drafter_path", "/drafters/other"),
    "enable_suffix_decoding": ("enable_suffix_decoding", True),
    # vLLM's suffix_decoding_* names
    "suffix_decoding_max_tree_depth": ("suffix_max_depth", 7),
    "suffix_decoding_max_cached_requests": ("suffix_max_cached_requests", 5),
    "suffix_decoding_max_spec_factor": ("suffix_max_spec_factor", 2.5),
    "suffix_decoding_min_token_prob": ("suffix_min_token_prob", 0.3),
    # Arctic Inference's names
    "suffix_cache_max_depth": ("suffix_max_depth", 7),
    "suffix_max_cached_requests": ("suffix_max_cached_requests", 5),
    "suffix_max_spec_factor": ("suffix_max_spec_factor", 2.5),
    "suffix_max_spec_offset": ("suffix_max_spec_offset", -1.5),
    "suffix_min_token_prob": ("suffix_min_token_prob", 0.3),
    "suffix_cache_max_requests": ("suffix_max_cached_requests", 5),
    "suffix_speculative_tokens": ("suffix_speculative_tokens", 24),
    "disable_by_batch_size": ("draft_request_limit", 4),
    "hard_disable_by_batch_size": ("hard_batch_cap", 8),
    # vLLM 0.33's dynamic speculative decoding table
    "num_speculative_tokens_per_batch_size": ("tokens_by_batch_size", ((1, 4, 3), (5, 64, 1))),
    # ours
    "suffix_decoding_max_cached_tokens": ("suffix_max_cached_tokens", 1000),
    "suffix_decoding_max_spec_offset": ("suffix_max_spec_offset", -1.5),
    "suffix_decoding_eviction": ("suffix_eviction", "fifo"),
    "suffix_decoding_adaptive": ("suffix_adaptive", True),
    "suffix_decoding_extend": ("suffix_extend", False),
    "suffix_decoding_namespace": ("suffix_namespace_source", "request"),
    "drafter_fp8": ("drafter_fp8", True),
    "drafter_cuda_graph": ("drafter_cuda_graph", False),
    "drafter_compile": ("drafter_compile", False),
    "drafter_sampling": ("drafter_sampling", False),
    "drafter_int8": ("drafter_int8", False),
    "soft_batch_cap": ("soft_batch_cap", 4),
    "hard_batch_cap": ("hard_batch_cap", 8),
    "backoff_threshold": ("backoff_threshold", 0.25),
    "cost_aware": ("cost_aware", True),
    "hybrid_drafter_cost": ("hybrid_drafter_cost", 0.0),
}


def _defaults() -> dict[str, object]:
    return {
        f.name: f.default
        for f in dataclasses.fields(ArcticOptions)
        if f.default is not dataclasses.MISSING
    }


def test_the_alias_table_here_covers_every_accepted_name():
    assert set(ALIASES) == set(_ALIASES)


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_alias_sets_its_field_and_nothing_else(alias):
    field, value = ALIASES[alias]
    options, passthrough = parse_options({**ARCTIC, alias: value})
    assert getattr(options, field) == value
    assert passthrough == {}
    expected = {**_defaults(), "drafter_path": ARCTIC["model"], field: value}
    for name, want in expected.items():
        assert getattr(options, name) == want, name


def test_dashed_names_are_accepted_like_the_cli_writes_them():
    options, _ = parse_options(
        {**ARCTIC, "suffix-decoding-max-tree-depth": 9, "num-speculative-tokens": 5}
    )
    assert options.suffix_max_depth == 9 and options.num_speculative_tokens == 5


def test_vllm_fields_pass_through_untouched():
    options, passthrough = parse_options(
        {
            "method": "suffix",
            "enforce_eager": True,
            "max_model_len": 256,
            "disable_padded_drafter_batch": False,
        }
    )
    assert passthrough == {
        "enforce_eager": True,
        "max_model_len": 256,
        "disable_padded_drafter_batch": False,
    }
    assert options.method == "suffix"


def test_method_suffix_defaults_to_16_tokens_with_suffix_decoding_on():
    options, _ = parse_options({"method": "suffix"})
    assert options.num_speculative_tokens == 16
    assert options.enable_suffix_decoding is True
    assert options.drafter_path is None


def test_method_arctic_leaves_k_to_the_drafter():
    options, _ = parse_options(dict(ARCTIC))
    assert options.num_speculative_tokens is None
    assert options.enable_suffix_decoding is False


def test_the_callers_dict_is_not_modified():
    config = {**ARCTIC, "num_speculative_tokens": 4, "enforce_eager": True}
    before = dict(config)
    parse_options(config)
    assert config == before


@pytest.mark.parametrize("method", [None, "ngram", "custom_class", "Arctic"])
def test_unknown_method_is_an_error_naming_the_methods(method):
    config = {} if method is None else {"method": method}
    with pytest.raises(ArcticConfigError, match=r"'method'.*\('arctic', 'suffix'\)") as err:
        parse_options(config)
    assert repr(method) in str(err.value)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("suffix_decoding_max_tree_depth", "suffix_cache_max_depth"),
        ("suffix_decoding_max_cached_requests", "suffix_max_cached_requests"),
        ("suffix_decoding_max_spec_factor", "suffix_max_spec_factor"),
        ("suffix_decoding_min_token_prob", "suffix_min_token_prob"),
        ("suffix_decoding_max_spec_offset", "suffix_max_spec_offset"),
    ],
)
def test_one_option_under_two_aliases_is_an_error_naming_both(first, second):
    value = ALIASES[first][1]
    with pytest.raises(ArcticConfigError, match="twice") as err:
        parse_options({"method": "suffix", first: value, second: value})
    assert repr(first) in str(err.value) and repr(second) in str(err.value)


def test_unknown_key_is_an_error_naming_it_and_listing_valid_options():
    with pytest.raises(ArcticConfigError) as err:
        parse_options({"method": "suffix", "prompt_lookup_max": 4})
    message = str(err.value)
    assert "'prompt_lookup_max'" in message
    assert "valid options:" in message
    for name in ("num_speculative_tokens", "suffix_decoding_max_tree_depth", "model"):
        assert name in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num_speculative_tokens", True),  # bool for int
        ("num_speculative_tokens", 0),
        ("num_speculative_tokens", "8"),
        ("suffix_decoding_max_tree_depth", True),
        ("suffix_decoding_max_tree_depth", 2.0),
        ("suffix_cache_max_depth", -1),  # negative depth
        ("suffix_decoding_max_cached_requests", -1),
        ("suffix_decoding_max_cached_tokens", "many"),
        ("suffix_decoding_min_token_prob", 1.5),
        ("suffix_min_token_prob", -0.1),
        ("suffix_decoding_max_spec_factor", "2"),
        ("suffix_max_spec_factor", -1.0),
        ("suffix_decoding_max_spec_offset", False),
        ("suffix_decoding_eviction", "random"),
        ("suffix_decoding_namespace", "x"),
        ("suffix_decoding_adaptive", "no"),
        ("suffix_decoding_extend", 0),
        ("enable_suffix_decoding", 1),
        ("drafter_fp8", "yes"),
        ("drafter_cuda_graph", None),
        ("drafter_compile", "yes"),
        ("drafter_int8", 1),
        ("soft_batch_cap", 0),
        ("hard_batch_cap", False),
        ("backoff_threshold", 2),
        ("hybrid_drafter_cost", -1.0),
        ("model", 5),  # not a path
    ],
)
def test_bad_value_is_an_error_naming_key_and_value(key, value):
    with pytest.raises(ArcticConfigError) as err:
        parse_options({**ARCTIC, key: value})
    message = str(err.value)
    assert repr(key) in message, message
    assert repr(value) in message, message


def test_int8_and_fp8_drafters_exclude_each_other():
    with pytest.raises(ArcticConfigError, match=r"'drafter_int8'.*'drafter_fp8'.*exclude"):
        parse_options({**ARCTIC, "drafter_int8": True, "drafter_fp8": True})
    options, _ = parse_options({**ARCTIC, "drafter_fp8": True})
    assert options.drafter_int8 is None  # auto: the FP8 layers win


def test_hard_cap_below_soft_cap_is_an_error_naming_both():
    with pytest.raises(ArcticConfigError, match=r"hard_batch_cap=2 must be >= soft_batch_cap=4"):
        parse_options({**ARCTIC, "soft_batch_cap": 4, "hard_batch_cap": 2})
    options, _ = parse_options({**ARCTIC, "soft_batch_cap": 4, "hard_batch_cap": 4})
    assert (options.soft_batch_cap, options.hard_batch_cap) == (4, 4)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model", "/drafters/lstm"),
        ("enable_suffix_decoding", True),
        ("drafter_fp8", True),
        ("drafter_cuda_graph", False),
        ("drafter_compile", False),
        ("drafter_int8", True),
    ],
)
def test_method_suffix_with_a_drafter_key_is_an_error(key, value):
    with pytest.raises(ArcticConfigError, match=r"needs method 'arctic'") as err:
        parse_options({"method": "suffix", key: value})
    assert repr(key) in str(err.value)


@pytest.mark.parametrize("config", [{"method": "arctic"}, {"method": "arctic", "model": None}])
def test_method_arctic_without_model_is_an_error(config):
    with pytest.raises(
        ArcticConfigError, match=r"method 'arctic' needs speculative_config\['model'\]"
    ):
        parse_options(config)


# -- resolve_options: the drafter on disk against the target ---------------------------------


def test_resolve_fills_k_from_n_predict(drafter_dir, target_config):
    options, _ = parse_options({"method": "arctic", "model": str(drafter_dir)})
    resolved = resolve_options(options, target_config)
    assert resolved.num_speculative_tokens == 3  # the tiny drafters' n_predict
    assert dataclasses.replace(resolved, num_speculative_tokens=None) == options


def test_resolve_with_suffix_decoding_defaults_k_to_16(drafter_dir, target_config):
    options, _ = parse_options(
        {"method": "arctic", "model": str(drafter_dir), "enable_suffix_decoding": True}
    )
    assert resolve_options(options, target_config).num_speculative_tokens == 16


def test_resolve_keeps_an_explicit_k(lstm_drafter, target_config):
    options, _ = parse_options(
        {"method": "arctic", "model": str(lstm_drafter), "num_speculative_tokens": 2}
    )
    assert resolve_options(options, target_config).num_speculative_tokens == 2


def test_resolve_leaves_method_suffix_alone(target_config):
    options, _ = parse_options({"method": "suffix", "num_speculative_tokens": 5})
    assert resolve_options(options, target_config) == options


def test_resolve_missing_path_is_a_clear_error(tmp_path, target_config):
    missing = tmp_path / "no-such-drafter"
    options, _ = parse_options({"method": "arctic", "model": str(missing)})
    with pytest.raises(ArcticConfigError, match="is not a directory") as err:
        resolve_options(options, target_config)
    assert str(missing) in str(err.value)


def test_resolve_directory_without_config_json_is_a_clear_error(tmp_path, target_config):
    options, _ = parse_options({"method": "arctic", "model": str(tmp_path)})
    with pytest.raises(ArcticConfigError, match=r"has no config\.json") as err:
        resolve_options(options, target_config)
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize(
    ("vocab", "hidden", "message"),
    [
        (100, 256, r"drafter vocab_size 100 != target vocab_size 8192"),
        (8192, 64, r"drafter hidden_size 64 != target hidden_size 256"),
    ],
)
def test_resolve_drafter_for_another_target_is_a_clear_error(
    tmp_path, target_config, vocab, hidden, message
):
    path = save_drafter(
        build_speculator(MLPSpeculatorConfig(vocab_size=vocab, hidden_size=hidden, inner_dim=8)),
        tmp_path / "other",
    )
    options, _ = parse_options({"method": "arctic", "model": str(path)})
    with pytest.raises(ArcticConfigError, match=message) as err:
        resolve_options(options, target_config)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("k", [129, 10000, 2**63])
def test_num_speculative_tokens_beyond_what_vllm_verifies_is_refused_at_start_up(k):
    with pytest.raises(
        ArcticConfigError, match=rf"'num_speculative_tokens'\] must be an int in 1\.\.128, got {k}"
    ):
        parse_options({"method": "suffix", "num_speculative_tokens": k})
    options, _ = parse_options({"method": "suffix", "num_speculative_tokens": 128})
    assert options.num_speculative_tokens == 128


def test_the_cap_is_vllms_own():
    from vllm.v1.sample.rejection_sampler import MAX_SPEC_LEN

    from arctic_vllm.options import MAX_SPECULATIVE_TOKENS

    assert MAX_SPECULATIVE_TOKENS == MAX_SPEC_LEN


# -- the README's option table is the declarations ------------------------------------------


def _readme_rows() -> dict[str, tuple[list[str], str]]:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("| option (aliases) | default | meaning |") :].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`([^`]+)`", cells[0])
        rows[names[0]] = (names, cells[1])
    return rows


def test_readme_option_table_lists_every_declared_option_with_its_names_and_default():
    from arctic_vllm.option_spec import render_default
    from arctic_vllm.options import OPTIONS

    rows = _readme_rows()
    defaults = _defaults()
    documented = {spec.names[0] for spec in OPTIONS.values()}
    # Two rows are not ArcticOptions fields: vLLM's own K, and the patch's backend switch.
    assert set(rows) == documented | {"num_speculative_tokens", "suffix_decoding_backend"}
    for field, spec in OPTIONS.items():
        names, default = rows[spec.names[0]]
        assert tuple(names) == spec.names, field  # the same aliases, in the same order
        assert default.startswith(render_default(defaults[field])), (field, default)


def test_every_option_is_declared_once_with_help_and_a_kind():
    from arctic_vllm.options import OPTIONS

    names = [n for spec in OPTIONS.values() for n in spec.names]
    assert len(names) == len(set(names))  # no name sets two options
    assert all(spec.help for spec in OPTIONS.values())


def test_options_built_directly_are_validated_too():
    with pytest.raises(
        ArcticConfigError, match=r"'suffix_decoding_max_tree_depth'\] must be an int >= 1, got 0"
    ):
        ArcticOptions("suffix", 8, suffix_max_depth=0)
    with pytest.raises(
        ArcticConfigError, match=r"'num_speculative_tokens'\] must be an int in 1\.\.128"
    ):
        ArcticOptions("suffix", 1000)
    with pytest.raises(ArcticConfigError, match="needs speculative_config\\['model'\\]"):
        ArcticOptions("arctic", None)
    with pytest.raises(ArcticConfigError, match="exclude each other"):
        ArcticOptions("arctic", 3, drafter_path="/d", drafter_fp8=True, drafter_int8=True)
    assert ArcticOptions("suffix", 8).suffix_max_depth == 24


def test_arctic_inference_config_as_pasted():
    options, passthrough = parse_options(
        {
            "method": "arctic",
            "model": "/drafters/lstm",
            "num_speculative_tokens": 3,
            "enable_suffix_decoding": True,
            "disable_by_batch_size": 64,
            "hard_disable_by_batch_size": 128,
            "suffix_speculative_tokens": 24,
            "suffix_cache_max_depth": 64,
            "suffix_cache_max_requests": 100000,
            "suffix_max_spec_factor": 1.0,
            "suffix_max_spec_offset": 0.0,
            "suffix_min_token_prob": 0.1,
        }
    )
    assert passthrough == {}
    assert (options.draft_request_limit, options.hard_batch_cap) == (64, 128)
    assert options.suffix_max_depth == 64 and options.suffix_speculative_tokens == 24


def test_suffix_speculative_tokens_is_the_suffix_method_k():
    options, _ = parse_options({"method": "suffix", "suffix_speculative_tokens": 24})
    assert options.num_speculative_tokens == 24


@pytest.mark.parametrize(
    "table, why",
    [
        ([[2, 8, 3]], "start at batch size 1"),
        ([[1, 8, 3], [8, 16, 1]], "overlap"),
        ([[1, 0, 3]], "first <= last"),
        ([[1, 8, -1]], "num_tokens >= 0"),
        ([[1, 8]], "must be a list of"),
        ([], "must be a list of"),
        ("1-8:3", "must be a list of"),
        ([[1, 8, True]], "must be a list of"),
    ],
)
def test_a_bad_batch_size_table_names_the_key_and_why(table, why):
    with pytest.raises(ArcticConfigError, match="num_speculative_tokens_per_batch_size") as err:
        parse_options({**ARCTIC, "num_speculative_tokens_per_batch_size": table})
    assert why in str(err.value)


def test_the_batch_size_table_has_vllms_meaning():
    from arctic_runtime import SpeculationPolicy

    table = parse_options(
        {**ARCTIC, "num_speculative_tokens_per_batch_size": [[1, 4, 5], [9, 16, 2], [17, 32, 0]]}
    )[0].tokens_by_batch_size
    policy = SpeculationPolicy(4, tokens_by_batch_size=table)
    # K capped by the table; a gap (5-8) carries 5 forward, the tail carries 0.
    assert [policy.batch_tokens(b) for b in (1, 4, 5, 8, 9, 16, 17, 64)] == [4, 4, 4, 4, 2, 2, 0, 0]


def test_disable_by_batch_size_lets_only_that_many_requests_draft():
    from arctic_runtime import SpeculationPolicy

    policy = SpeculationPolicy(3, draft_request_limit=2, hard_batch_cap=5)
    assert policy.plan(2, ["a", "b"]) == {"a": 3, "b": 3}
    assert policy.plan(3, ["a", "b", "c"]) == {"a": 3, "b": 3, "c": 0}
    assert policy.plan(5, ["a", "b", "c", "d", "e"]) == dict.fromkeys("abcde", 0)
