"""The README's "Train your own drafter" commands, end to end, for a target that is not the
bundled one: a Llama built here with its own tokenizer (a 1024-token byte-level BPE trained
by `tokenizers`) and hidden size (128; the bundled model: 8192 tokens, 256). Its answers are
generated through vLLM, the drafter is distilled with the target in the loop, and served
through vLLM with method "arctic": greedy output is token for token the same as without
speculation, and drafts are accepted.

The target has random weights (sharpened embeddings, so its greedy text is not noise): this
checks the pipeline, not the drafter's quality.
"""

from __future__ import annotations

import json

import pytest
import torch

from arctic_drafters import load_drafter
from arctic_drafters.cli import main
from arctic_vllm.bench import Engine, configure_cpu_env, stdlib_files

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

PROMPT_LEN, GEN_LEN = 32, 64


def _second_target(out):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [f.text for f in stdlib_files("train")[:60]]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=["<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|eos|>", pad_token="<|eos|>", bos_token="<|eos|>"
    )
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=1024, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=True,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(20)
    model.save_pretrained(out)
    return fast


def _rows(path, files):
    path.write_text("".join(json.dumps({"text": f.text}) + "\n" for f in files))
    return str(path)


def test_a_drafter_trained_by_the_readme_commands_serves_losslessly(tmp_path):
    configure_cpu_env()
    target = tmp_path / "my-target"
    tokenizer = _second_target(target)
    heldout = stdlib_files("heldout")
    prompts = _rows(tmp_path / "my_prompts.jsonl", stdlib_files("train")[:60])
    held = _rows(tmp_path / "heldout.jsonl", heldout[:10])
    sizes = ["--prompt-len", str(PROMPT_LEN), "--gen-len", str(GEN_LEN)]
    vllm = ["--engine", "vllm", "--dtype", "float32", "--vllm-kwargs", '{"enforce_eager": true}']
    t = str(target)
    # 1. The target answers the prompts (vLLM), and greedy held-out answers for evaluation.
    assert main(["generate", "--target", t, "--prompts", prompts, "--out", str(tmp_path / "data"),
                 "--max-prompts", "256", *sizes, *vllm]) == 0  # fmt: skip
    assert main(["generate", "--target", t, "--prompts", held, "--out", str(tmp_path / "eval"),
                 "--max-prompts", "16", "--greedy", *sizes, *vllm]) == 0  # fmt: skip
    # 2. Distil the drafter with the target in the loop; the held-out table at the end.
    run = tmp_path / "run"
    assert main(["train", "--target", t, "--data", str(tmp_path / "data"), "--eval-data",
                 str(tmp_path / "eval"), "--out", str(run), "--steps", "200", "--batch-sequences",
                 "16", "--inner-dim", "128", "--lr", "3e-3", "--kl-weight", "0.5",
                 "--tensorboard", "off"]) == 0  # fmt: skip
    drafter = load_drafter(run / "final")
    assert (drafter.config.vocab_size, drafter.config.hidden_size) == (1024, 128)
    assert drafter.config.base_model_archs == ("LlamaForCausalLM",)
    assert json.loads((run / "acceptance.json").read_text())["mean_accepted"] > 0
    # 3. Serve it through vLLM with method "arctic": the same greedy text, drafts accepted.
    ids = [tokenizer(f.text)["input_ids"][:PROMPT_LEN] for f in heldout[10:14]]
    with Engine(target, None, max_model_len=256) as engine:
        baseline = engine.generate(ids, GEN_LEN)
    spec = {"method": "arctic", "model": str(run / "final")}
    with Engine(target, spec, max_model_len=256) as engine:
        served = engine.generate(ids, GEN_LEN)
    assert served.outputs == baseline.outputs
    assert served.counters.num_drafts > 0 and served.counters.num_accepted_tokens > 0
