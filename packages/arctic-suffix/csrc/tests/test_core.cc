// C++ unit tests of the core, without Python: ctest or ./test_core.
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "cache_file.h"
#include "suffix_cache.h"
#include "suffix_tree.h"

using namespace arctic_suffix;

static int failures = 0;
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                     \
    }                                                                 \
  } while (0)

template <class E, class F>
static bool throws(F&& f) {
  try {
    f();
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
  return false;
}

static void test_counts_and_draft() {
  SuffixTree t(8);
  std::vector<Token> s{1, 2, 3, 1, 2, 3, 1, 2, 4};
  t.extend(0, s.data(), s.size());
  t.check_integrity();
  Token g12[] = {1, 2}, g123[] = {1, 2, 3};
  CHECK(t.count(g12, 2) == 3);
  CHECK(t.count(g123, 3) == 2);
  Token ctx[] = {9, 1, 2};
  DraftParams p;
  p.max_spec_tokens = 8;
  p.max_spec_factor = 4.0;
  Draft d = t.speculate(ctx, 3, p);
  CHECK(d.match_len == 2);
  CHECK(!d.token_ids.empty() && d.token_ids[0] == 3);
  CHECK(d.probs[0] > 0.66 && d.probs[0] < 0.67);
  Token one[] = {3};
  CHECK(t.speculate(one, 1, p).token_ids.size() > 0);  // a 1-token context drafts
  t.remove(0);
  t.check_integrity();
  CHECK(t.num_nodes() == 1);
}

static void test_bad_depth() {
  CHECK(throws<std::invalid_argument>([] { SuffixTree t(0); }));
  CHECK(throws<std::invalid_argument>([] { SuffixTree t(-1); }));
  CHECK(throws<std::invalid_argument>([] { SuffixTree t(kMaxDepthLimit + 1); }));
}

static void test_random_ops_keep_integrity() {
  std::mt19937 rng(7);
  for (int depth : {1, 2, 5, 16}) {
    SuffixTree t(depth);
    for (int step = 0; step < 400; ++step) {
      int64_t id = rng() % 6;
      if (rng() % 4 == 0 && t.contains(id)) {
        t.begin_remove(id);
        while (t.remove_step(id, 1 + rng() % 5) > 0) t.check_integrity();
      } else if (!t.contains(id) || rng() % 2) {
        std::vector<Token> toks(rng() % 20);
        for (auto& x : toks) x = rng() % 3;
        if (t.contains(id)) {
          t.extend(id, toks.data(), toks.size());
        } else {
          t.extend(id, toks.data(), toks.size());
        }
      }
      t.check_integrity();
    }
  }
}

static void test_cache_save_load(const std::string& dir) {
  SuffixCache c(16, -1, -1, Eviction::kFifo, 64);
  std::vector<Token> prompt{5, 6, 7}, out{1, 2, 3, 4, 1, 2, 3, 4};
  c.start_request("sa", "", prompt.data(), prompt.size());
  c.add_tokens("sa", out.data(), out.size());
  c.stop_request("sa");
  std::string path = dir + "/arctic_suffix_test_core.bin";
  c.save(path);
  SuffixCache d(16, -1, -1, Eviction::kFifo, 64);
  d.load(path);
  CHECK(d.cached_requests() == c.cached_requests());
  CHECK(d.cached_tokens() == 8);
  std::string bytes;
  {
    std::ifstream f(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  std::string bad = bytes;
  bad[bad.size() / 2] ^= 0x40;
  CHECK(throws<FormatError>([&] { decode_entries(bad); }));
  CHECK(throws<FormatError>([&] { decode_entries(bytes.substr(0, bytes.size() - 3)); }));
  CHECK(throws<FormatError>([&] { decode_entries("not a cache file at all, no sir"); }));
  CHECK(decode_entries(bytes).size() == 1);
  std::remove(path.c_str());
}

static void test_cache_limits() {
  SuffixCache c(8, -1, 10, Eviction::kFifo, 1);
  for (int r = 0; r < 4; ++r) {
    std::string key = "s" + std::to_string(r);
    std::vector<Token> out(4, r);
    c.start_request(key, "", nullptr, 0);
    c.add_tokens(key, out.data(), out.size());
    c.stop_request(key);
    c.check_integrity();
  }
  CHECK(c.cached_tokens() <= 10);
  CHECK(c.cached_requests().size() == 2);
  c.run_pending_work(SIZE_MAX);
  CHECK(c.pending_work() == 0);
  CHECK(throws<KeyError>([&] { c.evict("snope"); }));
}

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "/tmp";
  test_counts_and_draft();
  test_bad_depth();
  test_random_ops_keep_integrity();
  test_cache_save_load(dir);
  test_cache_limits();
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_core: all checks passed\n");
  return 0;
}
