"""ArcticProposer: vLLM's drafter object for methods 'arctic' and 'suffix'.

vLLM builds it through ``method="custom_class"`` (one per model runner, so one per worker
process) and, thanks to the model-runner patch, calls `propose_for_runner` once per step
after sampling. It turns vLLM's batch into arctic-runtime's lifecycle calls:

- the token sequence of each request is read from the input batch (prompt + every token
  vLLM has appended), so preemption, prefix caching and resumption need no special case:
  a request whose sequence no longer extends what we fed is restarted;
- the accepted length of last step's draft is ``len(sampled_token_ids[i]) - 1``, checked
  against the draft tokens vLLM actually scheduled;
- the hidden state for the drafter is the row of ``sample_hidden_states`` that produced the
  request's last sampled token (vLLM's models return the final-norm state).

A proposer exception never fails a step: that step runs without speculation, the error is
logged once with its traceback and counted.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import torch

from arctic_runtime import (
    DRAFTER,
    SUFFIX,
    Draft,
    DrafterProposer,
    DraftPlanner,
    HybridProposer,
    PlanRequest,
    Proposer,
    ProposeRequest,
    SpeculationPolicy,
    SuffixProposer,
    build_drafter,
    loop_capture,
)

from .draft_probs import can_hand_draft_probs, hand_draft_probs
from .exceptions import ArcticConfigError
from .metrics import ArcticMetrics
from .options import (
    OPTIONS_ATTR,
    REQUEST_MAX_TOKENS,
    REQUEST_NAMESPACE,
    REQUEST_SPECULATION,
    ArcticOptions,
    request_count,
    request_flag,
    undraftable,
)

logger = logging.getLogger("vllm.arctic")

# Seeded sampled requests get a global-tree namespace of their own: "arctic.seeded/<id>".
PRIVATE_NAMESPACE = "arctic.seeded/"
# Sampled draft tokens use a stream apart from vLLM's (which verifies them): seed ^ salt.
DRAFT_SEED_SALT = 0x5EED_A2C7


def _suffix_proposer(o: ArcticOptions) -> SuffixProposer:
    cached = o.suffix_max_cached_requests
    return SuffixProposer(
        max_depth=o.suffix_max_depth,
        max_spec_tokens=o.num_speculative_tokens or 1,
        max_spec_factor=o.suffix_max_spec_factor,
        max_spec_offset=o.suffix_max_spec_offset,
        min_token_prob=o.suffix_min_token_prob,
        max_cached_requests=cached,
        max_cached_tokens=o.suffix_max_cached_tokens,
        eviction=o.suffix_eviction,
        adaptive=o.suffix_adaptive,
        extend=o.suffix_extend,
    )


class ArcticProposer:
    def __init__(self, vllm_config: Any) -> None:
        spec = vllm_config.speculative_config
        options: ArcticOptions | None = getattr(spec, OPTIONS_ATTR, None)
        if options is None:
            raise ArcticConfigError(
                "arctic_vllm.proposer.ArcticProposer is built by the arctic plugin: use "
                "speculative_config={'method': 'arctic' | 'suffix', ...} with arctic-vllm "
                "installed (and not disabled by ARCTIC_VLLM_DISABLE)"
            )
        self.options = options
        self.num_speculative_tokens = int(spec.num_speculative_tokens)
        self.max_model_len = int(vllm_config.model_config.max_model_len)
        self.max_num_seqs = int(vllm_config.scheduler_config.max_num_seqs)
        self.policy = SpeculationPolicy(
            self.num_speculative_tokens,
            soft_batch_cap=options.soft_batch_cap,
            hard_batch_cap=options.hard_batch_cap,
            draft_request_limit=options.draft_request_limit,
            tokens_by_batch_size=options.tokens_by_batch_size,
            backoff_threshold=options.backoff_threshold,
        )
        self.metrics = ArcticMetrics()
        # Issue 18: draft lengths by the measured step cost (time between consecutive
        # propose_for_runner calls against the tokens each step scheduled) and acceptance.
        self.planner: DraftPlanner | None = None
        if options.cost_aware:
            sources: tuple[str, ...] = (SUFFIX,) if options.enable_suffix_decoding else ()
            if options.method == "arctic":
                sources += (DRAFTER,)
            self.planner = DraftPlanner(self.num_speculative_tokens, sources=sources)
        self.suffix = _suffix_proposer(options) if options.enable_suffix_decoding else None
        self.drafter: DrafterProposer | None = None
        self.proposer: Proposer | None = self.suffix if options.method == "suffix" else None
        self._fed: dict[str, list[int]] = {}  # what each request's proposer state holds
        self._last_draft: dict[str, Draft] = {}
        self._device = torch.device("cpu")  # the drafter's, once load_model has run
        # Seeded sampled requests (see _is_seeded_sample) -> the generator of their draft
        # draws; they also draft in a private suffix namespace.
        self._seeded: dict[str, torch.Generator] = {}
        self._shared_generator: torch.Generator | None = None  # unseeded requests'
        self._logged_failure = False
        if options.method == "suffix":
            logger.info(
                "arctic: suffix decoding (arctic-suffix), K=%d", self.num_speculative_tokens
            )

    # -- vLLM's drafter interface ------------------------------------------------------------
    def load_model(self, target_model: Any) -> None:
        """Called by vLLM after the target is loaded: the drafter goes on its device."""
        if self.options.method != "arctic":
            return
        from .tensor_parallel import tp_group

        param = next(target_model.parameters())
        o = self.options
        weights = (
            "fp8" if o.drafter_fp8 else {None: "auto", True: "int8", False: "none"}[o.drafter_int8]
        )
        group = tp_group()
        captured = loop_capture(
            param.device, cuda_graph=o.drafter_cuda_graph, compile=o.drafter_compile,
            tp_group=group,
        )  # fmt: skip
        if captured is not None:
            # Measured here: 1 min 44 s at server start, silent before this line existed.
            graphs = captured == "cuda_graph"
            logger.warning(
                "arctic: %s the draft loop (batch sizes up to %d); this takes a while on first "
                "start. Skip it with speculative_config 'drafter_compile': false%s (eager drafts)",
                "capturing CUDA graphs of" if graphs else "compiling (torch.compile)",
                self.max_num_seqs, ", 'drafter_cuda_graph': false" if graphs else "",
            )  # fmt: skip
        started = time.perf_counter()
        build = build_drafter(
            o.drafter_path or "",
            device=param.device,
            dtype=param.dtype,
            num_tokens=self.num_speculative_tokens,
            max_batch_size=self.max_num_seqs,
            weights=weights,
            cuda_graph=o.drafter_cuda_graph,
            compile=o.drafter_compile,
            tp_group=group,
        )
        self.drafter = build.proposer
        self.draft_mode = build.mode
        if captured is not None:
            logger.warning(
                "arctic: draft loop ready in %.1f s (%s)", time.perf_counter() - started, build.mode
            )
        shards = getattr(build.runner, "shard_sizes", None)
        if shards is not None:
            logger.info(
                "arctic: drafter heads vocab-parallel over vLLM's TP group (shards %s)", shards
            )
        self._device = param.device
        self._shared_generator = torch.Generator(param.device)
        self._shared_generator.manual_seed(DRAFT_SEED_SALT)
        if self.suffix is not None:
            self.proposer = HybridProposer(
                self.suffix, self.drafter, drafter_cost=o.hybrid_drafter_cost
            )
        else:
            self.proposer = self.drafter
        logger.info(
            "arctic: drafter %s (%s, n_predict=%d) on %s %s%s%s, K=%d, draft loop %s",
            o.drafter_path, type(build.speculator).__name__, build.speculator.config.n_predict,
            param.device, param.dtype, build.weights,
            " + suffix decoding (hybrid)" if self.suffix is not None else "",
            self.num_speculative_tokens, self.draft_mode,
        )  # fmt: skip

    def propose(self, *args: Any, **kwargs: Any) -> list[list[int]]:
        raise RuntimeError(
            "ArcticProposer.propose was called by vLLM's custom_class path: the arctic "
            "model-runner patch is not applied in this process (see arctic_vllm.patches)"
        )

    # -- the step ------------------------------------------------------------------------------
    def propose_for_runner(
        self,
        runner: Any,
        scheduler_output: Any,
        sampled_token_ids: Sequence[Sequence[int]],
        sample_hidden_states: torch.Tensor | None,
        spec_decode_metadata: Any,
    ) -> list[list[int]]:
        batch = runner.input_batch
        num_reqs = len(batch.req_ids)
        for req_id in scheduler_output.finished_req_ids:
            self._stop(req_id)
        drafts: list[list[int]] = [[] for _ in range(num_reqs)]
        if self.proposer is None:
            return drafts
        try:
            self._step(runner, scheduler_output, sampled_token_ids, sample_hidden_states,
                       spec_decode_metadata, drafts)  # fmt: skip
        except Exception:
            self.metrics.failure()
            if not self._logged_failure:
                self._logged_failure = True
                logger.exception(
                    "arctic: the proposer raised; this step runs without speculation "
                    "(logged once; counted in vllm:arctic_spec_decode_proposer_failures)"
                )
            # State may be half-updated: restart every request's proposer state next step.
            for req_id in list(self._fed):
                self._stop(req_id)
            return [[] for _ in range(num_reqs)]
        if self.planner is not None:
            self.metrics.planned(self.planner.counters.as_dict())
        self.metrics.maybe_log()
        return drafts

    def _step(
        self,
        runner: Any,
        scheduler_output: Any,
        sampled_token_ids: Sequence[Sequence[int]],
        sample_hidden_states: torch.Tensor | None,
        spec_decode_metadata: Any,
        drafts: list[list[int]],
    ) -> None:
        assert self.proposer is not None
        batch = runner.input_batch
        scheduled_drafts = scheduler_output.scheduled_spec_decode_tokens
        if self.planner is not None:
            self.planner.begin_step(int(scheduler_output.total_num_scheduled_tokens))
        num_draft_rows = (
            list(spec_decode_metadata.num_draft_tokens)
            if spec_decode_metadata is not None
            else None
        )
        # (batch row, request id, room left before max_model_len, last token, hidden state)
        candidates: list[tuple[int, str, int, int, torch.Tensor | None]] = []
        offset = 0
        decoding = 0  # requests that emit a token this step
        for i, req_id in enumerate(batch.req_ids):
            sampled = sampled_token_ids[i]
            row_offset = offset
            offset += (num_draft_rows[i] if num_draft_rows is not None else 0) + 1
            if not sampled:
                continue  # a chunk of a prefill: nothing sampled, nothing to draft from
            decoding += 1
            self._feedback(req_id, scheduled_drafts.get(req_id, ()), len(sampled) - 1)
            num_tokens = int(batch.num_tokens_no_spec[i])
            self._sync(runner, i, req_id, num_tokens)
            room = self.max_model_len - num_tokens - 1
            # A draft past the request's max_tokens is verified for nothing: at most
            # max_tokens - generated - 1 (the bonus token is the last one).
            left = self._output_left(runner, i, req_id, num_tokens)
            if left is not None:
                room = min(room, left - 1)
            if room < 1:
                continue
            hidden = None
            if self.proposer.needs_hidden_states and sample_hidden_states is not None:
                hidden = sample_hidden_states[row_offset + len(sampled) - 1]
            candidates.append((i, req_id, room, int(sampled[-1]), hidden))
        plan = self.policy.plan(len(candidates), [c[1] for c in candidates])
        caps = {req_id: min(room, plan[req_id]) for _, req_id, room, _, _ in candidates}
        if self.planner is not None:
            # The next step schedules this one's tokens less its drafts, plus ours.
            base = int(scheduler_output.total_num_scheduled_tokens) - sum(
                len(t) for t in scheduled_drafts.values()
            )
            allowed = self.planner.plan(
                [PlanRequest(q, caps[q], fixed=q in self._seeded) for q in caps],
                base_tokens=max(base, decoding),
                outputs=decoding,
            )
            caps = {
                q: cap if k > 0 else 0 for (q, cap), k in zip(caps.items(), allowed, strict=True)
            }
        active = [
            (i, self._request(runner, req_id, caps[req_id], last, hidden))
            for i, req_id, _, last, hidden in candidates
            if caps[req_id] > 0
        ]
        if not active:
            return
        if self.planner is None:
            proposed = self.proposer.propose([r for _, r in active])
            lengths = {r.req_id: r.max_tokens for _, r in active}
        else:
            # Drafted to the cap; each draft is then cut to what its own curve earns (a
            # suffix draft's match length is known only now).
            with self.planner.drafting(len(active)):
                proposed = self.proposer.propose([r for _, r in active])
            lengths = self.planner.refine(
                {r.req_id: d for (_, r), d in zip(active, proposed, strict=True)}
            )
        by_row: dict[int, Draft] = {}
        for (i, r), draft in zip(active, proposed, strict=True):
            if draft is None or len(draft) == 0 or lengths[r.req_id] == 0:
                continue
            draft = draft.truncated(min(r.max_tokens, lengths[r.req_id]))
            if draft.is_tree:
                raise ValueError("vLLM verifies one path per request; a tree draft was proposed")
            self._last_draft[r.req_id] = draft
            drafts[i] = list(draft.token_ids)
            by_row[i] = draft
        if any(d.probs is not None for d in by_row.values()):
            hand_draft_probs(runner, by_row, num_reqs=len(batch.req_ids))

    def _request(
        self, runner: Any, req_id: str, max_tokens: int, last: int, hidden: torch.Tensor | None
    ) -> ProposeRequest:
        temperature, generator = 0.0, None
        if (
            self.drafter is not None
            and self.options.drafter_sampling
            and can_hand_draft_probs(runner)
        ):
            params = self._sampling_params(runner, req_id)
            temperature = float(getattr(params, "temperature", 0.0) or 0.0)
            if temperature > 0:
                generator = self._seeded.get(req_id, self._shared_generator)
        return ProposeRequest(
            req_id, max_tokens, last, hidden, req_id in self._seeded, temperature, generator
        )

    # -- per-request bookkeeping ------------------------------------------------------------
    def _feedback(self, req_id: str, scheduled: Sequence[int], num_accepted: int) -> None:
        draft = self._last_draft.pop(req_id, None)
        if draft is None or not scheduled:
            return
        n = len(scheduled)  # vLLM may schedule fewer draft tokens than we proposed
        accepted = max(0, min(num_accepted, n))
        if tuple(scheduled) != draft.token_ids[:n]:
            return  # not our draft (a restarted request): no feedback
        draft = draft.truncated(n)
        assert self.proposer is not None
        self.proposer.record(req_id, draft, accepted)
        if self.planner is not None:
            self.planner.record(req_id, draft, accepted)
        if draft.source == DRAFTER:
            # Backoff saves the drafter's forward on requests it keeps failing; a suffix
            # draft costs ~nothing to propose and exists only on a match (measured: backing
            # off suffix drafts cost 3-9% more steps on every workload here).
            self.policy.record(req_id, n, accepted)
        self.metrics.record(req_id, draft.source, n, accepted)

    def _sync(self, runner: Any, index: int, req_id: str, num_tokens: int) -> None:
        """Bring the proposer's view of the request up to the runner's token sequence."""
        assert self.proposer is not None
        batch = runner.input_batch
        tokens = batch.token_ids_cpu[index, :num_tokens]
        fed = self._fed.get(req_id)
        # The tail of what we fed must still be there (a whole-sequence compare would cost
        # O(length) per step); a reused id or a rewound sequence restarts the request.
        if fed is not None:
            tail = min(len(fed), 16)
            if (
                len(fed) > num_tokens
                or [int(t) for t in tokens[len(fed) - tail : len(fed)]] != fed[-tail:]
            ):
                self._stop(req_id)
                fed = None
        if fed is None:
            num_prompt = int(batch.num_prompt_tokens[index])
            prompt = [int(t) for t in tokens[:num_prompt]]
            namespace = self._namespace(runner, req_id)
            if self._is_seeded_sample(runner, req_id):
                # Drafts from its own tokens only: a namespace no other request shares, and
                # its response is evicted when it stops (see _stop); sampled drafter tokens
                # from a generator of its own, seeded by the request's seed.
                namespace = f"{PRIVATE_NAMESPACE}{req_id}"
                seed = int(self._sampling_params(runner, req_id).seed)
                self._seeded[req_id] = torch.Generator(self._device).manual_seed(
                    seed ^ DRAFT_SEED_SALT
                )
            self.proposer.start_request(req_id, prompt, namespace)
            self._configure(runner, req_id)
            fed = self._fed[req_id] = prompt
        if num_tokens > len(fed):
            new = [int(t) for t in tokens[len(fed) : num_tokens]]
            self.proposer.accept_tokens(req_id, new)
            fed.extend(new)

    def _stop(self, req_id: str) -> None:
        if self._fed.pop(req_id, None) is None:
            return
        self._last_draft.pop(req_id, None)
        self.policy.forget(req_id)
        if self.planner is not None:
            self.planner.forget(req_id)
        self.metrics.finish(req_id)
        if self.proposer is not None:
            self.proposer.stop_request(req_id)
        if self._seeded.pop(req_id, None) is not None and self.suffix is not None:
            # Nobody reads its private namespace; KeyError: it was not cached (an
            # empty response, or the global cache is off).
            with contextlib.suppress(KeyError):
                self.suffix.cache.evict(req_id)

    @staticmethod
    def _sampling_params(runner: Any, req_id: str) -> Any:
        return getattr(runner.requests.get(req_id), "sampling_params", None)

    def _is_seeded_sample(self, runner: Any, req_id: str) -> bool:
        """Seeded and sampled: its output reproduces only if its drafts do (vLLM's
        rejection sampler draws per draft token from the request's own generator)."""
        params = self._sampling_params(runner, req_id)
        seed = getattr(params, "seed", None)
        temperature = getattr(params, "temperature", 0.0) or 0.0
        return seed is not None and float(temperature) > 0.0

    def _output_left(self, runner: Any, index: int, req_id: str, num_tokens: int) -> int | None:
        """Tokens the request may still generate (None: no max_tokens to go by)."""
        max_tokens = getattr(self._sampling_params(runner, req_id), "max_tokens", None)
        if max_tokens is None:
            return None
        generated = num_tokens - int(runner.input_batch.num_prompt_tokens[index])
        return int(max_tokens) - generated

    def _extra_args(self, runner: Any, req_id: str) -> dict[str, Any]:
        extra = getattr(self._sampling_params(runner, req_id), "extra_args", None)
        return extra if isinstance(extra, dict) else {}

    def _configure(self, runner: Any, req_id: str) -> None:
        extra = self._extra_args(runner, req_id)
        enabled, cap = True, None
        try:
            if REQUEST_SPECULATION in extra:
                enabled = request_flag(REQUEST_SPECULATION, extra[REQUEST_SPECULATION])
        except ValueError as exc:
            logger.warning("arctic: request %s: %s; speculation stays on", req_id, exc)
        try:
            if extra.get(REQUEST_MAX_TOKENS) is not None:
                cap = request_count(REQUEST_MAX_TOKENS, extra[REQUEST_MAX_TOKENS])
        except ValueError as exc:
            logger.warning("arctic: request %s: %s; ignored", req_id, exc)
        reason = undraftable(self._sampling_params(runner, req_id))
        if reason is not None:
            # vLLM's rejection sampler would not apply it to draft positions; undrafted,
            # the request is sampled by vLLM's ordinary sampler, exactly.
            logger.debug("arctic: request %s sets %s: no speculation for it", req_id, reason)
            enabled = False
        self.policy.set_request(req_id, enabled=enabled, max_tokens=cap)

    def _namespace(self, runner: Any, req_id: str) -> str:
        source = self.options.suffix_namespace_source
        if source == "lora":
            lora = getattr(runner.requests.get(req_id), "lora_request", None)
            return "" if lora is None else str(lora.lora_name)
        if source == "request":
            value = self._extra_args(runner, req_id).get(REQUEST_NAMESPACE, "")
            return str(value)
        return ""
