// Construction. Appending token t to a sequence extends each of its active
// suffixes by one step (O(max_depth) per token, arXiv 2411.04975 Sec. 3.1). Edges stay
// path-compressed because a node boundary only survives where counts drop or paths branch:
// when the growing suffix is the only one ending at a node, the boundary slides forward
// instead of splitting. Removal is in tree_removal.cc.
#include "suffix_tree.h"

#include <string>

namespace arctic_suffix {

SuffixTree::SuffixTree(int max_depth) : max_depth_(max_depth) {
  if (max_depth <= 0 || max_depth > kMaxDepthLimit) {
    throw std::invalid_argument("max_depth must be in [1, " + std::to_string(kMaxDepthLimit) +
                                "], got " + std::to_string(max_depth));
  }
  nodes_.emplace_back();  // root: count = number of stored tokens
  nodes_[0].big = 0;      // the root's fanout is the vocabulary: hash it from the start
  big_.emplace_back();
}

int32_t SuffixTree::slot_of(int64_t seq_id) const {
  auto it = ids_.find(seq_id);
  if (it == ids_.end()) throw KeyError("unknown sequence id " + std::to_string(seq_id));
  return it->second;
}

const std::vector<Token>& SuffixTree::tokens(int64_t seq_id) const {
  return seqs_[slot_of(seq_id)].tokens;
}

std::vector<int64_t> SuffixTree::sequence_ids() const {
  std::vector<int64_t> out;
  for (const auto& kv : ids_) out.push_back(kv.first);
  return out;
}

int32_t SuffixTree::find_child(int32_t n, Token t) const {
  const Node& node = nodes_[n];
  if (node.big >= 0) {
    const auto& m = big_[node.big];
    auto it = m.find(t);
    return it == m.end() ? -1 : it->second;
  }
  for (int32_t c = node.first_child; c >= 0; c = nodes_[c].next_sibling) {
    if (nodes_[c].token == t) return c;
  }
  return -1;
}

void SuffixTree::add_child(int32_t n, int32_t c) {
  Node& node = nodes_[n];
  nodes_[c].parent = n;
  if (node.big >= 0) {
    big_[node.big].emplace(nodes_[c].token, c);
  } else {
    int fanout = 0;
    for (int32_t x = node.first_child; x >= 0; x = nodes_[x].next_sibling) ++fanout;
    if (fanout < kSmallFanout) {
      nodes_[c].next_sibling = node.first_child;
      node.first_child = c;
    } else {
      int32_t b;
      if (!free_big_.empty()) {
        b = free_big_.back();
        free_big_.pop_back();
      } else {
        b = static_cast<int32_t>(big_.size());
        big_.emplace_back();
      }
      auto& m = big_[b];
      for (int32_t x = node.first_child; x >= 0;) {
        int32_t next = nodes_[x].next_sibling;
        nodes_[x].next_sibling = -1;
        m.emplace(nodes_[x].token, x);
        x = next;
      }
      m.emplace(nodes_[c].token, c);
      nodes_[n].first_child = -1;
      nodes_[n].big = b;
    }
  }
  note_increment(n, c);
}

void SuffixTree::unlink_child(int32_t n, int32_t c) {
  Node& node = nodes_[n];
  if (node.big >= 0) {
    big_[node.big].erase(nodes_[c].token);
  } else {
    int32_t* link = &node.first_child;
    while (*link != c) link = &nodes_[*link].next_sibling;
    *link = nodes_[c].next_sibling;
    nodes_[c].next_sibling = -1;
  }
  if (node.best_child == c) node.best_child = kDirty;
}

void SuffixTree::replace_child(int32_t n, int32_t old_c, int32_t new_c) {
  Node& node = nodes_[n];
  nodes_[new_c].parent = n;
  if (node.big >= 0) {
    big_[node.big][nodes_[new_c].token] = new_c;
  } else {
    int32_t* link = &node.first_child;
    while (*link != old_c) link = &nodes_[*link].next_sibling;
    *link = new_c;
    nodes_[new_c].next_sibling = nodes_[old_c].next_sibling;
    nodes_[old_c].next_sibling = -1;
  }
  if (node.best_child == old_c) node.best_child = new_c;
  note_increment(n, new_c);
}

// Most frequent child, ties to the smallest token: the draft walk's O(1) step.
bool better_child(uint32_t ca, int32_t ta, uint32_t cb, int32_t tb) {
  return ca > cb || (ca == cb && ta < tb);
}

void SuffixTree::note_increment(int32_t n, int32_t c) {
  Node& node = nodes_[n];
  if (node.best_child == kDirty) return;
  if (node.best_child < 0) {
    node.best_child = c;
    return;
  }
  const Node& b = nodes_[node.best_child];
  const Node& x = nodes_[c];
  if (better_child(x.count, x.token, b.count, b.token)) node.best_child = c;
}

void SuffixTree::note_decrement(int32_t n, int32_t c) {
  if (nodes_[n].best_child == c) nodes_[n].best_child = kDirty;
}

int32_t SuffixTree::best_child(int32_t n) {
  Node& node = nodes_[n];
  if (node.best_child != kDirty) return node.best_child;
  int32_t best = -1;
  for_each_child(n, [&](int32_t c) {
    if (best < 0 || better_child(nodes_[c].count, nodes_[c].token, nodes_[best].count,
                           nodes_[best].token)) {
      best = c;
    }
  });
  nodes_[n].best_child = best;
  return best;
}

int32_t SuffixTree::new_node() {
  if (!free_nodes_.empty()) {
    int32_t n = free_nodes_.back();
    free_nodes_.pop_back();
    nodes_[n] = Node();
    return n;
  }
  nodes_.emplace_back();
  return static_cast<int32_t>(nodes_.size() - 1);
}

void SuffixTree::free_node(int32_t n) {
  Node& node = nodes_[n];
  if (node.big >= 0) {
    big_[node.big].clear();
    free_big_.push_back(node.big);
  }
  int32_t slot = node.ref_seq;
  node = Node();
  node.ref_seq = -1;
  node.count = 0;
  free_nodes_.push_back(n);
  if (slot >= 0) release_slot_ref(slot);
}

void SuffixTree::set_ref(int32_t n, int32_t slot, int32_t end) {
  int32_t old = nodes_[n].ref_seq;
  nodes_[n].ref_end = end;
  if (old == slot) return;
  nodes_[n].ref_seq = slot;
  seqs_[slot].refs++;
  if (old >= 0) release_slot_ref(old);
}

void SuffixTree::release_slot_ref(int32_t slot) {
  Sequence& s = seqs_[slot];
  if (--s.refs == 0 && !s.alive) {
    s = Sequence();
    free_seqs_.push_back(slot);
  }
}

void SuffixTree::extend(int64_t seq_id, const Token* tokens, size_t n) {
  auto it = ids_.find(seq_id);
  const size_t have = it == ids_.end() ? 0 : seqs_[it->second].tokens.size();
  if (it != ids_.end() && seqs_[it->second].removing) {
    throw std::invalid_argument("sequence " + std::to_string(seq_id) +
                                " is being removed; it cannot be extended");
  }
  if (have + n > static_cast<size_t>(INT32_MAX)) {
    throw std::invalid_argument("sequence " + std::to_string(seq_id) +
                                " would exceed 2^31-1 tokens");
  }
  if (static_cast<uint64_t>(nodes_[0].count) + n > UINT32_MAX) {  // counts are 32-bit
    throw std::invalid_argument("a tree holds at most 2^32-1 tokens; adding " +
                                std::to_string(n) + " would exceed it");
  }
  int32_t slot;
  if (it == ids_.end()) {
    if (!free_seqs_.empty()) {
      slot = free_seqs_.back();
      free_seqs_.pop_back();
    } else {
      slot = static_cast<int32_t>(seqs_.size());
      seqs_.emplace_back();
    }
    seqs_[slot] = Sequence();
    seqs_[slot].id = seq_id;
    seqs_[slot].alive = true;
    ids_.emplace(seq_id, slot);
  } else {
    slot = it->second;
  }
  if (n == 0) return;
  epoch_++;
  Sequence* s = &seqs_[slot];
  s->tokens.insert(s->tokens.end(), tokens, tokens + n);
  int32_t end = static_cast<int32_t>(s->tokens.size() - n);
  for (size_t k = 0; k < n; ++k) {
    ++end;
    std::vector<int32_t>& act = seqs_[slot].active;
    act.push_back(0);
    for (auto& a : act) a = extend_one(slot, a, tokens[k], end);
    if (static_cast<int>(act.size()) >= max_depth_) act.erase(act.begin());  // <= depth ints
  }
}

int32_t SuffixTree::extend_one(int32_t slot, int32_t n, Token t, int32_t end) {
  int32_t c = find_child(n, t);
  if (c < 0) {
    if (n != 0 && nodes_[n].count == 1) {  // a leaf only this suffix reaches: grow it
      nodes_[n].length += 1;
      set_ref(n, slot, end);
      return n;
    }
    int32_t leaf = new_node();
    nodes_[leaf].token = t;
    nodes_[leaf].count = 1;
    nodes_[leaf].length = 1;
    set_ref(leaf, slot, end);
    if (n == 0) nodes_[0].count++;
    add_child(n, leaf);
    return leaf;
  }
  if (n != 0 && nodes_[n].count == nodes_[c].count + 1) {
    // This suffix is the only one ending at n and all others continue into c: after the
    // step n's end and c's first token have equal counts, so the boundary moves forward.
    if (nodes_[c].length == 1) {
      int32_t p = nodes_[n].parent;
      nodes_[c].count = nodes_[n].count;
      nodes_[c].length = nodes_[n].length + 1;
      nodes_[c].token = nodes_[n].token;
      set_ref(c, slot, end);
      unlink_child(n, c);
      replace_child(p, n, c);
      free_node(n);
      return c;
    }
    nodes_[n].length += 1;
    set_ref(n, slot, end);
    unlink_child(n, c);
    nodes_[c].length -= 1;
    nodes_[c].token = label_at(nodes_[c], 0);
    add_child(n, c);
    return n;
  }
  if (n == 0) nodes_[0].count++;
  if (nodes_[c].length == 1) {
    nodes_[c].count++;
    note_increment(n, c);
    return c;
  }
  int32_t u = new_node();  // split: c keeps its identity (other suffixes end at c's end)
  nodes_[u].token = t;
  nodes_[u].count = nodes_[c].count + 1;
  nodes_[u].length = 1;
  set_ref(u, slot, end);
  nodes_[c].length -= 1;
  nodes_[c].token = label_at(nodes_[c], 0);
  replace_child(n, c, u);
  nodes_[c].next_sibling = -1;
  nodes_[u].first_child = -1;
  nodes_[u].best_child = -1;
  add_child(u, c);
  return u;
}

}  // namespace arctic_suffix
