"""Recipe: train the tiny Llama target model that every test and benchmark uses.

    uv run tools/train_target.py --out models/arctic-tiny-llama

Seeded and deterministic up to float reduction order. Corpus (offline, on every machine):
the running interpreter's standard-library sources and HumanEval prompts + solutions
(``arctic_vllm.bench``'s corpus), with 1 file in 20 and 1 task in 4 held out. A third of the
training sequences are copy/edit pairs ``<|file|>A<|edit|>A'`` (A' = A with a few edits): a
model trained on plain code alone rarely copies its context (shared/ENVIRONMENT.md), while
agentic traffic is copy-heavy, and speculation is worth measuring only on a model that
copies.
Measured: at this budget (1200 steps, ~4.9M tokens, ~48 min here) it has NOT learned to
copy (``heldout_copy_loss_*`` in training_report.json); a longer run is the open fix.

Output: a Hugging Face checkpoint directory (config.json, model.safetensors in bf16,
tokenizer files, generation_config.json, training_report.json) loadable by transformers and
by vLLM from its path.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from arctic_vllm.bench import (
    EDIT,
    EOS,
    FILE,
    SPECIAL_TOKENS,
    apply_edits,
    humaneval_tasks,
    stdlib_files,
    training_documents,
)


def train_tokenizer(vocab_size: int, out_dir: Path):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_documents(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=None,
        pad_token=EOS,
        additional_special_tokens=[FILE, EDIT],
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(out_dir)
    return fast


def build_stream(tokenizer, eos_id: int) -> np.ndarray:
    docs = list(training_documents())
    encoded = tokenizer(docs, add_special_tokens=False)["input_ids"]
    parts = []
    for ids in encoded:
        parts.append(np.asarray(ids, dtype=np.int32))
        parts.append(np.asarray([eos_id], dtype=np.int32))
    return np.concatenate(parts)


def build_copy_samples(
    tokenizer, n: int, seq_len: int, rng: random.Random, synthetic_fraction: float
) -> list[list[int]]:
    """``n`` sequences ``<|file|>chunk<|edit|>edited chunk<|endoftext|>`` of <= seq_len tokens.

    A ``synthetic_fraction`` of them copy a random token string instead of code, meant to
    make induction heads form early. Measured here it did not help at this budget (see the
    option's help); the model trained by the defaults does not copy either.
    """
    files = [f.text for f in stdlib_files("train")]
    files += [t.prompt + t.canonical_solution for t in humaneval_tasks("train")]
    budget = (seq_len - 3) // 2 - 8  # edits may lengthen the copy a little
    file_id, edit_id, eos_id = tokenizer.convert_tokens_to_ids([FILE, EDIT, EOS])
    n_special = len(SPECIAL_TOKENS)
    samples: list[list[int]] = []
    while len(samples) < n:
        if synthetic_fraction > 0 and rng.random() < synthetic_fraction:
            noise = [
                rng.randrange(n_special, len(tokenizer)) for _ in range(rng.randint(8, budget))
            ]
            samples.append([file_id, *noise, edit_id, *noise, eos_id])
            continue
        lines = rng.choice(files).split("\n")
        start = rng.randrange(len(lines))
        n_lines = rng.randint(4, 40)
        chunk = "\n".join(lines[start : start + n_lines]).strip("\n") + "\n"
        if len(chunk) < 40:
            continue
        edited = apply_edits(chunk, rng, rng.randint(0, 3))
        a = tokenizer(chunk, add_special_tokens=False)["input_ids"][:budget]
        b = tokenizer(edited, add_special_tokens=False)["input_ids"][: budget + 8]
        samples.append([file_id, *a, edit_id, *b, eos_id][:seq_len])
    return samples


def make_batch(
    stream: np.ndarray,
    copies: list[list[int]],
    batch: int,
    seq_len: int,
    copy_fraction: float,
    eos_id: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.full((batch, seq_len + 1), eos_id, dtype=np.int64)
    y_mask = np.ones((batch, seq_len), dtype=bool)
    for b in range(batch):
        if rng.random() < copy_fraction:
            ids = copies[int(rng.integers(len(copies)))]
            x[b, : len(ids)] = ids
            y_mask[b, len(ids) - 1 :] = False  # no loss on padding
        else:
            start = int(rng.integers(0, len(stream) - seq_len - 1))
            x[b] = stream[start : start + seq_len + 1]
    inputs = torch.from_numpy(x[:, :-1])
    labels = torch.from_numpy(x[:, 1:]).masked_fill(torch.from_numpy(~y_mask), -100)
    return inputs, labels


@torch.no_grad()
def heldout_loss(model, tokenizer, seq_len: int, max_windows: int = 64) -> float:
    ids: list[int] = []
    for f in stdlib_files("heldout"):
        ids += tokenizer(f.text, add_special_tokens=False)["input_ids"]
    windows = [ids[i : i + seq_len + 1] for i in range(0, len(ids) - seq_len - 1, seq_len)]
    windows = windows[:max_windows]
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), 8):
        x = torch.tensor(windows[i : i + 8])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x[:, :-1]).logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
        )
        total += loss.item()
        count += x[:, 1:].numel()
    model.train()
    return total / count


@torch.no_grad()
def copy_losses(model, tokenizer, n_files: int = 16, n_lines: int = 15) -> tuple[float, float]:
    """Mean loss on held-out chunks and on their verbatim re-emission after ``<|edit|>``."""
    file_id, edit_id = tokenizer.convert_tokens_to_ids([FILE, EDIT])
    firsts, seconds = [], []
    model.eval()
    for f in stdlib_files("heldout")[:n_files]:
        chunk = "\n".join(f.text.split("\n")[10 : 10 + n_lines]) + "\n"
        a = tokenizer(chunk, add_special_tokens=False)["input_ids"][:200]
        x = torch.tensor([[file_id, *a, edit_id, *a]])
        logp = torch.log_softmax(model(x).logits[0].float(), -1)
        nll = -logp[:-1].gather(1, x[0, 1:, None])[:, 0]
        n = len(a)
        firsts.append(nll[:n].mean().item())
        seconds.append(nll[n + 1 :].mean().item())
    model.train()
    return sum(firsts) / len(firsts), sum(seconds) / len(seconds)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("models/arctic-tiny-llama"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=768)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--copy-fraction", type=float, default=0.35)
    # 0.25 with --copy-fraction 0.5 --seq-len 384 --steps 1500 was tried: held-out loss 4.68
    # (worse) and still no copying (loss 9.16 -> 9.10 on a repeated random string).
    p.add_argument("--synthetic-copy-fraction", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    py_rng = random.Random(args.seed)
    np_rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    tokenizer = train_tokenizer(args.vocab_size, args.out)
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    stream = build_stream(tokenizer, eos_id)
    n_copies = int(args.steps * args.batch * args.copy_fraction * 1.2) + 64
    copies = build_copy_samples(
        tokenizer, n_copies, args.seq_len, py_rng, args.synthetic_copy_fraction
    )
    print(
        f"tokenizer + data: {time.perf_counter() - t0:.0f}s, stream {len(stream):,} tokens, "
        f"{len(copies):,} copy/edit samples"
    )

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters")

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    model.train()
    bar = tqdm(range(args.steps), desc="train target", unit="step")
    ema = None
    tokens_seen = 0
    t_train = time.perf_counter()
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        inputs, labels = make_batch(
            stream, copies, args.batch, args.seq_len, args.copy_fraction, eos_id, np_rng
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(inputs).logits
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens_seen += inputs.numel()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.set_postfix(
            loss=f"{ema:.3f}", tok_s=f"{tokens_seen / (time.perf_counter() - t_train):.0f}"
        )
    train_seconds = time.perf_counter() - t_train

    loss_heldout = heldout_loss(model, tokenizer, args.seq_len)
    copy_first, copy_second = copy_losses(model, tokenizer)
    print(f"held-out copy: loss {copy_first:.3f} on a file, {copy_second:.3f} on its re-emission")
    print(f"held-out loss (stdlib files never trained on): {loss_heldout:.3f}")

    model = model.to(torch.bfloat16)
    model.save_pretrained(args.out, safe_serialization=True)
    GenerationConfig(
        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id, do_sample=False
    ).save_pretrained(args.out)
    report = {
        "parameters": n_params,
        "steps": args.steps,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "tokens_seen": tokens_seen,
        "train_seconds": round(train_seconds, 1),
        "final_train_loss_ema": round(float(ema or 0.0), 4),
        "heldout_loss": round(loss_heldout, 4),
        "heldout_copy_loss_first": round(copy_first, 4),
        "heldout_copy_loss_second": round(copy_second, 4),
        "seed": args.seed,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    (args.out / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
