"""Show what the tiny target writes: greedy continuations of held-out code, via transformers.

    uv run tools/sample_target.py [--model DIR] [--tokens 64]

Prints, for a held-out HumanEval prompt and the start of a held-out standard-library file,
the prompt's last lines and the model's greedy continuation, plus its held-out loss from
``training_report.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from arctic_vllm.bench import TINY_MODEL, humaneval_prompt, humaneval_tasks, stdlib_files


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", type=Path, default=TINY_MODEL)
    p.add_argument("--tokens", type=int, default=64)
    args = p.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    heldout_file = next(f for f in stdlib_files("heldout") if f.text.count("\n") > 40)
    prompts = {
        humaneval_tasks("heldout")[1].task_id: humaneval_prompt(
            humaneval_tasks("heldout")[1].prompt
        ),
        heldout_file.rel_path: "\n".join(heldout_file.text.split("\n")[:30]) + "\n",
    }
    for name, prompt in prompts.items():
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=args.tokens, do_sample=False)
        tail = "\n".join(prompt.rstrip("\n").split("\n")[-6:])
        print(f"===== {name} (held out) — prompt tail:\n{tail}")
        print(f"----- greedy continuation ({args.tokens} tokens):")
        print(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=False))
    report = json.loads((args.model / "training_report.json").read_text())
    print(
        f"\nheld-out loss: {report['heldout_loss']:.3f} nats/token "
        f"({report['parameters'] / 1e6:.2f}M parameters, {report['tokens_seen']:,} tokens seen)"
    )


if __name__ == "__main__":
    main()
