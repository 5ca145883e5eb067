#!/usr/bin/env bash
# C++ unit tests and the fuzz/stress target, optionally under ASan+UBSan.
#   scripts/run_cpp_tests.sh            # plain -O2 build
#   SANITIZE=1 scripts/run_cpp_tests.sh # ASan + UBSan
#   FUZZ_SECONDS=30 scripts/run_cpp_tests.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$here/build/cpp-tests${SANITIZE:+-asan}}"
generator=(); command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$here" -B "$build" "${generator[@]}" -DARCTIC_SUFFIX_BUILD_PYTHON=OFF \
  -DARCTIC_SUFFIX_BUILD_TESTS=ON -DARCTIC_SUFFIX_BUILD_FUZZ=ON \
  -DARCTIC_SUFFIX_SANITIZE="${SANITIZE:+ON}" >/dev/null
cmake --build "$build" -j "${JOBS:-2}"
"$build/test_core" "${TMPDIR:-/tmp}"
if [[ -n "${CC:-}" && "${CXX:-}" == *clang* ]]; then
  "$build/fuzz_ops" -max_total_time="${FUZZ_SECONDS:-10}"
else
  "$build/fuzz_ops" "${FUZZ_SECONDS:-10}"
fi
