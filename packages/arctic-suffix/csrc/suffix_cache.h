// What a serving engine talks to: per-request trees over prompt + output and, per
// namespace, a global tree over earlier outputs (arXiv 2411.04975 Sec. 3). Every public
// method takes the cache's one mutex, so the cache may be shared by threads.
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "suffix_tree.h"

namespace arctic_suffix {

enum class Eviction { kFifo, kLru };

struct CachedEntry {
  std::string key;
  std::string ns;
  std::vector<Token> tokens;
};

// How error messages show a key: the bindings tag ids "s" + str or "i" + int.
std::string shown(const std::string& key);

class SuffixCache {
 public:
  // max_cached_requests / max_cached_tokens < 0: unbounded. removal_chunk: suffixes of an
  // evicted response removed per call, so no single call pays for a huge removal.
  SuffixCache(int max_depth, int64_t max_cached_requests, int64_t max_cached_tokens,
              Eviction eviction, size_t removal_chunk);

  void start_request(const std::string& key, const std::string& ns, const Token* prompt,
                     size_t n);
  void add_tokens(const std::string& key, const Token* tokens, size_t n);
  // ctx == nullptr: the request's own prompt + output, matched incrementally. extend: a
  // path draft shorter than its limit, min(max_spec_tokens, 2 * the cap its match earned)
  // (its match ran out of continuation, or hit the factor * match_len cap), goes on from a
  // fresh match of context + draft, its path probabilities multiplied through and
  // min_token_prob applied to the product.
  Draft speculate(const std::string& key, const Token* ctx, size_t n, const DraftParams& p,
                  bool adaptive, bool extend = false);
  // The output joins the global cache as a new entry; entries cached earlier under the same
  // id are kept (an id may be reused, e.g. for a restarted request): nothing is dropped.
  void stop_request(const std::string& key);
  void evict(const std::string& key);  // every cached entry under key; KeyError if none
  // Deferred work: evicted responses still being removed and huge responses still being
  // inserted. Each call does up to removal_chunk units; this drains up to max_units. The
  // trees of finished huge requests are freed alongside (kFreePerUnit map entries per unit).
  size_t run_pending_work(size_t max_units);  // returns the jobs still pending

  std::vector<std::string> active_requests() const;
  // Eviction order, next victim first; an id appears once per entry cached under it.
  std::vector<std::string> cached_requests() const;
  int64_t cached_tokens() const;
  size_t pending_work() const;
  size_t memory_bytes() const;
  void check_integrity() const;
  int max_depth() const { return max_depth_; }

  std::vector<CachedEntry> snapshot() const;
  void replace_global(std::vector<CachedEntry> entries);  // load(): all-or-nothing
  void save(const std::string& path) const;
  void load(const std::string& path);

 private:
  struct Request {
    std::string ns;
    std::unique_ptr<SuffixTree> local;  // sequence 0 = prompt + output
    size_t prompt_len = 0;
    std::vector<Position> global_match;  // lengths 1..k of the context found in the global tree
    std::vector<Position> scratch;
    uint64_t global_epoch = UINT64_MAX;
    uint64_t global_generation = 0;
    std::vector<Token> last_draft;
    std::vector<int32_t> last_parents;
    double accepted_ewma = 0.0;
  };
  struct Entry {
    std::string key;
    std::string ns;
    int64_t seq_id;
    int64_t tokens;
  };
  struct Pending {
    std::string ns;
    int64_t seq_id;
  };
  struct PendingInsert {
    std::string ns;
    int64_t seq_id;
    std::vector<Token> tokens;
    size_t next;
  };
  // A response up to this many tokens joins the global tree at once (milliseconds); a
  // larger one is inserted a chunk per call, like a removal.
  static constexpr size_t kInsertNow = 16384;
  static constexpr size_t kInsertCost = 8;  // work units per inserted token (O(depth) each)
  // Hash-map entries freed per work unit when a finished request's tree is dismantled. A
  // request over kInsertNow tokens is freed this way: at once, 1M tokens took 200-340 ms.
  static constexpr size_t kFreePerUnit = 4;

  Request& request(const std::string& key);
  static constexpr int kExtendCapFactor = 2;  // an extended draft: <= 2x the first cap
  int cap_for(const Request& r, const DraftParams& p, bool adaptive, int match_len) const;
  // One draft (local vs global tree, the higher score wins) from one context; mu_ held.
  Draft draft_once(Request& r, const Token* ctx, size_t n, const DraftParams& p, bool adaptive);
  SuffixTree* global_tree(const std::string& ns) const;
  void sync_global_match(Request& r);
  void push_global_match(Request& r, const SuffixTree& g, Token t);
  void observe_acceptance(Request& r, const Token* tokens, size_t n);
  void evict_entry(std::list<Entry>::iterator it);
  void enforce_limits();
  void do_pending(size_t budget);
  void insert_entry(const std::string& key, const std::string& ns, const Token* t, size_t n);

  mutable std::mutex mu_;
  int max_depth_;
  int64_t max_requests_;
  int64_t max_tokens_;
  Eviction eviction_;
  size_t removal_chunk_;
  std::unordered_map<std::string, Request> requests_;
  std::unordered_map<std::string, std::unique_ptr<SuffixTree>> trees_;
  std::list<Entry> order_;
  std::unordered_multimap<std::string, std::list<Entry>::iterator> cached_;
  std::unordered_map<int64_t, std::list<Entry>::iterator> by_seq_;
  std::deque<Pending> pending_;
  std::deque<PendingInsert> inserts_;
  std::deque<std::unique_ptr<SuffixTree>> dismantling_;  // finished requests' trees
  int64_t cached_tokens_ = 0;
  int64_t next_seq_id_ = 0;
  uint64_t generation_ = 0;  // bumped by load(): trees replaced wholesale
  double accepted_ewma_ = 0.0;  // accepted draft length over all requests
};

}  // namespace arctic_suffix
