"""Greedy generation through vLLM with tensor parallelism, one JSON line on stdout.

    python tools/tp_generate.py --tp 2 [--speculative-config JSON] > out.json

Used by integration_tests/test_tensor_parallel.py: TP > 1 needs vLLM's multiprocess
executor (one worker process per rank) and, on the CPU backend here, one core per rank
(VLLM_CPU_OMP_THREADS_BIND="0|1"), so it runs in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tp", type=int, default=2)
    p.add_argument("--speculative-config", type=json.loads, default=None)
    args = p.parse_args()
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if args.tp > 1 else "0"
    if args.tp > 1:
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "|".join(map(str, range(args.tp))))

    from transformers import AutoTokenizer

    from arctic_vllm.bench import TINY_MODEL, Engine, agentic_edit_requests

    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    requests = agentic_edit_requests(tokenizer, sessions=1, turns=2, max_chunk_tokens=120)
    with Engine(TINY_MODEL, args.speculative_config, tensor_parallel_size=args.tp) as engine:
        result = engine.generate([r.prompt_ids for r in requests], [r.max_tokens for r in requests])
    counters = result.counters
    print(json.dumps({"outputs": result.outputs, "accepted": counters.num_accepted_tokens}))


if __name__ == "__main__":
    main()
