#!/usr/bin/env bash
# Python tests against an ASan+UBSan build of the extension, in a throwaway venv.
#   packages/arctic-suffix/scripts/run_asan_pytest.sh [pytest args]
set -euo pipefail
pkg="$(cd "$(dirname "$0")/.." && pwd)"
venv="${ASAN_VENV:-${TMPDIR:-/tmp}/arctic-suffix-asan-venv}"
uv venv -q --allow-existing --python 3.11 "$venv"
uv pip install -q --python "$venv/bin/python" pytest hypothesis numpy
uv pip install -q --python "$venv/bin/python" --reinstall-package arctic-suffix \
  -C cmake.define.ARCTIC_SUFFIX_SANITIZE=ON -C build-dir=build/asan "$pkg"
# The interpreter is not instrumented: preload the runtime; CPython's own allocations leak
# by design at exit, so leak checking is off.
export LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
cd "$pkg" && "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not slow" \
  -o addopts="" -W error tests "$@"
