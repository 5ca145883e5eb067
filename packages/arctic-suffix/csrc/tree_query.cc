// Read side of the tree: matching a context, walking drafts, integrity and memory.
#include <algorithm>
#include <cmath>
#include <queue>
#include <string>

#include "suffix_tree.h"

namespace arctic_suffix {

int draft_cap(const DraftParams& p, int match_len) {
  // The anchor's rule (arXiv 2411.04975 Sec. 3.2): longer matches earn longer drafts.
  double cap = p.max_spec_factor * match_len + p.max_spec_offset + 1e-6;
  if (cap <= 0) return 0;
  if (cap >= p.max_spec_tokens) return p.max_spec_tokens;
  return static_cast<int>(cap);
}

void validate(const DraftParams& p) {
  if (p.max_spec_tokens < 0 || p.max_spec_tokens > kMaxSpecTokens) {
    throw std::invalid_argument("max_spec_tokens must be in [0, " +
                                std::to_string(kMaxSpecTokens) + "], got " +
                                std::to_string(p.max_spec_tokens));
  }
  if (!std::isfinite(p.max_spec_factor) || p.max_spec_factor < 0) {
    throw std::invalid_argument("max_spec_factor must be finite and >= 0, got " +
                                std::to_string(p.max_spec_factor));
  }
  if (!std::isfinite(p.max_spec_offset)) {
    throw std::invalid_argument("max_spec_offset must be finite, got " +
                                std::to_string(p.max_spec_offset));
  }
  if (!(p.min_token_prob >= 0.0 && p.min_token_prob <= 1.0)) {
    throw std::invalid_argument("min_token_prob must be in [0, 1], got " +
                                std::to_string(p.min_token_prob));
  }
}

bool SuffixTree::advance(Position* pos, Token t) const {
  const Node& n = nodes_[pos->node];
  if (pos->offset < n.length) {
    if (label_at(n, pos->offset) != t) return false;
    pos->offset++;
    return true;
  }
  int32_t c = find_child(pos->node, t);
  if (c < 0) return false;
  pos->node = c;
  pos->offset = 1;
  return true;
}

bool SuffixTree::has_continuation(const Position& pos) const {
  const Node& n = nodes_[pos.node];
  if (pos.offset < n.length) return true;
  if (n.big >= 0) return !big_[n.big].empty();
  return n.first_child >= 0;
}

// "Occurs followed by a token" is monotone in the suffix length (drop the first token of
// an occurrence and it still occurs), so a binary search finds the longest such suffix in
// O(depth log depth) without the anchor's O(depth^2) rematch of every length.
int SuffixTree::match(const Token* ctx, size_t n, Position* pos) const {
  int hi = static_cast<int>(std::min(n, static_cast<size_t>(max_depth_ - 1)));
  int lo = 0;
  Position best;
  auto check = [&](int m, Position* out) {
    Position p;
    for (size_t i = n - m; i < n; ++i) {
      if (!advance(&p, ctx[i])) return false;
    }
    if (!has_continuation(p)) return false;
    *out = p;
    return true;
  };
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    Position p;
    if (check(mid, &p)) {
      lo = mid;
      best = p;
    } else {
      hi = mid - 1;
    }
  }
  if (lo > 0 && best.node == 0) check(lo, &best);
  *pos = best;
  return lo;
}

int SuffixTree::match_own_tail(int64_t seq_id, Position* pos) const {
  const Sequence& s = seqs_[slot_of(seq_id)];
  const size_t k = s.active.size();
  for (size_t i = 0; i < k; ++i) {
    Position p{s.active[i], nodes_[s.active[i]].length};
    if (has_continuation(p)) {
      *pos = p;
      return static_cast<int>(k - i);
    }
  }
  *pos = Position();
  return 0;
}

int64_t SuffixTree::ref_sequence_id(int32_t node) const {
  int32_t slot = nodes_[node].ref_seq;
  if (slot < 0 || !seqs_[slot].alive) return -1;
  return seqs_[slot].id;
}

