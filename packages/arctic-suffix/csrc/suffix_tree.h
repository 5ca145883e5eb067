// Truncated, path-compressed suffix tree over int32 token sequences.
// Suffix decoding (arXiv 2411.04975, Sec. 3): every <= max_depth-gram of every stored
// sequence is indexed; a node's count is the number of occurrences of the n-gram ending at
// any position of its edge (counts are constant along an edge by construction).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "draft.h"
#include "pod_vector.h"

namespace arctic_suffix {

using Token = int32_t;
constexpr int kMaxDepthLimit = 4096;  // beyond this, O(depth) appends stop being "cheap"
bool better_child(uint32_t ca, int32_t ta, uint32_t cb, int32_t tb);

// Raised for an unknown or duplicate id; the bindings turn it into Python's KeyError.
class KeyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A point inside the tree: the matched string ends `offset` tokens into `node`'s edge.
struct Position {
  int32_t node = 0;
  int32_t offset = 0;
};

class SuffixTree {
 public:
  explicit SuffixTree(int max_depth);

  int max_depth() const { return max_depth_; }
  // Appends tokens to sequence `seq_id`, creating it if absent. O(max_depth) per token.
  void extend(int64_t seq_id, const Token* tokens, size_t n);
  // Removes a whole sequence at once.
  void remove(int64_t seq_id);
  // Incremental removal, so a 1M-token sequence never blocks a caller for long: after
  // begin_remove the sequence stops growing; each remove_step drops up to `max_suffixes`
  // of its oldest suffixes, leaving the tree equal to that of the sequence's remaining tail.
  void begin_remove(int64_t seq_id);
  size_t remove_step(int64_t seq_id, size_t max_suffixes, size_t* done = nullptr);  // -> left
  bool contains(int64_t seq_id) const { return ids_.count(seq_id) != 0; }
  size_t num_sequences() const { return ids_.size(); }
  const std::vector<Token>& tokens(int64_t seq_id) const;
  std::vector<int64_t> sequence_ids() const;

  // Longest suffix of ctx (at most max_depth-1 tokens) that occurs followed by some token.
  int match(const Token* ctx, size_t n, Position* pos) const;
  // Longest suffix of sequence `seq_id` with a continuation, read from its active suffix
  // ends in O(max_depth): no re-matching from the root.
  int match_own_tail(int64_t seq_id, Position* pos) const;
  bool advance(Position* pos, Token t) const;
  bool has_continuation(const Position& pos) const;
  // ctx: the matched context, needed when a path draft reaches max_depth: it then re-anchors
  // on the last max_depth/2 tokens of context + draft and walks on, so a truncated tree
  // still yields drafts longer than max_depth - match_len.
  // discount: occurrences of the match that cannot continue because they are the caller's
  // own context (a request matched in its own tree); they are left out of the first step's
  // probability, which the anchor instead dilutes by count / (count + 1).
  Draft draft_from(const Position& pos, int match_len, int max_tokens, double min_token_prob,
                   bool tree, const Token* ctx, size_t n, uint32_t discount = 0);
  Draft speculate(const Token* ctx, size_t n, const DraftParams& params);
  int64_t ref_sequence_id(int32_t node) const;
  uint64_t count(const Token* ngram, size_t n) const;  // occurrences of an n-gram, n <= depth  // some sequence containing the node's path

  // Frees the tree's storage a piece at a time (the tree is unusable from the first call):
  // destroying a 1M-token tree at once took 200-340 ms here, almost all of it freeing the
  // hash-map entries of its high-fanout nodes. Each call frees about `max_entries` of them;
  // returns false once only O(1) frees remain (the destructor does those).
  bool dismantle_step(size_t max_entries);

  void check_integrity() const;  // read-only; throws std::logic_error on a broken invariant
  size_t memory_bytes() const;
  uint64_t epoch() const { return epoch_; }  // bumped by every structural change
  size_t num_nodes() const { return nodes_.size() - free_nodes_.size(); }
  uint64_t total_tokens() const { return nodes_[0].count; }

 private:
  struct Node {
    uint32_t count = 0;
    Token token = 0;          // first token of the edge label
    int32_t parent = -1;
    int32_t first_child = -1;  // sibling list, used while the node has few children
    int32_t next_sibling = -1;
    int32_t best_child = -1;   // -1: no child; kDirty: recompute on demand
    int32_t ref_seq = -1;      // label = seqs_[ref_seq].tokens[ref_end - length, ref_end)
    int32_t ref_end = 0;
    int32_t length = 0;
    int32_t big = -1;          // index into big_ when the node has many children
  };
  struct Sequence {
    int64_t id = -1;
    std::vector<Token> tokens;
    // Ends of the suffixes still growing, longest first (at most max_depth). A vector, not a
    // deque: std::deque's move may throw, so a vector<Sequence> growing would deep-copy every
    // stored token array.
    std::vector<int32_t> active;
    uint32_t refs = 0;           // nodes whose label points into `tokens`
    bool removing = false;
    bool alive = false;          // false: a zombie kept only while refs > 0
    size_t removed = 0;          // suffixes already dropped by remove_step
  };
  static_assert(std::is_nothrow_move_constructible<Sequence>::value,
                "seqs_ must grow by moving, never by copying token arrays");
  static constexpr int32_t kDirty = -2;
  static constexpr int kSmallFanout = 8;

  int32_t slot_of(int64_t seq_id) const;
  Token label_at(const Node& n, int32_t i) const {
    return seqs_[n.ref_seq].tokens[n.ref_end - n.length + i];
  }
  int32_t find_child(int32_t n, Token t) const;
  void add_child(int32_t n, int32_t c);
  void unlink_child(int32_t n, int32_t c);
  void replace_child(int32_t n, int32_t old_c, int32_t new_c);
  template <class F>
  void for_each_child(int32_t n, F&& f) const {
    const Node& node = nodes_[n];
    if (node.big >= 0) {
      for (const auto& kv : big_[node.big]) f(kv.second);
    } else {
      for (int32_t c = node.first_child; c >= 0; c = nodes_[c].next_sibling) f(c);
    }
  }
  int32_t best_child(int32_t n);
  void note_increment(int32_t n, int32_t c);
  void note_decrement(int32_t n, int32_t c);
  int32_t new_node();
  void free_node(int32_t n);
  void set_ref(int32_t n, int32_t slot, int32_t end);
  void release_slot_ref(int32_t slot);
  int32_t extend_one(int32_t slot, int32_t n, Token t, int32_t end);
  void remove_suffix(int32_t slot, size_t start);
  void maybe_merge(int32_t x);
  void finish_remove(int32_t slot);

  int max_depth_;
  PodVector<Node> nodes_;
  std::vector<int32_t> free_nodes_;
  std::vector<std::unordered_map<Token, int32_t>> big_;
  std::vector<int32_t> free_big_;
  std::vector<Sequence> seqs_;
  std::vector<int32_t> free_seqs_;
  std::unordered_map<int64_t, int32_t> ids_;
  uint64_t epoch_ = 0;
};

}  // namespace arctic_suffix
