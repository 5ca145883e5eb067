"""The flags of ``arctic-train``, each validated where it is declared.

Every numeric flag has a range and every path flag a kind (an existing file, an existing
directory, a place to write), checked by its argparse ``type=`` before any work starts; a bad
value is one line on stderr naming the flag and the value, exit status 2.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from .config import MAX_INNER_DIM, MAX_N_PREDICT

PROG = "arctic-train"
# torch.manual_seed takes 64 bits, but generate derives per-shard seeds as seed * 100003 + s
# and numpy-style tools take 32: a 32-bit seed stays valid everywhere.
MAX_SEED = 2**32 - 1


class ArcticTrainParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``arctic-train: error: --batch-size must be >= 1, got 0``
    (no usage block; ``--help`` has it)."""

    def error(self, message: str) -> NoReturn:
        # argparse words a type= failure "argument --flag: <what the validator said>".
        found = re.fullmatch(r"argument (\S+): (must .*)", message, flags=re.DOTALL)
        if found:
            message = f"{found.group(1)} {found.group(2)}"
        self.exit(2, f"{PROG}: error: {message}\n")


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {value}")
        return value

    return parse


def float_in(
    low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite float in the interval (``*_open`` excludes that end)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if low_open else '>='} {low}, got {text}"
            )
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(
                f"must be {'<' if high_open else '<='} {high}, got {text}"
            )
        return value

    return parse


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"must be an existing file, got {text!r}")
    return text


def existing_dir(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"must be an existing directory, got {text!r}")
    return text


def model_dir(text: str) -> str:
    """A local transformers model directory (hub ids are not fetched: download them first)."""
    if not (Path(text) / "config.json").is_file():
        raise argparse.ArgumentTypeError(
            f"must be a local model directory with a config.json, got {text!r}"
        )
    return text


def dir_to_write(text: str) -> str:
    """A directory that exists or will be created (not an existing file)."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"must be a directory, got {text!r} (a file)")
    return text


def file_to_write(text: str) -> str:
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"must be a file path, got {text!r} (a directory)")
    if not Path(text).parent.is_dir():
        raise argparse.ArgumentTypeError(f"must be in an existing directory, got {text!r}")
    return text


POSITIVE = int_in(1)
SEED = int_in(0, MAX_SEED)


def _add_common(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand that is not given --debug leaves the top-level value alone.
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the Python traceback of an error (also: ARCTIC_DEBUG=1)",
    )


def build_parser() -> ArcticTrainParser:
    p = ArcticTrainParser(prog=PROG, description="Generate data, train and evaluate drafters.")
    p.add_argument("--threads", type=POSITIVE, default=None, help="torch.set_num_threads")
    p.add_argument(
        "--debug",
        action="store_true",
        default=False,
        help="show the Python traceback of an error (also: ARCTIC_DEBUG=1)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="stage 1: the target continues prompt chunks")
    g.add_argument("--target", required=True, type=model_dir)
    g.add_argument(
        "--prompts", required=True, type=existing_file, help="jsonl rows {'text'} or {'messages'}"
    )
    g.add_argument("--out", required=True, type=dir_to_write)
    g.add_argument("--prompt-len", type=POSITIVE, default=64)
    g.add_argument("--gen-len", type=POSITIVE, default=256)
    g.add_argument("--max-prompts", type=POSITIVE, default=None)
    g.add_argument("--batch-size", type=POSITIVE, default=32)
    g.add_argument("--temperature", type=float_in(0.0), default=1.0, help="0: greedy")
    g.add_argument("--top-k", type=int_in(0), default=10, help="0: no top-k filtering")
    g.add_argument("--greedy", action="store_true", help="temperature 0 (evaluation data)")
    g.add_argument("--seed", type=SEED, default=0)

    t = sub.add_parser("train", help="stage 2: distil a drafter on the target's hidden states")
    t.add_argument("--target", required=True, type=model_dir)
    t.add_argument("--data", required=True, type=existing_dir, help="output dir of `generate`")
    t.add_argument("--out", required=True, type=dir_to_write)
    t.add_argument("--kind", choices=["mlp", "lstm"], default="lstm")
    t.add_argument("--method", choices=["sum_lstm", "sum_rnn"], default="sum_lstm")
    t.add_argument("--inner-dim", type=int_in(1, MAX_INNER_DIM), default=256)
    t.add_argument("--n-predict", type=int_in(1, MAX_N_PREDICT), default=3)
    t.add_argument("--no-tie-weights", action="store_true")
    t.add_argument(
        "--cache",
        type=dir_to_write,
        default=None,
        help="dir to cache hidden states in / read them from",
    )
    t.add_argument("--steps", type=POSITIVE, default=3000)
    t.add_argument("--batch-positions", type=POSITIVE, default=1024)
    t.add_argument("--lr", type=float_in(0.0, low_open=True), default=1e-3)
    t.add_argument("--weight-decay", type=float_in(0.0), default=0.1)
    t.add_argument("--warmup-frac", type=float_in(0.0, 1.0, high_open=True), default=0.05)
    t.add_argument("--grad-clip", type=float_in(0.0, low_open=True), default=1.0)
    t.add_argument("--kl-weight", type=float_in(0.0), default=0.0)
    t.add_argument("--checkpoint-every", type=POSITIVE, default=100)
    t.add_argument("--seed", type=SEED, default=0)
    t.add_argument("--no-resume", action="store_true")
    t.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="bfloat16")

    e = sub.add_parser("evaluate", help="acceptance against greedy continuations")
    e.add_argument("--target", required=True, type=model_dir)
    e.add_argument(
        "--data",
        required=True,
        type=existing_dir,
        help="`generate --greedy` output on held-out prompts",
    )
    e.add_argument("--drafter", required=True, type=existing_dir)
    e.add_argument("--cache", type=dir_to_write, default=None)
    e.add_argument(
        "--n",
        type=int_in(1, MAX_N_PREDICT),
        default=None,
        help="draft length (default: the drafter's n_predict)",
    )

    q = sub.add_parser(
        "quantize",
        help="FP8 drafter layers rounded by GPTQ on the target's hidden states, saved beside "
        "the drafter for serving (needs arctic-kernels: the [fp8] extra)",
    )
    q.add_argument("--target", required=True, type=model_dir)
    q.add_argument(
        "--data",
        required=True,
        type=existing_dir,
        help="`generate` output to calibrate on (training)",
    )
    q.add_argument("--drafter", required=True, type=existing_dir)
    q.add_argument("--cache", type=dir_to_write, default=None)
    q.add_argument(
        "--positions", type=POSITIVE, default=8192, help="calibration positions (random)"
    )
    q.add_argument(
        "--activation-scheme", choices=["none", "per_token", "per_tensor"], default="none"
    )
    q.add_argument(
        "--logits-dtype", choices=["float32", "drafter"], default="float32",
        help="float32: no bf16 rounding ties in the FP8 heads' logits",
    )  # fmt: skip
    q.add_argument("--include-projections", action="store_true")
    q.add_argument(
        "--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16",
        help="the dtype the drafter is calibrated in (the target's serving dtype)",
    )  # fmt: skip
    q.add_argument("--seed", type=SEED, default=0)
    q.add_argument(
        "--out", type=file_to_write, default=None, help="default: <drafter>/fp8_layers.safetensors"
    )
    for subparser in (g, t, e, q):
        _add_common(subparser)
    return p
