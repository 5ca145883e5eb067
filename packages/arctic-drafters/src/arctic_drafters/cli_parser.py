"""The flags of ``arctic-train``, each validated where it is declared.

Every numeric flag has a range and every path flag a kind (an existing file, an existing
directory, a place to write), checked by its argparse ``type=`` before any work starts; a bad
value is one line on stderr naming the flag and the value, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from .config import MAX_INNER_DIM, MAX_N_PREDICT
from .export import EXPORT_FORMATS
from .training.distributed import DEVICES, PRECISIONS

PROG = "arctic-train"
# torch.manual_seed takes 64 bits, but generate derives per-shard seeds as seed * 100003 + s
# and numpy-style tools take 32: a 32-bit seed stays valid everywhere.
MAX_SEED = 2**32 - 1


class ArcticTrainParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``arctic-train: error: --batch-size must be >= 1, got 0``
    (no usage block; ``--help`` has it)."""

    subcommands: dict[str, argparse.ArgumentParser]  # set by build_parser, read by --config

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


def prompt_source(text: str) -> str:
    """An existing prompt file, or a Hugging Face dataset name (``org/name``, no file there)."""
    path = Path(text)
    if path.is_file():
        return text
    looks_local = path.is_absolute() or text.startswith(".") or path.suffix != "" or path.exists()
    if looks_local:
        raise argparse.ArgumentTypeError(
            f"must be an existing file or a Hugging Face dataset name, got {text!r}"
        )
    return text


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return value


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


def _sub(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--config",
        type=existing_file,
        default=None,
        help="YAML file of this command's flags (keys as the flags, with - or _; a section "
        f"named '{name}' is read if present); flags given on the command line override it",
    )
    return parser


def _add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto: CUDA (cuda:LOCAL_RANK) if present"
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bf16 autocast on CUDA (target in bf16, drafter master weights fp32), fp32 "
        "on the CPU",
    )
    p.add_argument(
        "--shard-target",
        action="store_true",
        help="under torchrun: shard the frozen target over the processes with FSDP2 (when it "
        "does not fit one device) instead of replicating it",
    )
    p.add_argument(
        "--batch-sequences",
        type=POSITIVE,
        default=32,
        help="sequences per step over all processes (train: the global batch; evaluate: per "
        "target forward)",
    )


