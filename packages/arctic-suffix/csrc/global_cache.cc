// The global side of SuffixCache: per-namespace trees over finished outputs, their
// eviction order and budgets, and the deferred work (insertions, removals, freeing) that
// keeps any single call short. Members of SuffixCache; mu_ is held by every caller here.
#include <algorithm>
#include <cstdlib>

#include "suffix_cache.h"

namespace arctic_suffix {

void SuffixCache::insert_entry(const std::string& key, const std::string& ns, const Token* t,
                               size_t n) {
  if (n == 0 || max_requests_ == 0) return;
  if (max_tokens_ >= 0 && static_cast<int64_t>(n) > max_tokens_) return;  // never fits
  auto& tree = trees_[ns];
  if (!tree) tree = std::make_unique<SuffixTree>(max_depth_);
  int64_t seq = next_seq_id_++;
  if (n <= kInsertNow) {
    tree->extend(seq, t, n);
  } else {
    tree->extend(seq, t, 0);  // registered now, filled by do_pending
    inserts_.push_back(PendingInsert{ns, seq, std::vector<Token>(t, t + n), 0});
  }
  order_.push_back(Entry{key, ns, seq, static_cast<int64_t>(n)});
  auto it = std::prev(order_.end());
  cached_.emplace(key, it);
  by_seq_[seq] = it;
  cached_tokens_ += static_cast<int64_t>(n);
  enforce_limits();
}

void SuffixCache::evict(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto range = cached_.equal_range(key);
  if (range.first == range.second) {
    throw KeyError("request id " + shown(key) + " is not in the global cache");
  }
  std::vector<std::list<Entry>::iterator> doomed;
  for (auto it = range.first; it != range.second; ++it) doomed.push_back(it->second);
  for (auto it : doomed) evict_entry(it);
  do_pending(removal_chunk_);
}

void SuffixCache::evict_entry(std::list<Entry>::iterator it) {
  for (auto p = inserts_.begin(); p != inserts_.end(); ++p) {
    if (p->seq_id == it->seq_id) {
      inserts_.erase(p);
      break;
    }
  }
  trees_[it->ns]->begin_remove(it->seq_id);
  pending_.push_back(Pending{it->ns, it->seq_id});
  cached_tokens_ -= it->tokens;
  for (auto c = cached_.equal_range(it->key); c.first != c.second; ++c.first) {
    if (c.first->second == it) {
      cached_.erase(c.first);
      break;
    }
  }
  by_seq_.erase(it->seq_id);
  order_.erase(it);
}

void SuffixCache::enforce_limits() {
  while (!order_.empty() &&
         ((max_requests_ >= 0 && static_cast<int64_t>(order_.size()) > max_requests_) ||
          (max_tokens_ >= 0 && cached_tokens_ > max_tokens_))) {
    evict_entry(order_.begin());
  }
}

namespace {

// glibc keeps small freed chunks unmerged (fastbins) until some later large allocation
// merges them all, in whichever call makes it: measured, the map entries of a 1M-token
// tree freed over 32 calls cost one later call 45 ms (a hash-table rehash), and removals
// likewise. A large allocation right after a step that freed makes that step pay for its
// own frees; with another allocator it is one malloc/free pair.
void settle_frees() {
  void* volatile p = std::malloc(4096);  // volatile: the pair must not be optimized away
  std::free(p);
}

}  // namespace

void SuffixCache::do_pending(size_t budget) {
  // Freeing has a budget of its own, so the pace of insertions and removals does not
  // depend on it; it goes first, so memory is released before more is taken.
  const size_t frees = budget > SIZE_MAX / kFreePerUnit ? SIZE_MAX : budget * kFreePerUnit;
  const bool freeing = !dismantling_.empty() || !pending_.empty();
  while (!dismantling_.empty()) {
    if (dismantling_.front()->dismantle_step(frees)) break;  // budget spent
    dismantling_.pop_front();  // what is left of the tree is O(1) frees
    if (budget != SIZE_MAX) break;
  }
  while (budget > 0 && !inserts_.empty()) {
    PendingInsert& p = inserts_.front();
    size_t k = std::min(p.tokens.size() - p.next, std::max<size_t>(1, budget / kInsertCost));
    trees_[p.ns]->extend(p.seq_id, p.tokens.data() + p.next, k);
    p.next += k;
    budget -= std::min(budget, k * kInsertCost);
    if (p.next == p.tokens.size()) inserts_.pop_front();
  }
  while (budget > 0 && !pending_.empty()) {
    Pending& p = pending_.front();
    size_t done = 0;
    size_t left = trees_[p.ns]->remove_step(p.seq_id, budget, &done);
    budget -= std::min(budget, done);
    if (left == 0) pending_.pop_front();
  }
  if (freeing) settle_frees();
}

size_t SuffixCache::run_pending_work(size_t max_units) {
  std::lock_guard<std::mutex> lock(mu_);
  do_pending(max_units);
  return pending_.size() + inserts_.size();
}

std::vector<std::string> SuffixCache::cached_requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& e : order_) out.push_back(e.key);
  return out;
}

int64_t SuffixCache::cached_tokens() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_tokens_;
}

size_t SuffixCache::pending_work() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size() + inserts_.size();
}

std::vector<CachedEntry> SuffixCache::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<CachedEntry> out;
  for (const auto& e : order_) {
    const std::vector<Token>* toks = &trees_.at(e.ns)->tokens(e.seq_id);
    for (const auto& p : inserts_) {
      if (p.seq_id == e.seq_id) toks = &p.tokens;  // still being inserted: save it whole
    }
    out.push_back(CachedEntry{e.key, e.ns, *toks});
  }
  return out;
}

void SuffixCache::replace_global(std::vector<CachedEntry> entries) {
  // Build aside, then swap: a failure here leaves the current cache as it was.
  std::unordered_map<std::string, std::unique_ptr<SuffixTree>> trees;
  std::list<Entry> order;
  int64_t seq = 0;
  int64_t tokens = 0;
  for (const auto& e : entries) {
    if (e.tokens.empty()) continue;
    auto& t = trees[e.ns];
    if (!t) t = std::make_unique<SuffixTree>(max_depth_);
    t->extend(seq, e.tokens.data(), e.tokens.size());
    order.push_back(Entry{e.key, e.ns, seq, static_cast<int64_t>(e.tokens.size())});
    tokens += static_cast<int64_t>(e.tokens.size());
    seq++;
  }
  std::lock_guard<std::mutex> lock(mu_);
  trees_.swap(trees);
  order_.swap(order);
  cached_.clear();
  by_seq_.clear();
  pending_.clear();
  inserts_.clear();
  for (auto it = order_.begin(); it != order_.end(); ++it) {
    cached_.emplace(it->key, it);  // an id may hold several entries
    by_seq_[it->seq_id] = it;
  }
  cached_tokens_ = tokens;
  next_seq_id_ = seq;
  generation_++;
  enforce_limits();
}

}  // namespace arctic_suffix
