"""A random, tiny transformers Llama as the target in tests (no download)."""

from __future__ import annotations

import torch

transformers = __import__("pytest").importorskip("transformers")


class CharTokenizer:
    """Enough of a tokenizer for load_prompts: one id per character."""

    chat_template = None

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [1 + ord(c) % (self.vocab - 1) for c in text]}


def random_prompts(n: int, length: int = 8, seed: int = 0) -> list[list[int]]:
    """``n`` seeded prompts of ``length`` tokens in 1..63: within tiny_llama's default vocabulary,
    never its pad/bos/eos token 0."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 64, (n, length), generator=g).tolist()


def tiny_llama(vocab: int = 64, hidden: int = 16, max_pos: int = 64, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_pos,
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=True,
    )
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():  # sharper logits than the default init: greedy text is not uniform
        model.model.embed_tokens.weight.mul_(20)
    return model.eval().requires_grad_(False)
