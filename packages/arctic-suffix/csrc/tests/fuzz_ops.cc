// Fuzz target: bytes -> a sequence of tree / cache operations, integrity checked after
// each. Built for libFuzzer with clang (-fsanitize=fuzzer); with any other compiler the
// main() below feeds it random inputs for a time budget (a bounded stress test).
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cache_file.h"
#include "suffix_cache.h"
#include "suffix_tree.h"

using namespace arctic_suffix;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  size_t i = 0;
  auto next = [&]() -> uint8_t { return i < size ? data[i++] : 0; };
  int depth = 1 + next() % 12;
  SuffixTree tree(depth);
  SuffixCache cache(depth, 1 + next() % 4, 8 + next() % 64, next() % 2 ? Eviction::kLru : Eviction::kFifo,
                    1 + next() % 8);
  bool active[4] = {false, false, false, false};
  while (i < size) {
    uint8_t op = next();
    uint8_t arg = next();
    std::vector<Token> toks(arg % 16);
    for (auto& t : toks) t = next() % 5;
    std::string key = "s" + std::to_string(arg % 4);
    DraftParams p;
    p.max_spec_tokens = arg % 10;
    p.tree = op & 0x80;
    switch (op % 8) {
      case 0: tree.extend(arg % 4, toks.data(), toks.size()); break;
      case 1: if (tree.contains(arg % 4)) tree.remove(arg % 4); break;
      case 2: tree.speculate(toks.data(), toks.size(), p); break;
      case 3:
        if (!active[arg % 4]) cache.start_request(key, op & 0x40 ? "a" : "", toks.data(), toks.size());
        active[arg % 4] = true;
        break;
      case 4: if (active[arg % 4]) cache.add_tokens(key, toks.data(), toks.size()); break;
      case 5:
        if (active[arg % 4]) {
          Draft d = cache.speculate(key, nullptr, 0, p, op & 0x20, op & 0x40);
          const size_t n = d.token_ids.size();
          if (n > static_cast<size_t>(p.max_spec_tokens) || d.parents.size() != n ||
              d.probs.size() != n) {
            __builtin_trap();  // a draft longer than asked, or ragged
          }
        }
        break;
      case 6: if (active[arg % 4]) cache.stop_request(key); active[arg % 4] = false; break;
      case 7: cache.run_pending_work(arg); break;
    }
    tree.check_integrity();
    cache.check_integrity();
  }
  try {
    decode_entries(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const FormatError&) {
  }
  return 0;
}

#ifndef ARCTIC_SUFFIX_LIBFUZZER
int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 10.0;
  std::mt19937 rng(argc > 2 ? std::atoi(argv[2]) : 1);
  auto stop = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  long runs = 0;
  while (std::chrono::steady_clock::now() < stop) {
    std::vector<uint8_t> buf(2 + rng() % 512);
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
    runs++;
  }
  std::printf("fuzz_ops: %ld random inputs, no crash, no integrity failure\n", runs);
  return 0;
}
#endif