def build_parser() -> ArcticTrainParser:
    p = ArcticTrainParser(
        prog=PROG,
        description="Generate data, train and evaluate drafters.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--threads", type=POSITIVE, default=None, help="torch.set_num_threads")
    p.add_argument(
        "--debug",
        action="store_true",
        default=False,
        help="show the Python traceback of an error (also: ARCTIC_DEBUG=1)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    g = _sub(sub, "generate", "stage 1: the target answers the prompts (vLLM or transformers)")
    g.add_argument("--target", required=True, type=model_dir, help="the target's model directory")
    g.add_argument(
        "--prompts",
        required=True,
        type=prompt_source,
        help="a jsonl / parquet / arrow file of rows {'text'}, {'messages'} or "
        "{'conversations'}, or a Hugging Face dataset name (needs `datasets`)",
    )
    g.add_argument("--split", default="train", help="the split of a Hugging Face dataset")
    g.add_argument("--text-field", default="text", help="the column holding plain text")
    g.add_argument("--out", required=True, type=dir_to_write, help="the data directory to write")
    g.add_argument(
        "--chat",
        action="store_true",
        help="one prompt per conversation (up to its last user turn) through the target's chat "
        "template; the answer ends at EOS. Default: text cut into --prompt-len chunks",
    )
    g.add_argument("--prompt-len", type=POSITIVE, default=64, help="tokens per prompt chunk")
    g.add_argument(
        "--max-prompt-len", type=POSITIVE, default=1024, help="--chat: longer prompts are skipped"
    )
    g.add_argument("--gen-len", type=POSITIVE, default=256, help="tokens the target writes")
    g.add_argument("--max-prompts", type=POSITIVE, default=None, help="use the first N prompts")
    g.add_argument(
        "--engine",
        choices=["auto", "vllm", "transformers"],
        default="auto",
        help="auto: vLLM when it imports, else transformers",
    )
    g.add_argument(
        "--batch-size", type=POSITIVE, default=32, help="transformers: prompts per generate call"
    )
    g.add_argument(
        "--shard-size", type=POSITIVE, default=512, help="sequences per shard (the resume unit)"
    )
    g.add_argument("--tensor-parallel-size", type=POSITIVE, default=1, help="vLLM: GPUs per engine")
    g.add_argument(
        "--data-parallel-size",
        type=POSITIVE,
        default=1,
        help="vLLM: engines (worker processes), each on its own --tensor-parallel-size GPUs, "
        "sharing the shards",
    )
    g.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        default="auto",
        help="the target's weights (auto: vLLM: the checkpoint's; transformers: bf16 on CUDA, "
        "fp32 on the CPU)",
    )
    g.add_argument(
        "--vllm-kwargs",
        type=json_object,
        default=None,
        help="JSON object passed to vllm.LLM, e.g. '{\"gpu_memory_utilization\": 0.8}'",
    )
    g.add_argument(
        "--temperature",
        type=float_in(0.0),
        default=1.0,
        help="sampling temperature (ArcticTraining: 1.0); 0: greedy",
    )
    g.add_argument("--top-k", type=int_in(0), default=10, help="0: no top-k filtering")
    g.add_argument("--greedy", action="store_true", help="temperature 0 (evaluation data)")
    g.add_argument("--seed", type=SEED, default=0, help="seeds every prompt's sample")

    t = _sub(sub, "train", "stage 2: distil a drafter from the frozen target")
    t.add_argument("--target", required=True, type=model_dir, help="the target's model directory")
    t.add_argument("--data", required=True, type=existing_dir, help="output dir of `generate`")
    t.add_argument("--out", required=True, type=dir_to_write, help="run directory")
    t.add_argument(
        "--eval-data",
        type=existing_dir,
        default=None,
        help="held-out `generate --greedy` output: the acceptance table after training",
    )
    t.add_argument("--kind", choices=["mlp", "lstm"], default="lstm", help="drafter family")
    t.add_argument(
        "--method", choices=["sum_lstm", "sum_rnn"], default="sum_lstm", help="LSTM variant"
    )
    t.add_argument(
        "--inner-dim", type=int_in(1, MAX_INNER_DIM), default=256, help="drafter state width"
    )
    t.add_argument(
        "--n-predict", type=int_in(1, MAX_N_PREDICT), default=3, help="heads (draft length)"
    )
    t.add_argument("--no-tie-weights", action="store_true", help="one set of weights per head")
    t.add_argument(
        "--cache",
        type=dir_to_write,
        default=None,
        help="the in-memory path (one process, small data): every hidden state computed once "
        "and cached in this dir. Default: the target runs in the loop",
    )
    t.add_argument("--steps", type=POSITIVE, default=3000, help="optimizer steps")
    _add_runtime(t)
    t.add_argument(
        "--micro-batch-sequences",
        type=POSITIVE,
        default=None,
        help="sequences per forward per process; gradients accumulate over batch / "
        "(processes x this) micro-batches (default: no accumulation)",
    )
    t.add_argument(
        "--batch-positions",
        type=POSITIVE,
        default=None,
        help="--cache runs: random positions per step (1024 if not given)",
    )
    t.add_argument("--lr", type=float_in(0.0, low_open=True), default=1e-3, help="AdamW lr")
    t.add_argument(
        "--weight-decay", type=float_in(0.0), default=0.1, help="AdamW weight decay (not norms)"
    )
    t.add_argument(
        "--warmup-frac",
        type=float_in(0.0, 1.0, high_open=True),
        default=0.05,
        help="linear warmup share of the steps, then cosine to 0",
    )
    t.add_argument(
        "--grad-clip", type=float_in(0.0, low_open=True), default=1.0, help="gradient norm clip"
    )
    t.add_argument(
        "--kl-weight", type=float_in(0.0), default=0.0, help="weight of KL(target || head)"
    )
    t.add_argument(
        "--checkpoint-every", type=POSITIVE, default=100, help="steps between checkpoints"
    )
    t.add_argument(
        "--stop-after-steps",
        type=POSITIVE,
        default=None,
        help="return after N steps of this run, checkpointed (time-limited jobs: rerun to go on)",
    )
    t.add_argument(
        "--tensorboard",
        choices=["auto", "on", "off"],
        default="auto",
        help="event files in <out>/tensorboard (auto: if tensorboard is installed); "
        "<out>/log.jsonl is always written",
    )
    t.add_argument("--seed", type=SEED, default=0, help="drafter init and data order")
    t.add_argument("--no-resume", action="store_true", help="ignore a checkpoint in --out")
    t.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default="bfloat16",
        help="the saved drafter's weights",
    )

    e = _sub(sub, "evaluate", "acceptance against greedy continuations")
    e.add_argument("--target", required=True, type=model_dir, help="the target's model directory")
    e.add_argument(
        "--data",
        required=True,
        type=existing_dir,
        help="`generate --greedy` output on held-out prompts",
    )
    e.add_argument("--drafter", required=True, type=existing_dir, help="the drafter's directory")
    e.add_argument(
        "--cache",
        type=dir_to_write,
        default=None,
        help="in-memory path: cache the hidden states here (default: the target in the loop)",
    )
    e.add_argument(
        "--n",
        type=int_in(1, MAX_N_PREDICT),
        default=None,
        help="draft length (default: the drafter's n_predict)",
    )
    _add_runtime(e)

    q = _sub(
        sub,
        "quantize",
        "FP8 drafter layers rounded by GPTQ on the target's hidden states, saved beside "
        "the drafter for serving (needs arctic-kernels: the [fp8] extra)",
    )
    q.add_argument("--target", required=True, type=model_dir, help="the target's model directory")
    q.add_argument(
        "--data",
        required=True,
        type=existing_dir,
        help="`generate` output to calibrate on (training)",
    )
    q.add_argument("--drafter", required=True, type=existing_dir, help="the drafter's directory")
    q.add_argument("--cache", type=dir_to_write, default=None, help="cache the hidden states here")
    q.add_argument(
        "--positions", type=POSITIVE, default=8192, help="calibration positions (random)"
    )
    q.add_argument(
        "--activation-scheme",
        choices=["none", "per_token", "per_tensor"],
        default="none",
        help="none: weight-only FP8",
    )
    q.add_argument(
        "--logits-dtype", choices=["float32", "drafter"], default="float32",
        help="float32: no bf16 rounding ties in the FP8 heads' logits",
    )  # fmt: skip
    q.add_argument(
        "--include-projections", action="store_true", help="quantize the projections too"
    )
    q.add_argument(
        "--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16",
        help="the dtype the drafter is calibrated in (the target's serving dtype)",
    )  # fmt: skip
    q.add_argument("--seed", type=SEED, default=0, help="picks the calibration positions")
    q.add_argument(
        "--out", type=file_to_write, default=None, help="default: <drafter>/fp8_layers.safetensors"
    )
    p.subcommands = {"generate": g, "train": t, "evaluate": e, "quantize": q}
    x = sub.add_parser(
        "export",
        help="write a drafter for Arctic Inference (--format arctic) or vLLM's MLPSpeculator "
        "(--format mlp_speculator, MLP drafters only)",
    )
    x.add_argument("--drafter", required=True, type=existing_dir)
    x.add_argument("--out", required=True, type=dir_to_write)
    x.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    x.add_argument(
        "--base-model-arch", action="append", dest="base_model_archs", default=None,
        help="the target's architecture, e.g. LlamaForCausalLM (repeatable); default: the "
        "drafter's recorded base_model_archs, else --target's architectures",
    )  # fmt: skip
    x.add_argument(
        "--target", type=model_dir, default=None,
        help="check the drafter against this target's config.json (and take its architectures)",
    )  # fmt: skip
    x.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    for subparser in (g, t, e, q, x):
        _add_common(subparser)
    return p


