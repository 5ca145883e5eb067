// Removal: a sequence leaves the tree one suffix at a time (remove_step), so a removal can
// be spread over calls; every intermediate state is the tree of the sequence's remaining
// tail. Path compression is restored as counts drop. And dismantle_step: freeing a whole
// tree a piece at a time.
#include "suffix_tree.h"

#include <algorithm>

namespace arctic_suffix {

void SuffixTree::remove(int64_t seq_id) {
  begin_remove(seq_id);
  remove_step(seq_id, SIZE_MAX);
}

void SuffixTree::begin_remove(int64_t seq_id) {
  int32_t slot = slot_of(seq_id);
  seqs_[slot].removing = true;
  seqs_[slot].active.clear();
  seqs_[slot].active.shrink_to_fit();
}

size_t SuffixTree::remove_step(int64_t seq_id, size_t max_suffixes, size_t* done_out) {
  int32_t slot = slot_of(seq_id);
  if (!seqs_[slot].removing) begin_remove(seq_id);
  size_t total = seqs_[slot].tokens.size();
  size_t done = 0;
  if (max_suffixes > 0 && seqs_[slot].removed < total) epoch_++;
  while (done < max_suffixes && seqs_[slot].removed < total) {
    remove_suffix(slot, seqs_[slot].removed);
    seqs_[slot].removed++;
    done++;
  }
  size_t left = total - seqs_[slot].removed;
  if (done_out != nullptr) *done_out = done;
  if (left == 0) finish_remove(slot);
  return left;
}

void SuffixTree::finish_remove(int32_t slot) {
  ids_.erase(seqs_[slot].id);
  seqs_[slot].alive = false;
  seqs_[slot].refs++;  // release_slot_ref frees the storage unless nodes still point in
  release_slot_ref(slot);
}

// Drops the suffix starting at `start`. Its end is always a node boundary (a suffix ending
// mid-edge would make the edge's counts differ), so counts decrement node by node.
void SuffixTree::remove_suffix(int32_t slot, size_t start) {
  const std::vector<Token>& toks = seqs_[slot].tokens;
  size_t len = std::min(static_cast<size_t>(max_depth_), toks.size() - start);
  int32_t path[kMaxDepthLimit + 1];
  int depth = 0;
  size_t pos = 0;
  int32_t n = 0;
  while (pos < len) {
    int32_t c = find_child(n, toks[start + pos]);
    if (c < 0) throw std::logic_error("remove_suffix: suffix missing from the tree");
    path[depth++] = c;
    pos += nodes_[c].length;
    n = c;
  }
  if (pos != len) throw std::logic_error("remove_suffix: suffix ends inside an edge");
  nodes_[0].count--;
  int32_t parent = 0;
  for (int i = 0; i < depth; ++i) {
    int32_t c = path[i];
    nodes_[c].count--;
    note_decrement(parent, c);
    if (nodes_[c].count == 0) {
      unlink_child(parent, c);
      for (int j = i; j < depth; ++j) free_node(path[j]);  // the rest of the path hangs here
      depth = i;
      break;
    }
    parent = c;
  }
  for (int i = depth - 1; i >= 0; --i) {
    int32_t x = path[i];
    if (nodes_[x].ref_seq == slot) {  // move the label off the departing sequence if we can
      int32_t donor = -1;
      if (nodes_[x].big < 0) {
        for_each_child(x, [&](int32_t c) {
          if (donor < 0 && nodes_[c].ref_seq != slot) donor = c;
        });
      }
      if (donor >= 0) set_ref(x, nodes_[donor].ref_seq, nodes_[donor].ref_end - nodes_[donor].length);
    }
    maybe_merge(x);
  }
}

bool SuffixTree::dismantle_step(size_t max_entries) {
  // The order does not matter: nothing reads the tree again; the ids go first so that
  // contains() says so.
  ids_.clear();
  size_t freed = 0;
  while (freed < max_entries && !big_.empty()) {
    freed += big_.back().size() + 1;
    big_.pop_back();
  }
  return !big_.empty();
}

// Restores path compression after a removal: a node whose count equals its only child's
// has no reason to keep a boundary.
void SuffixTree::maybe_merge(int32_t x) {
  Node& node = nodes_[x];
  if (x == 0 || node.big >= 0 || node.first_child < 0) return;
  int32_t y = node.first_child;
  if (nodes_[y].next_sibling >= 0 || nodes_[y].count != node.count) return;
  int32_t p = node.parent;
  nodes_[y].length += node.length;
  nodes_[y].token = node.token;
  node.first_child = -1;
  replace_child(p, x, y);
  free_node(x);
}

}  // namespace arctic_suffix
