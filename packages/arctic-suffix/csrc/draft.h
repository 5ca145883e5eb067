// A speculated continuation: a path (parents = i-1) or a tree (best-first, arXiv 2411.04975
// Sec. 3.2), with the expected number of accepted tokens as its score.
#pragma once

#include <cstdint>
#include <vector>

namespace arctic_suffix {

struct Draft {
  std::vector<int32_t> token_ids;
  std::vector<int32_t> parents;  // index into token_ids; -1 for children of the match
  std::vector<double> probs;     // path probability from the match to this token
  double score = 0.0;            // sum of probs = expected accepted length
  int32_t match_len = 0;
};

constexpr int kMaxSpecTokens = 1 << 20;  // the largest max_spec_tokens accepted

struct DraftParams {
  int max_spec_tokens = 16;
  double max_spec_factor = 1.0;
  double max_spec_offset = 0.0;
  double min_token_prob = 0.1;
  bool tree = false;
};

// The anchor's cap: min(max_spec_tokens, factor * match_len + offset), never negative.
int draft_cap(const DraftParams& p, int match_len);
void validate(const DraftParams& p);  // throws std::invalid_argument naming the field

}  // namespace arctic_suffix