ONLINE_ONLY = ("eval_data", "micro_batch_sequences", "stop_after_steps")


def check_combinations(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags that only their combination rules out, reported before any work; fills
    --batch-positions' default for --cache runs."""
    if args.command not in ("train", "evaluate") or not args.cache:
        if getattr(args, "batch_positions", None) is not None:
            parser.error(
                "--batch-positions applies to --cache runs; training with the target in the "
                "loop batches by --batch-sequences"
            )
        return
    if args.command == "train":
        for name in ONLINE_ONLY:
            if getattr(args, name) is not None:
                parser.error(f"--{name.replace('_', '-')} needs training without --cache")
        if args.batch_positions is None:
            args.batch_positions = 1024
    if args.shard_target or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        parser.error("--cache runs in one process on the whole target; drop --cache")


def _config_tokens(path: str, command: str, parser: argparse.ArgumentParser) -> list[str]:
    try:
        import yaml
    except ImportError as exc:
        raise ImportError('--config needs PyYAML: pip install "arctic-drafters[train]"') from exc
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"--config {path}: not YAML ({' '.join(str(exc).split())})") from exc
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: must be a mapping of flags to values")
    if isinstance(data.get(command), dict):
        data = data[command]
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    tokens: list[str] = []
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        action = actions.get(dest)
        if action is None or dest in ("help", "config", "debug"):
            known = ", ".join(sorted(d for d in actions if d not in ("help", "config", "debug")))
            raise ValueError(
                f"--config {path}: unknown key {key!r} for `{PROG} {command}` (known: {known})"
            )
        flag = action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise ValueError(f"--config {path}: {key} must be true or false, got {value!r}")
            tokens += [flag] if value else []
        elif isinstance(value, dict):
            tokens += [flag, json.dumps(value)]
        elif isinstance(value, list | tuple) or value is None:
            raise ValueError(f"--config {path}: {key} must be a single value, got {value!r}")
        else:
            tokens += [flag, str(value).lower() if isinstance(value, bool) else str(value)]
    return tokens


def expand_config(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` with a subcommand's ``--config FILE`` replaced by the flags it holds, put
    before the command line's own flags (argparse keeps the last value: the command line
    overrides the file). Each value is parsed and checked by its flag's own type."""
    subcommands: dict[str, argparse.ArgumentParser] = getattr(parser, "subcommands", {})
    at = next((i for i, a in enumerate(argv) if a in subcommands), None)
    if at is None:
        return argv
    rest = argv[at + 1 :]
    for i, token in enumerate(rest):
        if token == "--config" and i + 1 < len(rest):
            path, rest = rest[i + 1], rest[:i] + rest[i + 2 :]
            break
        if token.startswith("--config="):
            path, rest = token.split("=", 1)[1], rest[:i] + rest[i + 1 :]
            break
    else:
        return argv
    if not Path(path).is_file():
        return argv  # the parser reports "--config must be an existing file"
    command = argv[at]
    return [*argv[: at + 1], *_config_tokens(path, command, subcommands[command]), *rest]