uint64_t SuffixTree::count(const Token* ngram, size_t n) const {
  if (n > static_cast<size_t>(max_depth_)) return 0;
  Position p;
  for (size_t i = 0; i < n; ++i) {
    if (!advance(&p, ngram[i])) return 0;
  }
  return nodes_[p.node].count;
}

Draft SuffixTree::draft_from(const Position& start, int match_len, int max_tokens,
                             double min_token_prob, bool tree, const Token* ctx, size_t n,
                             uint32_t discount) {
  Draft d;
  d.match_len = match_len;
  if (match_len <= 0 || max_tokens <= 0) return d;
  if (!tree) {
    Position p = start;
    double prob = 1.0;
    int depth = match_len;
    const int anchor = std::max(1, max_depth_ / 2);
    while (static_cast<int>(d.token_ids.size()) < max_tokens) {
      const Node& nd = nodes_[p.node];
      Token tok;
      if (p.offset < nd.length) {
        tok = label_at(nd, p.offset);
        p.offset++;
      } else {
        int32_t c = best_child(p.node);
        if (c < 0 && depth == max_depth_ && anchor < max_depth_) {
          // Truncation, not the end of the data: continue from a shorter suffix.
          const size_t k = d.token_ids.size();
          Position q;
          bool ok = true;
          for (int i = anchor; i > 0 && ok; --i) {
            Token t = static_cast<size_t>(i) <= k ? d.token_ids[k - i] : ctx[n - (i - k)];
            ok = advance(&q, t);
          }
          if (!ok || !has_continuation(q)) break;
          p = q;
          depth = anchor;
          continue;
        }
        if (c < 0) break;
        uint32_t denom = nodes_[p.node].count;
        if (d.token_ids.empty() && p.node == start.node) denom -= discount;
        double q = prob * (static_cast<double>(nodes_[c].count) / denom);
        if (q < min_token_prob) break;
        prob = q;
        tok = nodes_[c].token;
        p = Position{c, 1};
      }
      depth++;
      d.parents.push_back(static_cast<int32_t>(d.token_ids.size()) - 1);
      d.token_ids.push_back(tok);
      d.probs.push_back(prob);
      d.score += prob;
    }
    return d;
  }
  // Best-first expansion by path probability; ties go to the earlier-pushed candidate.
  struct Cand {
    double prob;
    uint64_t order;
    Position pos;
    Token tok;
    int32_t parent;
  };
  auto worse = [](const Cand& a, const Cand& b) {
    return a.prob < b.prob || (a.prob == b.prob && a.order > b.order);
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  uint64_t order = 0;
  std::vector<int32_t> kids;
  auto push_children = [&](const Position& p, double prob, int32_t parent, uint32_t disc) {
    const Node& n = nodes_[p.node];
    if (p.offset < n.length) {
      heap.push(Cand{prob, order++, Position{p.node, p.offset + 1}, label_at(n, p.offset), parent});
      return;
    }
    kids.clear();
    for_each_child(p.node, [&](int32_t c) { kids.push_back(c); });
    std::sort(kids.begin(), kids.end(), [&](int32_t a, int32_t b) {
      return nodes_[a].count > nodes_[b].count ||
             (nodes_[a].count == nodes_[b].count && nodes_[a].token < nodes_[b].token);
    });
    for (int32_t c : kids) {
      double q = prob * (static_cast<double>(nodes_[c].count) / (n.count - disc));
      if (q < min_token_prob) break;
      heap.push(Cand{q, order++, Position{c, 1}, nodes_[c].token, parent});
    }
  };
  push_children(start, 1.0, -1, discount);
  while (!heap.empty() && static_cast<int>(d.token_ids.size()) < max_tokens) {
    Cand c = heap.top();
    heap.pop();
    int32_t idx = static_cast<int32_t>(d.token_ids.size());
    d.token_ids.push_back(c.tok);
    d.parents.push_back(c.parent);
    d.probs.push_back(c.prob);
    d.score += c.prob;
    push_children(c.pos, c.prob, idx, 0);
  }
  return d;
}

Draft SuffixTree::speculate(const Token* ctx, size_t n, const DraftParams& params) {
  validate(params);
  Position pos;
  int m = match(ctx, n, &pos);
  return draft_from(pos, m, draft_cap(params, m), params.min_token_prob, params.tree, ctx, n);
}

void SuffixTree::check_integrity() const {
  auto fail = [](const std::string& what) { throw std::logic_error("integrity: " + what); };
  std::vector<int32_t> stack{0};
  std::vector<int32_t> depth(nodes_.size(), 0);
  size_t visited = 0;
  while (!stack.empty()) {
    int32_t x = stack.back();
    stack.pop_back();
    visited++;
    const Node& n = nodes_[x];
    uint64_t child_sum = 0;
    int32_t best = -1;
    for_each_child(x, [&](int32_t c) {
      const Node& cn = nodes_[c];
      if (cn.parent != x) fail("node " + std::to_string(c) + " has a wrong parent");
      if (cn.count == 0) fail("node " + std::to_string(c) + " has count 0");
      if (cn.length <= 0) fail("node " + std::to_string(c) + " has an empty label");
      if (cn.ref_seq < 0 || cn.ref_end < cn.length ||
          static_cast<size_t>(cn.ref_end) > seqs_[cn.ref_seq].tokens.size()) {
        fail("node " + std::to_string(c) + " has a dangling label");
      }
      if (label_at(cn, 0) != cn.token) fail("node " + std::to_string(c) + " token mismatch");
      depth[c] = depth[x] + cn.length;
      if (depth[c] > max_depth_) fail("node " + std::to_string(c) + " deeper than max_depth");
      child_sum += cn.count;
      if (best < 0 || better_child(cn.count, cn.token, nodes_[best].count, nodes_[best].token)) {
        best = c;
      }
      stack.push_back(c);
    });
    if (child_sum > n.count) fail("children of node " + std::to_string(x) + " outcount it");
    if (x == 0 && child_sum != n.count) fail("root count differs from its children's sum");
    if (n.best_child != kDirty && n.best_child != best) {
      fail("node " + std::to_string(x) + " caches a stale most-frequent child");
    }
  }
  if (visited != num_nodes()) fail("unreachable nodes");
  uint64_t stored = 0;
  for (const auto& kv : ids_) {
    const Sequence& s = seqs_[kv.second];
    stored += s.tokens.size() - s.removed;
    size_t k = s.active.size();
    for (size_t i = 0; i < k; ++i) {
      int32_t x = s.active[i];
      if (depth[x] != static_cast<int>(k - i) || x == 0) {
        fail("active suffix of sequence " + std::to_string(kv.first) + " is misplaced");
      }
    }
  }
  if (stored != nodes_[0].count) fail("root count differs from the stored token count");
}

size_t SuffixTree::memory_bytes() const {
  // Sizes, not capacities: the untouched tail of a large vector is never resident.
  size_t bytes = sizeof(*this) + nodes_.size() * sizeof(Node) +
                 free_nodes_.size() * sizeof(int32_t) + seqs_.size() * sizeof(Sequence);
  for (const auto& m : big_) {
    // libstdc++: one heap node (next pointer + pair, malloc-rounded to 32 B) per entry and
    // one bucket pointer per bucket.
    bytes += sizeof(m) + m.size() * 32 + m.bucket_count() * sizeof(void*);
  }
  for (const auto& s : seqs_) {
    bytes += s.tokens.size() * sizeof(Token) + s.active.size() * sizeof(int32_t) + 512;
  }
  bytes += ids_.size() * 32 + ids_.bucket_count() * sizeof(void*);
  return bytes;
}

}  // namespace arctic_suffix
