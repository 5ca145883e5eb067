// C++ unit tests of the core, without Python: ctest or ./test_core.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "cache_file.h"
#include "file_io.h"
#include "pod_vector.h"
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

static void test_pod_vector_keeps_elements_across_growth() {
  PodVector<int64_t> v;
  for (int64_t i = 0; i < 100000; ++i) v.emplace_back() = i * 7;
  bool same = v.size() == 100000;
  for (int64_t i = 0; i < 100000 && same; ++i) same = v[i] == i * 7;
  CHECK(same);
}

static void test_dismantle_frees_in_steps() {
  std::mt19937 rng(3);
  std::vector<Token> toks(20000);
  for (auto& t : toks) t = rng() % 50;
  SuffixTree t(16);
  t.extend(0, toks.data(), toks.size());
  size_t before = t.memory_bytes(), steps = 0;
  while (t.dismantle_step(64)) steps++;
  CHECK(steps > 10);
  CHECK(t.memory_bytes() < before);
  CHECK(!t.contains(0));
}

static void test_reused_id_keeps_both_entries() {
  SuffixCache c(8, -1, -1, Eviction::kFifo, 64);
  std::vector<Token> a{1, 2, 3}, b{4, 5};
  for (const auto& out : {a, b}) {
    c.start_request("sx", "", nullptr, 0);
    c.add_tokens("sx", out.data(), out.size());
    c.stop_request("sx");
  }
  CHECK(c.cached_requests() == std::vector<std::string>({"sx", "sx"}));
  CHECK(c.cached_tokens() == 5);
  c.check_integrity();
  c.evict("sx");
  CHECK(c.cached_requests().empty() && c.cached_tokens() == 0);
  c.run_pending_work(SIZE_MAX);
  c.check_integrity();
}

// Only regular files are read or replaced; the C++ API refuses a NUL itself too.
static void test_file_refusals(const std::string& base) {
  char tmpl[4096];
  std::snprintf(tmpl, sizeof(tmpl), "%s/arctic_suffix_files_XXXXXX", base.c_str());
  if (::mkdtemp(tmpl) == nullptr) {
    CHECK(false);
    return;
  }
  const std::string dir = tmpl;
  SuffixCache c(8, -1, -1, Eviction::kFifo, 64);
  std::vector<Token> out{1, 2, 3};
  c.start_request("sr", "", nullptr, 0);
  c.add_tokens("sr", out.data(), out.size());
  c.stop_request("sr");
  const std::string fifo = dir + "/fifo", link = dir + "/link", real = dir + "/real.bin";
  CHECK(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(throws<PathError>([&] { c.load(fifo); }));  // returns: no wait for a writer
  CHECK(throws<PathError>([&] { c.save(fifo); }));
  struct stat st;
  CHECK(::lstat(fifo.c_str(), &st) == 0 && S_ISFIFO(st.st_mode));
  CHECK(throws<PathError>([&] { c.load(dir); }));
  CHECK(throws<PathError>([&] { c.save(dir); }));
  CHECK(throws<PathError>([&] { c.save(""); }));
  CHECK(throws<PathError>([&] { c.save(real + std::string("\0x", 2)); }));
  CHECK(throws<PathError>([&] { c.load(real + std::string("\0x", 2)); }));
  CHECK(::access(real.c_str(), F_OK) != 0);  // not written under the cut-short name
  CHECK(::symlink("real.bin", link.c_str()) == 0);  // dangling until the save
  c.save(link);
  CHECK(::lstat(link.c_str(), &st) == 0 && S_ISLNK(st.st_mode));
  CHECK(::lstat(real.c_str(), &st) == 0 && S_ISREG(st.st_mode));
  SuffixCache d(8, -1, -1, Eviction::kFifo, 64);
  d.load(link);
  CHECK(d.cached_requests() == c.cached_requests());
  for (const char* name : {"/fifo", "/link", "/real.bin"}) ::unlink((dir + name).c_str());
  CHECK(::rmdir(dir.c_str()) == 0);  // no temporary file was left behind
}

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "/tmp";
  test_counts_and_draft();
  test_bad_depth();
  test_random_ops_keep_integrity();
  test_cache_save_load(dir);
  test_cache_limits();
  test_pod_vector_keeps_elements_across_growth();
  test_dismantle_frees_in_steps();
  test_reused_id_keeps_both_entries();
  test_file_refusals(dir);
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_core: all checks passed\n");
  return 0;
}
