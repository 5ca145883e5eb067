// Fuzz target: bytes -> a sequence of tree / cache operations, integrity checked after
// each, then a save or load against a hostile file (FIFO, device node, directory, symlinks,
// a NUL or empty path, the input itself as a cache file). Built for libFuzzer with clang
// (-fsanitize=fuzzer); with any other compiler the main() below feeds it random inputs for
// a time budget (a bounded stress test).
#include <dirent.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "cache_file.h"
#include "file_io.h"
#include "suffix_cache.h"
#include "suffix_tree.h"

using namespace arctic_suffix;

namespace {

#define REQUIRE(cond) \
  do {                \
    if (!(cond)) {    \
      std::fprintf(stderr, "fuzz_ops: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      __builtin_trap(); \
    }                 \
  } while (0)

// Made once per process in a fresh directory. A save or load must refuse every target but
// the regular file, the links to it and the dangling link (save creates what it names),
// and must leave every node what it was.
struct Hostile {
  std::string dir;
  std::vector<std::string> refused;  // load and save both raise PathError
  bool devices = false;              // mknod was permitted (root)
  std::string regular() const { return dir + "/regular.bin"; }
  std::string link() const { return dir + "/link-regular"; }
  std::string dangling() const { return dir + "/dangling"; }
  std::string made() const { return dir + "/made.bin"; }
  std::string input() const { return dir + "/input.bin"; }
};

Hostile make_hostile() {
  Hostile h;
  std::string base = std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp";
  std::string tmpl = base + "/arctic_suffix_fuzz_XXXXXX";
  REQUIRE(::mkdtemp(&tmpl[0]) != nullptr);
  h.dir = tmpl;
  REQUIRE(::mkfifo((h.dir + "/fifo").c_str(), 0600) == 0);
  REQUIRE(::mkdir((h.dir + "/dir").c_str(), 0700) == 0);
  REQUIRE(::symlink("fifo", (h.dir + "/link-fifo").c_str()) == 0);
  REQUIRE(::symlink("dir", (h.dir + "/link-dir").c_str()) == 0);
  REQUIRE(::symlink("regular.bin", h.link().c_str()) == 0);
  REQUIRE(::symlink("made.bin", h.dangling().c_str()) == 0);
  h.refused = {h.dir + "/fifo", h.dir + "/link-fifo", h.dir + "/dir", h.dir + "/link-dir",
               h.dir + "/nul" + std::string("\0.bin", 5), ""};
  // Made here, never a system path: /dev/zero's and /dev/full's numbers.
  h.devices = ::mknod((h.dir + "/zero").c_str(), S_IFCHR | 0600, makedev(1, 5)) == 0 &&
              ::mknod((h.dir + "/full").c_str(), S_IFCHR | 0600, makedev(1, 7)) == 0;
  if (h.devices) {
    h.refused.push_back(h.dir + "/zero");
    h.refused.push_back(h.dir + "/full");
  }
  SuffixCache(4, -1, -1, Eviction::kFifo, 8).save(h.regular());
  return h;
}

Hostile& hostile() {
  static Hostile h = make_hostile();
  static bool cleanup = [] {
    return std::atexit([] {
      const Hostile& x = hostile();
      for (const char* n : {"/fifo", "/link-fifo", "/link-dir", "/regular.bin", "/link-regular",
                            "/dangling", "/made.bin", "/input.bin", "/zero", "/full"}) {
        ::unlink((x.dir + n).c_str());
      }
      ::rmdir((x.dir + "/dir").c_str());
      ::rmdir(x.dir.c_str());
    }) == 0;
  }();
  (void)cleanup;
  return h;
}

mode_t kind(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 ? (st.st_mode & S_IFMT) : 0;
}

void check_nodes(const Hostile& h) {
  REQUIRE(kind(h.dir + "/fifo") == S_IFIFO && kind(h.dir + "/dir") == S_IFDIR);
  for (const char* l : {"/link-fifo", "/link-dir", "/link-regular", "/dangling"}) {
    REQUIRE(kind(h.dir + l) == S_IFLNK);
  }
  if (h.devices) REQUIRE(kind(h.dir + "/zero") == S_IFCHR && kind(h.dir + "/full") == S_IFCHR);
  DIR* d = ::opendir(h.dir.c_str());
  REQUIRE(d != nullptr);
  while (dirent* e = ::readdir(d)) REQUIRE(std::strstr(e->d_name, ".tmp") == nullptr);
  ::closedir(d);
}

template <class F>
bool path_error(F&& f) {
  try {
    f();
  } catch (const PathError&) {
    return true;
  }
  return false;
}

// select: which target; saves fsync, so they are drawn rarely.
void file_op(SuffixCache& cache, const uint8_t* data, size_t size, uint8_t select) {
  Hostile& h = hostile();
  const size_t pick = select % 8;
  if (pick < 2) {
    const std::string& p = h.refused[(select >> 3) % h.refused.size()];
    REQUIRE(path_error([&] { cache.load(p); }));
    REQUIRE(path_error([&] { cache.save(p); }));
  } else if (pick < 6) {  // the input itself, read through the bounded loader
    // A new file each time: truncating one makes ext4 flush it on close (measured: 3.5x
    // fewer inputs per second).
    ::unlink(h.input().c_str());
    { std::ofstream(h.input(), std::ios::binary).write(reinterpret_cast<const char*>(data), size); }
    try {
      cache.load(h.input());
    } catch (const FormatError&) {
    }
  } else if ((select >> 3) == 0) {
    const std::string& p = pick == 6 ? h.link() : h.dangling();
    cache.save(p);
    SuffixCache back(4, -1, -1, Eviction::kFifo, 8);
    back.load(pick == 6 ? h.regular() : h.made());
    REQUIRE(back.cached_requests() == cache.cached_requests());
    ::unlink(h.made().c_str());  // the dangling link dangles again
  }
  check_nodes(h);
}

}  // namespace

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
  if ((data[size - 2] & 3) == 0) {  // a quarter of the inputs: file system calls are slow
    file_op(cache, data, size, data[size - 1]);
    cache.check_integrity();
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
