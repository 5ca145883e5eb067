#include "suffix_cache.h"

#include <algorithm>
#include <cmath>

namespace arctic_suffix {

std::string shown(const std::string& key) {
  if (!key.empty() && key[0] == 's') return "'" + key.substr(1) + "'";
  return key.empty() ? key : key.substr(1);
}

SuffixCache::SuffixCache(int max_depth, int64_t max_cached_requests, int64_t max_cached_tokens,
                         Eviction eviction, size_t removal_chunk)
    : max_depth_(max_depth),
      max_requests_(max_cached_requests),
      max_tokens_(max_cached_tokens),
      eviction_(eviction),
      removal_chunk_(removal_chunk) {
  SuffixTree probe(max_depth);  // validates max_depth with the tree's own message
  if (removal_chunk == 0) throw std::invalid_argument("removal_chunk must be >= 1, got 0");
}

SuffixCache::Request& SuffixCache::request(const std::string& key) {
  auto it = requests_.find(key);
  if (it == requests_.end()) {
    throw KeyError("unknown request id " + shown(key) + "; call start_request first");
  }
  return it->second;
}

SuffixTree* SuffixCache::global_tree(const std::string& ns) const {
  auto it = trees_.find(ns);
  return it == trees_.end() ? nullptr : it->second.get();
}

void SuffixCache::start_request(const std::string& key, const std::string& ns,
                                const Token* prompt, size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  if (requests_.count(key)) {
    throw KeyError("request id " + shown(key) + " is already active; stop_request it first");
  }
  do_pending(removal_chunk_);
  Request r;
  r.ns = ns;
  // A new request starts from the acceptance its predecessors saw, not from zero, so the
  // first drafts of a copy-heavy session are not capped at factor * match_len.
  r.accepted_ewma = accepted_ewma_;
  r.local = std::make_unique<SuffixTree>(max_depth_);
  r.local->extend(0, prompt, n);
  r.prompt_len = n;
  requests_.emplace(key, std::move(r));
}

void SuffixCache::observe_acceptance(Request& r, const Token* tokens, size_t n) {
  if (r.last_draft.empty()) return;
  // The engine appends the accepted draft prefix plus one bonus token; the longest draft
  // path agreeing with the new tokens is what verification accepted.
  size_t accepted = 0;
  int32_t at = -1;
  while (accepted < n) {
    int32_t next = -1;
    for (size_t i = 0; i < r.last_draft.size(); ++i) {
      if (r.last_parents[i] == at && r.last_draft[i] == tokens[accepted]) {
        next = static_cast<int32_t>(i);
        break;
      }
    }
    if (next < 0) break;
    at = next;
    accepted++;
  }
  r.accepted_ewma = 0.5 * r.accepted_ewma + 0.5 * static_cast<double>(accepted);
  accepted_ewma_ = 0.99 * accepted_ewma_ + 0.01 * static_cast<double>(accepted);
  r.last_draft.clear();
  r.last_parents.clear();
}

void SuffixCache::add_tokens(const std::string& key, const Token* tokens, size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  Request& r = request(key);
  do_pending(removal_chunk_);
  observe_acceptance(r, tokens, n);
  r.local->extend(0, tokens, n);
  SuffixTree* g = global_tree(r.ns);
  if (g != nullptr && r.global_epoch == g->epoch() && r.global_generation == generation_) {
    for (size_t i = 0; i < n; ++i) push_global_match(r, *g, tokens[i]);
  }
}

// Keeps the positions of every context suffix (lengths 1..k) found in the global tree, so
// a speculate call reads the deepest one instead of re-matching: O(depth) per token.
void SuffixCache::push_global_match(Request& r, const SuffixTree& g, Token t) {
  std::vector<Position>& cur = r.global_match;
  const size_t limit = static_cast<size_t>(max_depth_ - 1);
  std::vector<Position>& next = r.scratch;
  next.clear();
  Position p;
  if (limit > 0 && g.advance(&p, t)) {
    next.push_back(p);
    for (size_t j = 0; j < cur.size() && next.size() < limit; ++j) {
      Position q = cur[j];
      if (!g.advance(&q, t)) break;  // a longer suffix cannot occur if this one does not
      next.push_back(q);
    }
  }
  cur.swap(next);
}

void SuffixCache::sync_global_match(Request& r) {
  SuffixTree* g = global_tree(r.ns);
  if (g == nullptr) {
    r.global_match.clear();
    return;
  }
  if (r.global_epoch == g->epoch() && r.global_generation == generation_) return;
  // The global tree changed shape (a response was cached or evicted): rebuild once from
  // the last depth-1 tokens, O(depth^2), then go back to O(depth) per token.
  const std::vector<Token>& ctx = r.local->tokens(0);
  size_t from = ctx.size() - std::min(ctx.size(), static_cast<size_t>(max_depth_ - 1));
  r.global_match.clear();
  for (size_t i = from; i < ctx.size(); ++i) push_global_match(r, *g, ctx[i]);
  r.global_epoch = g->epoch();
  r.global_generation = generation_;
}

int SuffixCache::cap_for(const Request& r, const DraftParams& p, bool adaptive, int m) const {
  int c = draft_cap(p, m);
  if (adaptive && m > 0) {
    // The anchor's factor*m cap starves drafts right after an edit, where the match is
    // short but the copy ahead is long; recent acceptance says how far to trust it.
    int a = static_cast<int>(std::ceil(2.0 * r.accepted_ewma)) + 1;
    c = std::max(c, std::min(a, p.max_spec_tokens));
  }
  return c;
}

Draft SuffixCache::draft_once(Request& r, const Token* ctx, size_t n, const DraftParams& p,
                              bool adaptive) {
  auto cap = [&](int m) { return cap_for(r, p, adaptive, m); };
  Position lpos;
  int lm = ctx == nullptr ? r.local->match_own_tail(0, &lpos) : r.local->match(ctx, n, &lpos);
  const Token* c_data = ctx != nullptr ? ctx : r.local->tokens(0).data();
  const size_t c_size = ctx != nullptr ? n : r.local->tokens(0).size();
  // The request's own tail always matches itself; that occurrence has no continuation.
  const std::vector<Token>& own = r.local->tokens(0);
  bool own_tail = lm > 0 && (ctx == nullptr ||
                             (own.size() >= static_cast<size_t>(lm) &&
                              std::equal(ctx + n - lm, ctx + n, own.end() - lm)));
  Draft best = r.local->draft_from(lpos, lm, cap(lm), p.min_token_prob, p.tree, c_data, c_size,
                                   own_tail ? 1 : 0);
  SuffixTree* g = global_tree(r.ns);
  if (g != nullptr && g->num_nodes() > 1) {
    Position gpos;
    int gm = 0;
    if (ctx == nullptr) {
      sync_global_match(r);
      for (size_t j = r.global_match.size(); j > 0; --j) {
        if (g->has_continuation(r.global_match[j - 1])) {
          gpos = r.global_match[j - 1];
          gm = static_cast<int>(j);
          break;
        }
      }
    } else {
      gm = g->match(ctx, n, &gpos);
    }
    Draft gd = g->draft_from(gpos, gm, cap(gm), p.min_token_prob, p.tree, c_data, c_size);
    if (gd.score > best.score) {
      best = std::move(gd);
      if (eviction_ == Eviction::kLru) {
        auto it = by_seq_.find(g->ref_sequence_id(gpos.node));
        if (it != by_seq_.end()) order_.splice(order_.end(), order_, it->second);
      }
    }
  }
  return best;
}

Draft SuffixCache::speculate(const std::string& key, const Token* ctx, size_t n,
                             const DraftParams& p, bool adaptive, bool extend) {
  validate(p);
  std::lock_guard<std::mutex> lock(mu_);
  Request& r = request(key);
  do_pending(removal_chunk_);
  Draft best = draft_once(r, ctx, n, p, adaptive);
  // An extension may at most double the cap the first match earned: enough to carry a
  // self-repeating span past its end, not enough to chain weak matches into K junk tokens.
  const int limit = std::min(p.max_spec_tokens,
                             kExtendCapFactor * cap_for(r, p, adaptive, best.match_len));
  if (extend && !p.tree && !best.token_ids.empty() &&
      static_cast<int>(best.token_ids.size()) < limit) {
    // In a self-repeating span the longest match is the most recent occurrence, whose
    // continuation hits the end of the data after one period; matching context + draft
    // finds where the text goes on. Only the last max_depth - 1 tokens can ever match.
    const std::vector<Token>& own = r.local->tokens(0);
    const Token* base = ctx != nullptr ? ctx : own.data();
    const size_t base_n = ctx != nullptr ? n : own.size();
    const size_t keep = static_cast<size_t>(max_depth_);
    std::vector<Token> buf(base + (base_n - std::min(base_n, keep)), base + base_n);
    buf.insert(buf.end(), best.token_ids.begin(), best.token_ids.end());
    while (static_cast<int>(best.token_ids.size()) < limit) {
      const double last = best.probs.back();
      if (last <= 0.0 || p.min_token_prob > last) break;
      DraftParams q = p;
      q.max_spec_tokens = limit - static_cast<int>(best.token_ids.size());
      q.min_token_prob = p.min_token_prob / last;  // the carried product stays >= min
      if (buf.size() > keep) buf.erase(buf.begin(), buf.end() - keep);
      Draft more = draft_once(r, buf.data(), buf.size(), q, adaptive);
      if (more.token_ids.empty()) break;
      for (size_t i = 0; i < more.token_ids.size(); ++i) {
        const double prob = last * more.probs[i];
        best.parents.push_back(static_cast<int32_t>(best.token_ids.size()) - 1);
        best.token_ids.push_back(more.token_ids[i]);
        best.probs.push_back(prob);
        best.score += prob;
        buf.push_back(more.token_ids[i]);
      }
    }
  }
  r.last_draft = best.token_ids;
  r.last_parents = best.parents;
  return best;
}

void SuffixCache::stop_request(const std::string& key) {
  std::unique_ptr<SuffixTree> doomed;  // freed after the lock is released
  std::lock_guard<std::mutex> lock(mu_);
  Request& r = request(key);
  do_pending(removal_chunk_);
  const std::vector<Token>& all = r.local->tokens(0);
  // Only outputs go global: prompts are per-user and rarely repeat (arXiv 2411.04975).
  // An earlier response cached under the same id stays cached beside this one.
  insert_entry(key, r.ns, all.data() + r.prompt_len, all.size() - r.prompt_len);
  if (all.size() <= kInsertNow) {
    doomed = std::move(r.local);
  } else {
    dismantling_.push_back(std::move(r.local));  // freed a piece per call, like a removal
  }
  requests_.erase(key);
}

std::vector<std::string> SuffixCache::active_requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& kv : requests_) out.push_back(kv.first);
  std::sort(out.begin(), out.end());
  return out;
}

size_t SuffixCache::memory_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t bytes = sizeof(*this);
  for (const auto& kv : trees_) bytes += kv.second->memory_bytes() + kv.first.size() + 64;
  for (const auto& kv : requests_) {
    bytes += kv.second.local->memory_bytes() + kv.first.size() + 128 +
             kv.second.global_match.capacity() * sizeof(Position);
  }
  for (const auto& t : dismantling_) bytes += t->memory_bytes();
  bytes += order_.size() * (sizeof(Entry) + 96);
  return bytes;
}

void SuffixCache::check_integrity() const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& kv : trees_) kv.second->check_integrity();
  for (const auto& kv : requests_) kv.second.local->check_integrity();
  int64_t total = 0;
  for (const auto& e : order_) total += e.tokens;
  if (total != cached_tokens_) throw std::logic_error("integrity: cached token count drifted");
  if (cached_.size() != order_.size() || by_seq_.size() != order_.size()) {
    throw std::logic_error("integrity: the id index and the eviction order disagree");
  }
}


}  // namespace arctic_suffix
